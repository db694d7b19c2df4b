"""Tasks: one module per kind of task. A task config names its module in `kind`.

Each module has HEAD ("seq_cls" or "qa"), `load(cfg, tokenizer) -> TaskData` and
`score(data, outputs) -> (metrics, predictions)`, where outputs maps each model output name (logits,
start_logits, ...) to one array per eval row, in order. An optional `write_predictions(out, data, predictions)`
saves task-specific prediction files in the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ..data import Packed

from . import classification, glue, squad

TASKS = {"glue": glue, "squad": squad, "classification": classification}


@dataclass
class TaskData:
    train: Packed                  # model inputs + labels, tokenized once
    eval: Packed                   # model inputs (+ labels), in eval order
    num_labels: int = 2
    train_examples: int = 0        # rows / questions (SQuAD windows can be more)
    eval_examples: int = 0
    meta: dict[str, Any] = field(default_factory=dict)   # what score() needs beyond the model outputs
    notes: list[str] = field(default_factory=list)       # lines for the run log (skips, clipping)


def subset_indices(n_pool: int, n: int | None, seed: int) -> np.ndarray:
    """A deterministic, nested subset: the first n of one seeded permutation, so 500 lies inside 1,000."""
    order = np.random.RandomState(seed).permutation(n_pool)
    return np.sort(order if n is None else order[:n])
