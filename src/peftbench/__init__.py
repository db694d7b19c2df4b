"""peftbench: how much do we lose, and what do we save, by training under 1% of a BERT's parameters?

From Python: `peftbench.train(...)`, `peftbench.study(...)`, `peftbench.results(folders)`,
`peftbench.report(folders, out)` (api.py; docs/python-api.md). The command line is `peftbench` (cli.py).
"""

from .version import __version__  # noqa: E402

from .api import Run, results, train  # noqa: E402  (and `peftbench.study(...)`: api makes that package callable)

__all__ = ["Run", "train", "study", "results", "report", "__version__"]


def __getattr__(name: str):
    if name == "report":  # the report package, callable (report/__init__.py); imported on first use: it loads matplotlib
        import importlib

        return importlib.import_module(".report", __name__)
    raise AttributeError(f"module 'peftbench' has no attribute {name!r}")
