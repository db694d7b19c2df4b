"""The package version, one place (pyproject.toml has the same): record.py writes it into every result.json."""

__version__ = "0.1.0"
