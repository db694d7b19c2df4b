"""Multi-label classification of a user's own texts: `task=multilabel`, each row any number of labels.

The labels of a row are either one column holding a list (`task.label`: a JSONL/Parquet list, or in a CSV/TSV cell
the labels joined by `task.separator`, an empty cell for none) or several 0/1 columns, one per label
(`task.label_columns=[a,b,c]`, the label names being the column names). The head is transformers' sequence
classifier with `problem_type=multi_label_classification`: one logit per label and a binary cross-entropy loss.
A label is predicted where its sigmoid reaches `task.threshold` (0.5, kept in the run's config in result.json).
Metrics (percent, sklearn): `micro_f1` over every (row, label) decision, `macro_f1` the mean of the labels' F1,
`exact_match` the rows whose whole label set is right. The trivial baseline (report) predicts the training data's
most frequent label set on every row.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ...errors import UserError
from .tables import column, hub_table, read_table

HEAD = "multilabel"
METRICS = ("micro_f1", "macro_f1", "exact_match")
TRUE, FALSE = {1, "1", True, "true", "True", 1.0}, {0, "0", False, "false", "False", 0.0}


def source(task: DictConfig, split: str) -> str:
    return str(task.get(split)) if task.get(split) else f"hub {task.hub}" + (f"/{task.hub_config}" if task.hub_config else "")


def row_labels(value: Any, sep: str, where: str, name: str) -> list[str]:
    """One row's labels from a list, or from text joined by `sep`."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        out = [str(v).strip() for v in value]
    elif isinstance(value, str):
        out = [v.strip() for v in value.split(sep)] if value.strip() else []
    elif value is None:
        out = []
    else:
        raise UserError(f"{where}: labels {value!r} in column '{name}' are neither a list nor text: give a list "
                        f"(JSONL) or the labels joined by task.separator={sep!r}")
    if any(not v for v in out):
        raise UserError(f"{where}: an empty label in column '{name}' ({value!r}): drop the extra separator")
    return out


def read_split(task: DictConfig, split: str) -> tuple[list[list[str]], list[list[str]], list[str] | None]:
    """Text columns and each row's labels of `split`; the label names when 0/1 columns or a hub ClassLabel list give
    them (their order)."""
    hub_names = None
    if task.get(split):
        table = read_table(task[split], f"task.{split}")
    elif task.get("hub"):
        table, names = hub_table(task.hub, task.get("hub_config"), "train" if split == "train" else task.hub_dev)
        hub_names = names.get(task.label)  # a list of ClassLabel: ids -> names, in the hub's id order
    else:
        raise UserError(f"task={task.name} needs its data: set task.train=FILE and task.dev=FILE (CSV, TSV, JSONL, "
                        "Parquet), or task.hub=ID")
    where = source(task, split)
    fields = [("task.text", task.text)] + ([("task.text_pair", task.text_pair)] if task.get("text_pair") else [])
    texts = [[str(v) for v in column(table, name, key, where)] for key, name in fields]
    if not texts[0]:
        raise UserError(f"{where} has no rows ({split} split): give a file with at least one row")
    if task.get("label_columns"):
        names = [str(c) for c in task.label_columns]
        cols = [column(table, c, "task.label_columns", where) for c in names]
        labels = []
        for i in range(len(texts[0])):
            row = []
            for name, col in zip(names, cols):
                v = col[i]
                v = v.strip() if isinstance(v, str) else v
                if v not in TRUE and v not in FALSE:
                    raise UserError(f"{where}: row {i + 1}: {col[i]!r} in label column '{name}' is not 0 or 1 "
                                    "(task.label_columns holds one 0/1 column per label)")
                if v in TRUE:
                    row.append(name)
            labels.append(row)
        return texts, labels, names
    raw = column(table, task.label, "task.label", where)
    if hub_names:
        raw = [[hub_names[v] if isinstance(v, int) and 0 <= v < len(hub_names) else v for v in row] for row in raw]
    return (texts, [row_labels(v, task.separator, f"{where}: row {i + 1}", task.label) for i, v in enumerate(raw)],
            hub_names)


def matrix(labels: list[list[str]], names: list[str], where: str, given: bool) -> np.ndarray:
    """Rows x labels, 1.0 where a row has the label; an unknown label is one line."""
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(labels), len(names)), dtype=np.float32)
    for i, row in enumerate(labels):
        for v in row:
            if v not in index:
                fix = "add it to task.labels" if given else "it never appears in the training data: fix the row or " \
                                                            "set task.labels=[...] to every label"
                raise UserError(f"{where}: row {i + 1}: unknown label '{v}' (labels: {names}): {fix}")
            out[i, index[v]] = 1.0
    return out


def resolve(cfg: DictConfig) -> tuple[list[list[str]], np.ndarray, list[list[str]], np.ndarray]:
    """Both splits read; texts and label matrices. The task config gets its labels, label names and metric."""
    task = cfg.task
    train_texts, train_labels, columns = read_split(task, "train")
    dev_texts, dev_labels = ([[]], []) if cfg.get("eval_split") == "holdout" else read_split(task, "dev")[:2]
    given = bool(task.get("labels"))
    names = [str(x) for x in task.labels] if given else columns or sorted({v for row in train_labels for v in row})
    if len(names) < 2:
        raise UserError(f"{source(task, 'train')}: the training rows carry {len(names)} label(s) {names}: a "
                        "multi-label task needs at least 2 (one label is task=classification)")
    train_y = matrix(train_labels, names, source(task, "train"), given)
    dev_y = matrix(dev_labels, names, source(task, "dev"), True)
    task.labels = names
    if not task.get("label_names"):
        task.label_names = names
    task.metrics = list(task.get("metrics") or METRICS)
    if not task.get("metric"):
        task.metric = task.metrics[0]
    return train_texts, train_y, dev_texts, dev_y


def encode(cfg: DictConfig, tokenizer, texts: list[list[str]], y: np.ndarray):
    from ..batches import Packed

    enc = tokenizer(*texts, truncation=True, max_length=cfg.task.max_length)
    keys = ("input_ids", "token_type_ids", "attention_mask")
    packed = Packed.from_lists({k: v for k, v in enc.items() if k in keys}, tokenizer.pad_token_id)
    packed.columns["labels"] = y  # float targets for the BCE loss, one row of 0/1 per example
    return packed


def load(cfg: DictConfig, tokenizer):
    from . import TaskData, train_rows

    train_texts, train_y, dev_texts, dev_y = resolve(cfg)
    keep, held, desc = train_rows(cfg, len(train_y))
    on_holdout = cfg.get("eval_split") == "holdout"
    if on_holdout:
        dev_texts, dev_y = [[t[i] for i in held] for t in train_texts], train_y[held]
    train_texts, train_y = [[t[i] for i in keep] for t in train_texts], train_y[keep]
    data = TaskData(train=encode(cfg, tokenizer, train_texts, train_y), eval=encode(cfg, tokenizer, dev_texts, dev_y),
                    num_labels=len(cfg.task.labels), train_examples=len(train_y), eval_examples=len(dev_y),
                    meta={"labels": dev_y, "threshold": float(cfg.task.threshold), "metrics": list(cfg.task.metrics),
                          "holdout": desc, "train_ids": keep, "holdout_ids": held,
                          "split": "holdout" if on_holdout else "dev"})
    data.notes.append(f"{cfg.task.name}: multi-label over {len(cfg.task.labels)} labels {list(cfg.task.labels)}, "
                      f"threshold {cfg.task.threshold}; train {len(train_y)} rows from {source(cfg.task, 'train')}, "
                      + (f"holdout {len(dev_y)} rows of it" if on_holdout else
                         f"dev {len(dev_y)} rows from {source(cfg.task, 'dev')}"))
    return data


def metrics_of(target: np.ndarray, pred: np.ndarray, names: list[str]) -> dict[str, float]:
    """`names` (of METRICS) in percent, by sklearn; a label nobody has nor predicts scores F1 0 in the macro mean."""
    from sklearn.metrics import accuracy_score, f1_score

    fns = {"micro_f1": lambda: f1_score(target, pred, average="micro", zero_division=0),
           "macro_f1": lambda: f1_score(target, pred, average="macro", zero_division=0),
           "exact_match": lambda: accuracy_score(target, pred)}
    return {n: round(100 * float(fns[n]()), 4) for n in names}


def score(data, outputs: dict[str, list[np.ndarray]]) -> tuple[dict[str, float], list[list[int]]]:
    logits = np.stack(outputs["logits"]).astype(np.float64)
    pred = (1 / (1 + np.exp(-logits)) >= data.meta["threshold"]).astype(int)
    target = data.meta["labels"].astype(int)
    return metrics_of(target, pred, data.meta["metrics"]), pred.tolist()


def write_predictions(out: Path, data, predictions: list[list[int]]) -> None:
    """predictions.json: each scored row's 0/1 per label (task.labels' order), in file order."""
    from ...record import write_json_atomic

    split = data.meta.get("split", "dev")
    rows = [int(i) for i in data.meta["holdout_ids"]] if split == "holdout" else None
    write_json_atomic(Path(out) / "predictions.json", {"split": split, "rows": rows, "threshold": data.meta["threshold"],
                                                       "predictions": predictions})


def frequent_set(train_y: np.ndarray) -> np.ndarray:
    """The training rows' most frequent label set (ties: the first in file order), as one 0/1 row."""
    counts = Counter(map(tuple, train_y.astype(int).tolist()))
    return np.array(max(counts, key=counts.get), dtype=int)  # max keeps the first of equal counts


def pool_size(cfg: DictConfig) -> int | None:
    if not cfg.task.get("train"):
        return None
    return len(read_split(cfg.task, "train")[1])
