"""Tasks: one module per kind of task. A task config names its module in `kind`.

Each module has HEAD ("seq_cls", "multilabel", "token_cls" or "qa"), `load(cfg, tokenizer) -> TaskData` and
`score(data, outputs) -> (metrics, predictions)`, where outputs maps each model output name (logits,
start_logits, ...) to one array per eval row, in order. An optional `write_predictions(out, data, predictions)`
saves task-specific prediction files in the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ..batches import Packed

from . import classification, glue, multilabel, squad, tokens

TASKS = {"glue": glue, "squad": squad, "classification": classification, "tokens": tokens,
         "multilabel": multilabel}


@dataclass
class TaskData:
    train: Packed                  # model inputs + labels, tokenized once
    eval: Packed                   # model inputs (+ labels), in eval order
    num_labels: int = 2
    train_examples: int = 0        # rows / questions (SQuAD windows can be more)
    eval_examples: int = 0
    meta: dict[str, Any] = field(default_factory=dict)   # what score() needs beyond the model outputs
    notes: list[str] = field(default_factory=list)       # lines for the run log (skips, clipping)


def train_rows(cfg, n: int, labels=None, regression: bool = False, groups=None, ids=None,
               unit: str = "training rows") -> tuple[np.ndarray, np.ndarray | None, dict[str, Any] | None]:
    """Positions (in the training file) of the rows that train, of the holdout (None without one), and result.json's
    `holdout` field. The holdout is carved first (holdout.py, by `data_seed`), then `train_size` draws its nested
    subset from the rest with the same seed, so the holdout never trains and never depends on the training seed."""
    from .. import holdout
    from ...errors import UserError
    from ...record import data_seed

    seed = data_seed(cfg)
    if cfg.get("eval_split") == "holdout" and cfg.get("holdout") is None:
        raise UserError("eval_split=holdout needs a holdout: give holdout=0.1 (a fraction of train) or a row count")
    held, desc, keep = None, None, np.arange(n)
    if cfg.get("holdout") is not None:
        keep, held = holdout.split(n, cfg.holdout, seed, labels=labels, regression=regression, groups=groups,
                                   where=cfg.task.name)
        desc = holdout.describe(cfg.holdout, [ids[i] for i in held] if ids is not None else held.tolist())
    if cfg.train_size is not None and cfg.train_size > len(keep):
        left = " left after the holdout" if held is not None else ""
        raise UserError(f"train_size={cfg.train_size} is above the {len(keep)} {unit}{left} of {cfg.task.name}")
    keep = keep[subset_indices(len(keep), cfg.train_size, seed)]
    return keep, held, desc


def subset_indices(n_pool: int, n: int | None, seed: int) -> np.ndarray:
    """A deterministic, nested subset: the first n of one seeded permutation, so 500 lies inside 1,000."""
    order = np.random.RandomState(seed).permutation(n_pool)
    return np.sort(order if n is None else order[:n])
