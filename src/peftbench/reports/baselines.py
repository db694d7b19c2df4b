"""Trivial baselines a run must beat to count as having learned something, computed from its eval set.

GLUE and a user's own classification data: the best constant prediction (majority-class accuracy; F1 of predicting
class 1 everywhere), from the labels of the run's dev file (MNLI: each of its two dev files, `accuracy_mm` the
mismatched one), else from the official dev sets' label counts. A constant prediction has MCC 0 (CoLA) and no
correlation with the targets (STS-B's Pearson and Spearman: 0). SQuAD: the context's first sentence as the answer,
scored with the official rules on the run's eval questions. Token classification: every word tagged `O` (no entity:
entity-level F1, precision and recall 0; word accuracy the share of `O` words). Multi-label: the training rows' most
frequent label set predicted for every dev row.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..errors import UserError

# Label counts (class 0, class 1) of the official GLUE dev sets, used when a run's dev.tsv cannot be read:
# SST-2 0=428/1=444, MRPC 0=129/1=279, RTE entailment=146/not_entailment=131 (as counted in shared/data/SOURCES.md).
KNOWN_DEV = {"sst2": (428, 444), "mrpc": (129, 279), "rte": (146, 131)}
_CACHE: dict = {}  # baselines by eval file, computed once per process


ZERO = ("mcc", "pearson", "spearman")  # a constant prediction's score in these: 0 (no correlation)


def label_counts(path: Path, label_field: str, labels: list[str], columns: list[str] | None = None) -> list[int]:
    """Rows per class in a GLUE TSV (`columns`: its column names when it has no header line, as CoLA's); read here,
    not with tasks.glue, so a report never imports torch."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        col = (list(columns) if columns else next(rows)).index(label_field)
        found = [row[col].strip() for row in rows if row]
    return [found.count(name) for name in labels]


def baseline(rec: dict[str, Any], metric: str | None = None) -> float | None:
    """The trivial predictor's score on the run's eval set, in `metric` (default: the run's primary); None when unknown.

    GLUE: the best constant prediction (majority-class accuracy; F1 of predicting class 1 everywhere).
    SQuAD: the first sentence of the context as the answer (squad.first_sentence_predictions).
    """
    kind, metric = rec["config"].get("task", {}).get("kind"), metric or rec.get("primary_metric")
    if rec.get("eval_split") == "holdout":
        return None  # scored on rows held out of train: dev's majority class would be the wrong yardstick
    try:
        if kind in ("glue", "classification") and metric in ZERO:
            return 0.0
        if kind == "glue" and metric.split("_")[0] in ("accuracy", "f1"):
            return _majority(rec, metric)
        if kind == "classification" and metric in ("accuracy", "f1"):
            return _own_majority(rec, metric)
        if kind == "squad":
            return _first_sentence(rec, metric)
        if kind == "tokens":
            return _all_outside(rec, metric)
        if kind == "multilabel":
            return _frequent_set(rec, metric)
    except (UserError, OSError, KeyError, ValueError):
        pass
    return None


def _majority(rec: dict[str, Any], metric: str) -> float | None:
    cfg = rec["config"]
    task = cfg["task"]
    base, _, suffix = metric.partition("_")
    stems = list(task.get("dev_files") or ["dev"])
    suffixes = list(task.get("dev_suffixes") or [""] * len(stems))
    part = f"_{suffix}" if suffix else ""
    if part not in suffixes:
        return None
    stem = stems[suffixes.index(part)]
    path = Path(str(cfg.get("data_dir"))) / str(task.get("dir")) / f"{stem}.tsv"
    if path not in _CACHE:
        try:
            _CACHE[path] = label_counts(path, task["label_field"], [str(x) for x in task["labels"]], task.get("columns"))
        except (OSError, KeyError, ValueError):  # no readable dev file: fall back to the official counts
            _CACHE[path] = None
    counts = _CACHE[path]
    if counts is None:
        known = KNOWN_DEV.get(task.get("name"))
        counts = known if known and sum(known) == rec.get("eval_examples") and len(stems) == 1 else None
    return _constant(counts, base)


def _own_majority(rec: dict[str, Any], metric: str) -> float | None:
    """task=classification: the dev labels' counts by the run's own reader (local files only: never the hub)."""
    task = rec["config"]["task"]
    if not task.get("train") or not task.get("dev"):
        return None
    key = ("classification", str(task["train"]), str(task["dev"]), str(task.get("label")), str(task.get("labels")))
    if key not in _CACHE:
        from omegaconf import OmegaConf

        from ..data.tasks import classification

        cfg = OmegaConf.create(rec["config"])
        *_, dev = classification.resolve(cfg, check=False)  # its run was checked
        _CACHE[key] = None if cfg.task.problem == "regression" else [dev.count(i) for i in range(len(cfg.task.labels))]
    return _constant(_CACHE[key], metric)


def _all_outside(rec: dict[str, Any], metric: str) -> float | None:
    """task=ner / tagging: every dev word tagged with the outside tag, scored as the run is (local files only)."""
    task = rec["config"]["task"]
    if metric in ("f1", "precision", "recall"):
        return 0.0  # no entity predicted: seqeval scores 0 (zero_division=0)
    if metric != "accuracy" or not task.get("dev"):
        return None
    key = ("tokens", str(task["dev"]), str(task.get("tags")), str(task.get("tag_column")), str(task.get("outside")))
    if key not in _CACHE:
        from omegaconf import OmegaConf

        from ..data.tasks import tokens

        _, tags, _ = tokens.read_split(OmegaConf.create(task), "dev")
        words = sum(len(row) for row in tags)
        _CACHE[key] = 100 * sum(t == task.get("outside", "O") for row in tags for t in row) / words
    return _CACHE[key]


def _frequent_set(rec: dict[str, Any], metric: str) -> float | None:
    """task=multilabel: the training data's most frequent label set on every dev row (local files only)."""
    task = rec["config"]["task"]
    if not task.get("train") or not task.get("dev"):
        return None
    key = ("multilabel", str(task["train"]), str(task["dev"]), str(task.get("label")), str(task.get("label_columns")),
           str(task.get("labels")))
    if key not in _CACHE:
        import numpy as np
        from omegaconf import OmegaConf

        from ..data.tasks import multilabel

        cfg = OmegaConf.create(rec["config"])
        _, train_y, _, dev_y = multilabel.resolve(cfg)
        guess = np.tile(multilabel.frequent_set(train_y), (len(dev_y), 1))
        _CACHE[key] = multilabel.metrics_of(dev_y.astype(int), guess, list(multilabel.METRICS))
    return _CACHE[key].get(metric)


def _constant(counts, metric: str) -> float | None:
    """The best constant prediction's accuracy, or F1 (of class 1 when binary, else macro), from class counts."""
    if not counts or not sum(counts):
        return None
    shares = [c / sum(counts) for c in counts]
    if metric == "accuracy":
        return 100 * max(shares)
    if len(shares) == 2:  # binary F1 of class 1: predicting 1 everywhere gives precision p, recall 1
        return 100 * 2 * shares[1] / (1 + shares[1])
    return 100 * max(2 * p / (1 + p) for p in shares) / len(shares)  # macro F1: one class scores, the others 0


def _first_sentence(rec: dict[str, Any], metric: str) -> float | None:
    task = rec["config"]["task"]
    folder = task.get("data_dir") or (Path(rec["config"]["data_dir"]) / "squad" if rec["config"].get("data_dir") else None)
    if folder is None or not Path(folder).is_dir():
        return None  # the eval set came from the hub, or has moved: never download it again here
    key = ("squad", str(folder), task.get("eval_size"))
    if key not in _CACHE:
        from omegaconf import OmegaConf

        from ..data.tasks import squad, squad_metric, subset_indices

        cfg = OmegaConf.create(rec["config"])
        dev = [e for e in squad.read_split(cfg, "dev")[0] if e["answers"]]
        if cfg.task.get("eval_size") is not None:  # the same fixed eval subset squad.load scores
            dev = [dev[i] for i in subset_indices(len(dev), min(cfg.task.eval_size, len(dev)), 0)]
        _CACHE[key] = squad_metric.evaluate({e["id"]: e["answers"] for e in dev}, squad.first_sentence_predictions(dev))
    return _CACHE[key].get(metric)
