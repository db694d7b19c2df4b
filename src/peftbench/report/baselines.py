"""Trivial baselines a run must beat to count as having learned something, computed from its eval set.

GLUE: the best constant prediction (majority-class accuracy; F1 of predicting class 1 everywhere), from the labels
of the run's dev.tsv, else from the official dev sets' label counts. SQuAD: the context's first sentence as the
answer, scored with the official rules on the run's eval questions.
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


def label_counts(path: Path, label_field: str, labels: list[str]) -> list[int]:
    """Rows per class in a GLUE TSV; read here, not with tasks.glue, so a report never imports torch."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        col = next(rows).index(label_field)
        found = [row[col].strip() for row in rows if row]
    return [found.count(name) for name in labels]


def baseline(rec: dict[str, Any], metric: str | None = None) -> float | None:
    """The trivial predictor's score on the run's eval set, in `metric` (default: the run's primary); None when unknown.

    GLUE: the best constant prediction (majority-class accuracy; F1 of predicting class 1 everywhere).
    SQuAD: the first sentence of the context as the answer (squad.first_sentence_predictions).
    """
    kind, metric = rec["config"].get("task", {}).get("kind"), metric or rec.get("primary_metric")
    try:
        if kind == "glue" and metric in ("accuracy", "f1"):
            return _majority(rec, metric)
        if kind == "squad":
            return _first_sentence(rec, metric)
    except (UserError, OSError, KeyError, ValueError):
        pass
    return None


def _majority(rec: dict[str, Any], metric: str) -> float | None:
    cfg = rec["config"]
    task = cfg["task"]
    path = Path(str(cfg.get("data_dir"))) / str(task.get("dir")) / "dev.tsv"
    if path not in _CACHE:
        try:
            _CACHE[path] = label_counts(path, task["label_field"], [str(x) for x in task["labels"]])
        except (OSError, KeyError, ValueError):  # no readable dev file: fall back to the official counts
            _CACHE[path] = None
    counts = _CACHE[path]
    if counts is None:
        known = KNOWN_DEV.get(task.get("name"))
        counts = known if known and sum(known) == rec.get("eval_examples") else None
    if counts is None:
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

        from ..tasks import squad, squad_metric, subset_indices

        cfg = OmegaConf.create(rec["config"])
        dev = [e for e in squad.read_split(cfg, "dev")[0] if e["answers"]]
        if cfg.task.get("eval_size") is not None:  # the same fixed eval subset squad.load scores
            dev = [dev[i] for i in subset_indices(len(dev), min(cfg.task.eval_size, len(dev)), 0)]
        _CACHE[key] = squad_metric.evaluate({e["id"]: e["answers"] for e in dev}, squad.first_sentence_predictions(dev))
    return _CACHE[key].get(metric)
