"""Batch order and schedule length: seeded, length-grouped batches and the epoch- or step-based step count."""

from __future__ import annotations

import math

import numpy as np
from omegaconf import DictConfig

BUCKET_BATCHES = 50  # sort by length within windows of this many batches: little padding, order still random


def train_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """One epoch's batches of row indices; a function of (seed, epoch) alone, so a resumed run sees the same order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        window = batch_size * BUCKET_BATCHES
        chunks = [order[i : i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if group_by_length:  # shuffle the batches so long ones are not always first in each window
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def total_steps(cfg: DictConfig, n_train: int) -> int:
    """Optimizer steps: `epochs` full passes, or the seed's step rule min(cap, max(min_steps, ceil(n/b*e)))."""
    if cfg.schedule == "steps":
        s = cfg.steps
        steps = min(s.cap, max(s.min_steps, math.ceil(n_train / cfg.batch_size * s.epochs_equiv)))
    else:
        steps = cfg.epochs * math.ceil(n_train / cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps
