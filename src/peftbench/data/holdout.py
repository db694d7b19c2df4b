"""The holdout: a validation slice carved out of a task's TRAIN data, used by `select=holdout` studies to score every
grid or trial point without reading dev (the report's test set). One split for every task kind:

  classification  stratified by label, so every class keeps its share of the rows
  regression      stratified by quantile bins of the target (up to 10, at least 2 rows a bin on the smaller side)
  QA              by article (SQuAD's title; the context when there is none): no passage sits on both sides

`holdout` is a fraction in (0, 1) or a row count (QA: questions); the slice is a function of the data and
`data_seed` alone, never of the training seed, so every run of a study holds out the very same rows.
Row ids are positions in the training file (QA: question ids); `ids_sha256` hashes them sorted, so two records
name the same slice exactly when their hashes agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UserError

MAX_BINS = 10  # regression strata: quantile bins of the target


def check_spec(spec: Any, n: int, where: str) -> int:
    """The number of rows `spec` holds out of `n`; one UserError line when it is not a fraction in (0,1) or a count
    that leaves rows to train."""
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise UserError(f"holdout={spec!r} is not a number: give a fraction in (0,1) (holdout=0.1) or a row count "
                        "(holdout=500)")
    if isinstance(spec, float) and not spec.is_integer():  # a fraction of the rows
        if not 0 < spec < 1:
            raise UserError(f"holdout={spec} is neither a fraction in (0,1) nor a whole row count: e.g. holdout=0.1")
        k = int(round(spec * n))
    else:  # a row count
        k = int(spec)
    if k < 1 or k >= n:
        raise UserError(f"holdout={spec} holds out {k} of the {n} training rows of {where}: it must leave at least one "
                        "on each side; give a smaller fraction or count")
    return k


def _stratified(k: int, strata: np.ndarray, seed: int) -> np.ndarray:
    """k rows, each stratum's share by largest remainder (k * its rows / n), drawn within it by one seeded RNG.
    (Written with numpy: sklearn's train_test_split does the same but is not a dependency of peftbench.)"""
    rng = np.random.RandomState(seed)
    keys, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    quota = k * counts / counts.sum()
    take = np.floor(quota).astype(np.int64)
    extra = np.argsort(-(quota - take), kind="stable")[: k - take.sum()]
    take[extra] += 1
    held = [rng.permutation(np.flatnonzero(inverse == j))[:t] for j, t in enumerate(take)]
    return np.sort(np.concatenate(held))


def _bins(targets: np.ndarray, k: int) -> np.ndarray:
    """Quantile bins of a regression target, as many as leave ~2 rows a bin on the smaller side (<= MAX_BINS)."""
    n_bins = max(1, min(MAX_BINS, k // 2, (len(targets) - k) // 2))
    edges = np.quantile(targets, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.searchsorted(edges, targets, side="right")


def split(n: int, spec: Any, seed: int, labels: Sequence | None = None, regression: bool = False,
          groups: Sequence | None = None, where: str = "the task") -> tuple[np.ndarray, np.ndarray]:
    """(train rows, holdout rows), both sorted positions in 0..n-1, disjoint, covering all n.

    `labels`: class ids (stratified) or, with `regression`, float targets (binned); `groups`: one key per row (QA's
    article), a group lies wholly on one side and the holdout takes whole groups until it holds >= the rows asked for.
    """
    k = check_spec(spec, n, where)
    idx = np.arange(n)
    if groups is not None:
        keys = list(dict.fromkeys(groups))  # the groups in file order, then a seeded shuffle of them
        order = np.random.RandomState(seed).permutation(len(keys))
        rank = {keys[g]: r for r, g in enumerate(order)}
        sizes = np.bincount([rank[g] for g in groups], minlength=len(keys))
        taken = int(np.searchsorted(np.cumsum(sizes), k)) + 1  # groups needed to reach k rows
        if taken >= len(keys):
            raise UserError(f"holdout={spec} needs every article of {where} ({len(keys)}): nothing would be left to "
                            "train on; give a smaller fraction or count")
        held = np.array([i for i, g in enumerate(groups) if rank[g] < taken], dtype=np.int64)
    else:
        if labels is not None:
            values = np.asarray(labels, dtype=np.float64 if regression else np.int64)
            held = _stratified(k, _bins(values, k) if regression else values, seed)
        else:  # plain: no labels
            held = np.sort(np.random.RandomState(seed).permutation(n)[:k])
    keep = np.setdiff1d(idx, held, assume_unique=True)
    return keep, held


def ids_sha256(ids: Sequence) -> str:
    """sha256 of the holdout's row ids, sorted, one per line (ints as decimals, QA ids as they are)."""
    text = "\n".join(str(i) for i in sorted(ids))
    return hashlib.sha256(text.encode()).hexdigest()


def describe(spec: Any, ids: Sequence) -> dict[str, Any]:
    """result.json's `holdout` field."""
    return {"spec": spec, "size": len(ids), "ids_sha256": ids_sha256(ids)}
