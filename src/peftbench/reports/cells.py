"""The report's shared pieces: table order, cell text (mean ± std (n)), learned-nothing flags, pooled-config notes,
and the learning-rate choice (each method's best rate by the mean over seeds; the tie rule).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..record import NOT_IDENTITY
from .baselines import baseline
from .figures import ORDER
from ..stats import mean_std

TASK_ORDER = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "squad"]  # GLUE's own order
# The reference study's metrics (docs/reference-study.md): MRPC reports accuracy beside its primary F1, as GLUE does for
# QQP; STS-B Spearman beside Pearson; MNLI the mismatched dev set beside the matched one. (SQuAD's secondary, exact
# match, has its own columns in the scaling table.)
SECONDARY = {"mrpc": "accuracy", "qqp": "accuracy", "stsb": "spearman", "mnli": "accuracy_mm"}
CLEAR = 1.0                   # points a run must beat the majority-class baseline by to count as having learned
FLAG = "⚠"
SHARED = "†"                  # marks a time measured while the run shared its GPU (record: device_shared_with)


def order(names, ranking=ORDER) -> list[str]:
    return sorted(set(names), key=lambda n: (ranking.index(n) if n in ranking else len(ranking), n))


def size_of(rec: dict[str, Any]) -> int:
    return rec["run"]["train_size"] or rec.get("train_examples") or 0


def learned_nothing(rec: dict[str, Any], metric: str | None = None) -> bool:
    """Not CLEAR points above the trivial predictor in `metric` (default: the run's primary metric)."""
    metric = metric or rec["primary_metric"]
    b = baseline(rec, metric)
    return b is not None and rec["metrics"][metric] < b + CLEAR


def shared(rec: dict[str, Any]) -> bool:
    """Whether the run shared its GPU with other runs of its study while it trained (its times are not a solo speed)."""
    return (rec.get("device_shared_with") or 0) > 0


def cell(values: list[float], flagged: bool = False) -> str:
    if not values:
        return "—"
    m, s, n = mean_std(values)
    text = f"{m:.2f} (n=1)" if s is None else f"{m:.2f} ± {s:.2f} (n={n})"
    return text + (f" {FLAG}" if flagged else "")


def by_rate(recs: list[dict]) -> dict[float | None, list[dict]]:
    """Runs grouped by their learning rate (None for records that predate the `lr` field)."""
    out: dict = defaultdict(list)
    for r in recs:
        out[r.get("lr")].append(r)
    return dict(out)


def best_rate(rates: dict[float | None, list[dict]], metric: str) -> float | None:
    """The rate with the highest mean score over seeds, among the rates with the most runs; a tie: the lower rate.

    Only the rates with the most runs compete, so a rate whose other seeds have not run yet (a study in stages) or
    failed cannot win on one lucky seed.
    """
    most = max(len(rs) for rs in rates.values())

    def key(lr):
        vals = [r["metrics"][metric] for r in rates[lr]]
        return (round(sum(vals) / len(vals), 9), -(lr or 0.0))
    return max((lr for lr, rs in rates.items() if len(rs) == most), key=key)


def rate(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:g}"


def seed_rate(recs: list[dict]) -> float | None:
    """The method's own rate (configs/method/NAME.yaml `lr`), as recorded in the runs' configs."""
    return next((float(r["config"]["method"]["lr"]) for r in recs if r["config"]["method"].get("lr") is not None), None)


def pair_key(rec: dict[str, Any]) -> tuple[int, int]:
    """What two methods' runs pair on: the training seed and, with `data_seeds`, the data seed (-1: not recorded)."""
    data_seed = rec.get("data_seed", rec["run"].get("data_seed"))
    return rec["run"]["seed"], -1 if data_seed is None else data_seed


def by_seed(recs: list[dict], metric: str) -> dict[tuple[int, int], float]:
    return {pair_key(r): r["metrics"][metric] for r in recs}


def pct(values) -> str:
    vals = sorted(set(values))
    return "—" if not vals else " / ".join(f"{v:.3g}%" for v in vals)


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": str(v)})
    return out


def mixed_keys(recs: list[dict]) -> list[str]:
    """Config keys (besides seed and output paths) that differ between runs pooled into one table cell."""
    flats = [_flat({k: v for k, v in r["config"].items() if k not in NOT_IDENTITY + ("seed",)}) for r in recs]
    keys = set().union(*flats)
    return sorted(k for k in keys if k != "task.data_dir" and len({f.get(k) for f in flats}) > 1)
