"""A user's own table (CSV, TSV, JSONL, Parquet; or a hub dataset) read into columns: the reader of task=classification.

pandas reads the files (datasets depends on it): CSV/TSV cells stay strings (no "NA" -> NaN guessing), JSON Lines and
Parquet keep their types, so a label column's kind (whole numbers, strings: classes; floats: a regression) is the
file's own. Every problem is one UserError naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import UserError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def read_table(path: str | Path, key: str = "task.train") -> dict[str, list[Any]]:
    """The file's columns by name, in file order; `key` (task.train / task.dev) is named in the messages."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise UserError(f"data file {path} not found: set {key}= to a CSV, TSV, JSONL or Parquet file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unknown file type '{path.suffix}' ({key}): use .csv, .tsv, .jsonl, .json or .parquet")
    import pandas as pd

    try:
        if fmt in ("csv", "tsv"):
            df = pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False,
                             encoding="utf-8-sig")
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        else:  # .jsonl: one object per line; .json: the same, or one list of objects
            lines = fmt == "jsonl" or not path.read_text(encoding="utf-8-sig").lstrip().startswith("[")
            df = pd.read_json(path, lines=lines, dtype=False, convert_dates=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty ({key}): expected a header line and rows") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 at byte {e.start}: re-save the file as UTF-8") from None
    except Exception as e:  # pandas/pyarrow raise many kinds for a malformed file: all mean "cannot parse it"
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: cannot read it as {fmt.upper()} ({type(e).__name__}: {why})") from None
    return {str(c): df[c].tolist() for c in df.columns}


def hub_table(hub: str, config: str | None, split: str) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """A hub dataset's split as columns, and the class names of its ClassLabel columns (their ids' order), a list of
    ClassLabel (multi-label, token tags) included."""
    from datasets import ClassLabel

    from .hub import load_split

    ds = load_split([hub, config] if config else hub, split)
    names = {c: list(f.names) for c, f in ds.features.items() if isinstance(f, ClassLabel)}
    names.update({c: list(f.feature.names) for c, f in ds.features.items()
                  if isinstance(getattr(f, "feature", None), ClassLabel)})
    return ds.to_dict(), names


def column(table: dict[str, list[Any]], name: str, key: str, where: str) -> list[Any]:
    """Column `name` (set by `key`, e.g. task.text), or a UserError naming the columns that are there."""
    if name not in table:
        raise UserError(f"{where}: no column '{name}' ({key}={name}); its columns are {list(table)}: "
                        f"set {key}= to one of them")
    return table[name]
