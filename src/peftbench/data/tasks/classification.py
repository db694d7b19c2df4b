"""A user's own sentence(-pair) classification or regression data, no code: `task=classification task.train=FILE
task.dev=FILE task.text=COL [task.text_pair=COL] task.label=COL`, or `task.hub=ID [task.hub_config=NAME]`.

Files are read by tables.read_table; tokenizing, the head and the metrics are GLUE's (glue.encoded, glue.score), so
a GLUE task written out as a CSV trains exactly as the built-in one. The problem is found from the labels unless
`task.problem` says it: whole numbers or strings are classes (ids in sorted order, or `task.labels`' order), floats
a regression (one output, MSE). What is found is written back into the run's task config (labels, label_names,
problem, metric), so the saved delta names its classes for `peftbench predict`.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig

from ...errors import UserError
from . import glue
from .tables import column, hub_table, read_table

HEAD = "seq_cls"
PROBLEMS = ("auto", "classification", "regression")


def source(task: DictConfig, split: str) -> str:
    return str(task.get(split)) if task.get(split) else f"hub {task.hub}" + (f"/{task.hub_config}" if task.hub_config else "")


def read_columns(task: DictConfig, split: str) -> tuple[list[list[Any]], list[Any], list[str] | None]:
    """Text columns, raw labels and (from a hub ClassLabel) class names of the split `split` ("train" | "dev")."""
    if task.get(split):
        table, names = read_table(task[split], f"task.{split}"), {}
    elif task.get("hub"):
        table, names = hub_table(task.hub, task.get("hub_config"), "train" if split == "train" else task.hub_dev)
    else:
        raise UserError(f"task={task.name} needs its data: set task.train=FILE and task.dev=FILE (CSV, TSV, JSONL, "
                        "Parquet), or task.hub=ID [task.hub_config=NAME]")
    where = source(task, split)
    fields = [("task.text", task.text)] + ([("task.text_pair", task.text_pair)] if task.get("text_pair") else [])
    texts = [column(table, name, key, where) for key, name in fields]
    labels = column(table, task.label, "task.label", where)
    if not labels:
        raise UserError(f"{where} has no rows ({split} split): give a file with at least one row")
    for (key, name), values in zip(fields, texts):
        for i, v in enumerate(values):
            if not isinstance(v, str):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    raise UserError(f"{where}: row {i + 1} has no text in column '{name}' ({key})")
                values[i] = str(v)
    hub_names = names.get(task.label)
    if hub_names is not None:
        labels = [hub_names[v] if isinstance(v, int) and 0 <= v < len(hub_names) else v for v in labels]
    return texts, labels, hub_names


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def problem_of(labels: list[Any], where: str, column_name: str) -> str:
    """classification for whole numbers and strings, regression for floats (CSV/TSV strings parsed first). Decimals
    mixed with text are a typo in a regression's targets, never a silent classifier over every distinct value."""
    def as_number(v):
        if is_number(v):
            return v
        try:
            return int(v) if str(v).strip().lstrip("+-").isdigit() else float(v)
        except (TypeError, ValueError):
            return None
    values = [as_number(v) for v in labels]
    decimals = any(isinstance(v, float) for v in values)
    bad = next((i for i, v in enumerate(values) if v is None or (isinstance(v, float) and not math.isfinite(v))), None)
    if decimals and bad is not None:
        raise UserError(f"{where}: row {bad + 1}: regression target {labels[bad]!r} in column '{column_name}' is not a "
                        "number (the other labels are decimals): fix the row, or set task.problem=classification "
                        "if every value is a class")
    return "regression" if decimals else "classification"


def key(v: Any) -> str:
    """A class label as text: 1 and "1" are one class; strings are stripped (as GLUE's reader does)."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def class_ids(labels: list[Any], names: list[str], where: str, train: str, column_name: str,
              given: bool = False) -> list[int]:
    index = {n: i for i, n in enumerate(names)}
    ids = []
    for i, v in enumerate(labels):
        k = key(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else None
        if k is None or k == "":
            raise UserError(f"{where}: row {i + 1} has no label in column '{column_name}' (task.label)")
        if k not in index and given:
            raise UserError(f"{where}: row {i + 1}: label '{k}' is not one of task.labels={names}: add it to "
                            "task.labels, or fix the row")
        if k not in index:
            raise UserError(f"{where}: row {i + 1}: label '{k}' never appears in the training data ({train}), whose "
                            f"labels are {names}: fix the row or set task.labels=[...] to every class")
        ids.append(index[k])
    return ids


def targets(labels: list[Any], where: str, column_name: str) -> list[float]:
    out = []
    for i, v in enumerate(labels):
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x) or isinstance(v, bool):
            raise UserError(f"{where}: row {i + 1}: regression target {v!r} in column '{column_name}' is not a number "
                            "(task.problem=regression needs numbers; drop it for classes)")
        out.append(x)
    return out


def resolve(cfg: DictConfig, check: bool = True) -> tuple[list[list[str]], list, list[list[str]], list]:
    """Both splits read and labelled; the task config gets its problem, labels, label names and metric. `check`:
    cross-check every task key against the rows (crosscheck.classification: errors raise, warnings print)."""
    task = cfg.task
    if task.get("problem", "auto") not in PROBLEMS:
        raise UserError(f"task.problem={task.problem!r} is unknown: use {', '.join(PROBLEMS)}")
    train_texts, train_raw, hub_names = read_columns(task, "train")
    # a holdout-scored run never reads dev (select=holdout: dev is the report's test set)
    dev_texts, dev_raw = ([], []) if cfg.get("eval_split") == "holdout" else read_columns(task, "dev")[:2]
    problem = task.get("problem", "auto")
    why = f"task.problem={problem}"
    if problem == "auto":
        problem = "classification" if hub_names or task.get("labels") else problem_of(train_raw, source(task, "train"),
                                                                                     task.label)
        why = ("task.labels names classes" if task.get("labels") else "the hub's ClassLabel" if hub_names else
               f"column '{task.label}' of {source(task, 'train')} holds "
               + ("decimals" if problem == "regression" else "whole numbers or strings"))
    train_src, dev_src = source(task, "train"), source(task, "dev")
    if problem == "regression":
        train_labels, dev_labels = targets(train_raw, train_src, task.label), targets(dev_raw, dev_src, task.label)
        names: list[str] = []
    else:
        if task.get("labels"):
            names = [key(x) for x in task.labels]  # task.labels=[1,2] and [1.0,2.0] name the rows' 1 and 2
        elif hub_names:
            names = hub_names
        else:
            found = {key(v) for v in train_raw if v is not None and not (isinstance(v, float) and math.isnan(v))}
            numeric = all(k.lstrip("+-").isdigit() for k in found)
            names = sorted(found, key=int) if numeric else sorted(found)
        if len(names) < 2 and not task.get("labels"):
            raise UserError(f"{train_src}: every training label is {names}: a classifier needs at least 2 classes")
        given = bool(task.get("labels"))
        train_labels = class_ids(train_raw, names, train_src, train_src, task.label, given)
        dev_labels = class_ids(dev_raw, names, dev_src, train_src, task.label, given)
    if check:
        from ...config import crosscheck

        crosscheck.classification(task, problem, names, train_labels, dev_labels, train_texts, dev_texts,
                                  bool(task.get("labels")), why)
    task.problem = problem
    task.labels = names
    if not task.get("label_names"):
        task.label_names = names
    if not task.get("metric"):  # the first of task.metrics, so the primary metric is always one that is scored
        task.metric = task.metrics[0] if task.get("metrics") else "pearson" if problem == "regression" else "accuracy"
    return train_texts, train_labels, dev_texts, dev_labels


def load(cfg: DictConfig, tokenizer):
    from . import train_rows

    train_texts, train_labels, dev_texts, dev_labels = resolve(cfg)
    keep, held, desc = train_rows(cfg, len(train_labels), train_labels, cfg.task.problem == "regression")
    on_holdout = cfg.get("eval_split") == "holdout"
    if on_holdout:  # score on the rows held out of train; resolve() did not read dev
        dev_texts, dev_labels = [[t[i] for i in held] for t in train_texts], [train_labels[i] for i in held]
    train_texts = [[t[i] for i in keep] for t in train_texts]
    train_labels = [train_labels[i] for i in keep]
    from ..frames import file_sha256

    files = {s: file_sha256(cfg.task[s]) for s in ("train", "dev") if cfg.task.get(s) and (s == "train" or not on_holdout)}
    data = glue.encoded(cfg, tokenizer, train_texts, train_labels, dev_texts, dev_labels, [("", len(dev_labels))],
                        {"holdout": desc, "train_ids": keep, "holdout_ids": held, "data_sha256": files or None})
    data.notes.append(f"{cfg.task.name}: {cfg.task.problem}"
                      + (f" over {len(cfg.task.labels)} classes {list(cfg.task.labels)}" if cfg.task.labels else "")
                      + f"; train {len(train_labels)} rows from {source(cfg.task, 'train')}, "
                      + (f"holdout {len(dev_labels)} rows of it" if on_holdout else
                         f"dev {len(dev_labels)} rows from {source(cfg.task, 'dev')}"))
    return data


def pool_size(cfg: DictConfig) -> int | None:
    """Training rows (a study's sizes are checked against it); None from the hub (counting would download it)."""
    if not cfg.task.get("train"):
        return None
    return len(read_columns(cfg.task, "train")[1])


score = glue.score
trivial = glue.trivial
