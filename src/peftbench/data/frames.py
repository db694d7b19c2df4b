"""In-memory data (a pandas DataFrame, a `datasets.Dataset` or `DatasetDict`) as the files the own-data task reads.

`write_task` checks the named columns, keeps only them, writes each split as Parquet named by the sha256 of its
bytes (`train-<sha>.parquet`: the same rows give the same file, so a re-run has the same config and identity, and
other rows never overwrite a file a finished run read) and a task file beside them (name, train, dev, text,
text_pair, label) that `task=FILE.yaml` composes like any task file of the user's (config/compose.py). From there on
the data is checked and read as files are (tasks/classification.py, config/crosscheck.py), and result.json records
the files' hashes (`data_sha256`).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from ..errors import UserError

SPLITS = ("validation", "dev", "test")  # a DatasetDict's split scored when dev= is not given, in this order


def as_frame(data: Any, what: str) -> Any:
    """A DataFrame of `data`; a Dataset's ClassLabel columns become their class names (as a hub dataset's do)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas") and hasattr(data, "features"):  # datasets.Dataset
        from datasets import ClassLabel

        frame = data.to_pandas()
        for column, feature in data.features.items():
            if isinstance(feature, ClassLabel):
                frame[column] = [feature.names[v] if isinstance(v, int) and 0 <= v < len(feature.names) else v
                                 for v in frame[column].tolist()]
        return frame
    raise UserError(f"{what}: a {type(data).__name__} is not data peftbench reads: give a pandas DataFrame, a "
                    "datasets.Dataset or DatasetDict, a task name or a task .yaml file")


def splits(task: Any, dev: Any) -> tuple[Any, Any, str, str]:
    """(train, dev) data and their names in messages; a DatasetDict's splits by name."""
    if hasattr(task, "keys") and hasattr(task, "values") and not hasattr(task, "columns"):  # a DatasetDict
        names = list(task.keys())
        if "train" not in names:
            raise UserError(f"task: the DatasetDict has no 'train' split (its splits are {names}): give task=its "
                            "training Dataset and dev=")
        if dev is None:
            dev = next((s for s in SPLITS if s in names), None)
            if dev is None:
                raise UserError(f"task: the DatasetDict has no validation or dev split (its splits are {names}): "
                                "give dev=SPLIT or dev=a Dataset")
        if isinstance(dev, str):
            if dev not in names:
                raise UserError(f"dev={dev!r} is not a split of the DatasetDict (its splits are {names})")
            return task["train"], task[dev], "task['train']", f"task[{dev!r}]"
        return task["train"], dev, "task['train']", "dev"
    if dev is None:
        raise UserError("task is in-memory data: give its dev set too, dev=DATAFRAME (or a Dataset), scored at the end")
    return task, dev, "task", "dev"


def _parquet(frame: Any, folder: Path, split: str) -> tuple[Path, str]:
    buf = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buf, index=False)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    path = folder / f"{split}-{sha[:16]}.parquet"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path, sha


def write_task(task: Any, folder: str | Path, dev: Any = None, text: str | None = None, text_pair: str | None = None,
               label: str | None = None, name: str | None = None) -> Path:
    """Check and write in-memory data under `folder`; returns the task file to give as task=FILE."""
    import yaml

    train, dev, train_what, dev_what = splits(task, dev)
    text, label = text or "text", label or "label"
    columns = [("text", text)] + ([("text_pair", text_pair)] if text_pair else []) + [("label", label)]
    frames = []
    for data, what in ((train, train_what), (dev, dev_what)):
        frame = as_frame(data, what)
        have = [str(c) for c in frame.columns]
        for key, column in columns:
            if column not in have:
                raise UserError(f"{what}: no column '{column}' ({key}={column!r}); its columns are {have}: set {key}= "
                                "to one of them")
        if not len(frame):
            raise UserError(f"{what} has no rows: give at least one")
        frames.append(frame[[c for _, c in columns]])
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write the data folder {folder}: {e.strerror}; pick another out=") from None
    (train_path, train_sha), (dev_path, dev_sha) = (_parquet(f, folder, s) for f, s in zip(frames, ("train", "dev")))
    spec = {"name": name or "classification", "train": train_path.name, "dev": dev_path.name, "text": text,
            **({"text_pair": text_pair} if text_pair else {}), "label": label}
    path = folder / f"{spec['name']}-{hashlib.sha256(repr(sorted(spec.items())).encode()).hexdigest()[:12]}.yaml"
    if not path.is_file():
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def file_sha256(path: str | Path) -> str:
    """The sha256 of a data file's bytes, as result.json's `data_sha256` records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
