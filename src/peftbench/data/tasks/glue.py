"""GLUE sentence(-pair) classification and regression: all nine tasks are rows of a table (their task configs).

Local files are read in GLUE's TSV layout as `download_glue_data.py` writes it: UTF-8 (MRPC starts with a BOM),
tab-separated, quote characters are text (no CSV quoting), labels as written ("0"/"1" or RTE's strings). A task
config says how its files differ: `columns` names the columns of a file with no header line (CoLA), `dev_files`
lists a dev split held in several files (MNLI: matched, mismatched; `dev_suffixes` tells their metrics apart),
`problem: regression` reads float targets for a one-output MSE head (STS-B), `metrics` lists what `score` reports.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ...errors import UserError

HEAD = "seq_cls"
DEFAULT_METRICS = ("accuracy", "f1")  # SST-2, MRPC, RTE report both


def read_tsv(path: Path, text_fields: list[str], label_field: str, labels: list[str] | None,
             columns: list[str] | None = None) -> tuple[list[list[str]], list]:
    """Texts (one list per field) and class ids (float targets when `labels` is None); every problem is one
    UserError naming file and line. `columns`: the file has no header line and these are its columns' names."""
    if not path.is_file():
        raise UserError(f"data file {path} not found: set data_dir to the folder holding {path.parent.parent.name}/{path.parent.name}/")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 at byte {e.start}: re-save the file as UTF-8") from None
    if columns is None and not rows:
        raise UserError(f"{path} is empty: expected a header line with {text_fields + [label_field]}")
    header, first = (rows[0], 2) if columns is None else (list(columns), 1)
    body = rows[1:] if columns is None else rows
    missing = [c for c in text_fields + [label_field] if c not in header]
    if missing:
        where = "the header has" if columns is None else "task.columns names"
        raise UserError(f"{path}:1: missing column(s) {missing}; {where} {header}")
    cols = [header.index(c) for c in text_fields]
    label_col = header.index(label_field)
    label_id = None if labels is None else {name: i for i, name in enumerate(labels)}
    texts: list[list[str]] = [[] for _ in text_fields]
    ids: list = []
    for lineno, row in enumerate(body, start=first):
        if len(row) != len(header):
            what = "the header has" if columns is None else "task.columns names"
            raise UserError(f"{path}:{lineno}: {len(row)} fields, {what} {len(header)}")
        label = row[label_col].strip()
        if label_id is None:
            try:
                value = float(label)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise UserError(f"{path}:{lineno}: regression target '{label}' in column {label_field} is not a number")
            ids.append(value)
        elif label not in label_id:
            raise UserError(f"{path}:{lineno}: label '{label}' is not one of {labels}")
        else:
            ids.append(label_id[label])
        for t, c in zip(texts, cols):
            t.append(row[c])
    if not ids:
        raise UserError(f"{path} has a header but no rows" if columns is None else f"{path} has no rows")
    return texts, ids


def regression(task: DictConfig) -> bool:
    return task.get("problem") == "regression"


def parts(task: DictConfig, split: str) -> list[tuple[str, str, str]]:
    """(file stem, hub split, metric suffix) of each file of a split: one, or MNLI's two dev sets."""
    if split == "train":
        return [("train", "train", "")]
    stems = list(task.get("dev_files") or ["dev"])
    hub = list(task.get("hub_dev") or ["validation"] * len(stems))
    suffixes = list(task.get("dev_suffixes") or [""] * len(stems))
    return list(zip(stems, hub, suffixes))


def read_part(cfg: DictConfig, stem: str, hub_split: str) -> tuple[list[list[str]], list]:
    task = cfg.task
    if cfg.data_dir is None:  # the hub: GLUE's own columns and labels (class ids, STS-B's floats)
        from .hub import load_split

        columns = load_split(task.hub, hub_split).to_dict()  # whole columns at once (iterating one is row by row)
        return [columns[c] for c in task.hub_text_fields], columns[task.get("hub_label_field") or "label"]
    labels = None if regression(task) else [str(x) for x in task.labels]
    columns = list(task.columns) if task.get("columns") else None
    return read_tsv(Path(cfg.data_dir) / task.dir / f"{stem}.tsv", list(task.text_fields), task.label_field, labels,
                    columns)


def read_split(cfg: DictConfig, split: str) -> tuple[list[list[str]], list]:
    """Texts and labels of a split; a dev split in several files comes back as their concatenation, in order."""
    texts, labels = None, []
    for stem, hub_split, _ in parts(cfg.task, split):
        t, ids = read_part(cfg, stem, hub_split)
        texts = t if texts is None else [a + b for a, b in zip(texts, t)]
        labels = labels + list(ids)
    return texts, labels


def load(cfg: DictConfig, tokenizer):
    from . import train_rows

    train_texts, train_labels = read_split(cfg, "train")
    keep, held, desc = train_rows(cfg, len(train_labels), train_labels, regression(cfg.task))
    on_holdout = cfg.get("eval_split") == "holdout"
    if on_holdout:  # score on the rows held out of train; dev is not read at all
        eval_texts, eval_labels = [[t[i] for i in held] for t in train_texts], [train_labels[i] for i in held]
        sizes = [("", len(held))]
    else:
        sizes, eval_texts, eval_labels = [], None, []
        for stem, hub_split, suffix in parts(cfg.task, "dev"):
            t, ids = read_part(cfg, stem, hub_split)
            eval_texts = t if eval_texts is None else [a + b for a, b in zip(eval_texts, t)]
            eval_labels += list(ids)
            sizes.append((suffix, len(ids)))
    train_texts = [[t[i] for i in keep] for t in train_texts]
    train_labels = [train_labels[i] for i in keep]
    return encoded(cfg, tokenizer, train_texts, train_labels, eval_texts, eval_labels, sizes,
                   {"holdout": desc, "train_ids": keep, "holdout_ids": held,
                    "split": "holdout" if on_holdout else "dev"})


def encoded(cfg: DictConfig, tokenizer, train_texts, train_labels, eval_texts, eval_labels, sizes, meta=None):
    """TaskData of tokenized splits; shared by every sequence-classification task module."""
    from ..batches import Packed
    from . import TaskData

    reg = regression(cfg.task)

    def encode(texts: list[list[str]], labels: list) -> Packed:
        enc = tokenizer(*texts, truncation=True, max_length=cfg.task.max_length)
        packed = Packed.from_lists({**enc, "labels": [0] * len(labels) if reg else labels}, tokenizer.pad_token_id)
        if reg:  # float targets: Packed keeps non-sequence columns as int64, an MSE head needs float32
            packed.columns["labels"] = np.asarray(labels, dtype=np.float32)
        return packed

    num_labels = 1 if reg else len(cfg.task.labels)
    metrics = list(cfg.task.get("metrics") or (("pearson", "spearman") if reg else DEFAULT_METRICS))
    return TaskData(train=encode(train_texts, train_labels), eval=encode(eval_texts, eval_labels),
                    num_labels=num_labels, train_examples=len(train_labels), eval_examples=len(eval_labels),
                    meta={"labels": np.array(eval_labels), "parts": sizes, "metrics": metrics, "regression": reg,
                          **(meta or {})})


def metric(name: str, preds, target, k: int) -> float:
    """One metric in percent (GLUE's leaderboard scale: MCC and correlations x 100 too)."""
    from torchmetrics.functional import matthews_corrcoef, pearson_corrcoef, spearman_corrcoef
    from torchmetrics.functional.classification import binary_f1_score, multiclass_accuracy, multiclass_f1_score

    if name == "accuracy":
        value = multiclass_accuracy(preds, target, num_classes=k, average="micro")
    elif name == "f1":  # binary: of class 1, as GLUE reports MRPC and QQP; else macro
        value = binary_f1_score(preds, target) if k == 2 else multiclass_f1_score(preds, target, num_classes=k,
                                                                                  average="macro")
    elif name in ("mcc", "pearson", "spearman") and (len(preds) < 2 or bool((preds == preds[0]).all())
                                                    or bool((target == target[0]).all())):
        # a constant has no correlation: 0, the trivial baseline's score (sklearn's MCC; scipy says nan), where
        # torchmetrics' epsilon terms give e.g. an all-1 CoLA prediction MCC 2.56
        return 0.0
    elif name == "mcc":
        value = matthews_corrcoef(preds, target, task="binary" if k == 2 else "multiclass", num_classes=k)
    elif name in ("pearson", "spearman"):
        fn = pearson_corrcoef if name == "pearson" else spearman_corrcoef
        value = fn(preds.double(), target.double())
    else:
        raise UserError(f"task.metrics: unknown metric '{name}': use accuracy, f1, mcc, pearson or spearman")
    value = float(value.item())
    return round(100 * value, 4) if math.isfinite(value) else 0.0


def trivial(data) -> dict[str, float]:
    """The metrics of the trivial prediction on the eval rows: the training rows' majority class (regression: their
    mean) for every row. What a run that diverged scores (engine/train.py)."""
    y = np.asarray(data.train.columns["labels"])
    if data.meta.get("regression", False):
        row = np.array([float(y.mean())])
    else:
        row = np.zeros(data.num_labels)
        row[int(np.bincount(y.astype(np.int64), minlength=data.num_labels).argmax())] = 1.0
    return score(data, {"logits": [row] * data.eval_examples})[0]


def score(data, outputs: dict[str, list[np.ndarray]]) -> tuple[dict[str, float], list]:
    """The task's metrics in percent (default accuracy and F1); a dev set in several parts scores each, the
    metrics of part i named with its suffix (MNLI: accuracy, accuracy_mm)."""
    import torch

    logits = np.stack(outputs["logits"])
    reg = data.meta.get("regression", False)
    preds = torch.from_numpy(logits[:, 0].astype(np.float64) if reg else logits.argmax(-1))
    target = torch.from_numpy(data.meta["labels"])
    names = data.meta.get("metrics", DEFAULT_METRICS)
    sizes = data.meta.get("parts") or [("", len(target))]
    metrics, start = {}, 0
    for suffix, n in sizes:
        p, t = preds[start : start + n], target[start : start + n]
        start += n
        for name in names:
            metrics[name + suffix] = metric(name, p, t, data.num_labels)
    return metrics, preds.tolist()


def write_predictions(out: Path, data, predictions: list) -> None:
    """predictions.json: the scored split's predictions in file order (dev; the holdout in selection runs), so any
    metric can be recomputed from the run folder with the split's labels, e.g. sklearn's MCC or scipy's Pearson.
    Classification: class indices into `task.labels`; regression: the head's float outputs."""
    from ...record import write_json_atomic

    reg, split = data.meta.get("regression", False), data.meta.get("split", "dev")
    rows = [int(i) for i in data.meta["holdout_ids"]] if split == "holdout" else None  # training-file positions
    write_json_atomic(Path(out) / "predictions.json",
                      {"split": split, "regression": reg, "rows": rows,
                       "predictions": [float(p) for p in predictions] if reg else [int(p) for p in predictions]})
