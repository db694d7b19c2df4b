"""The runs as one table: `peftbench.results(folders)`, a pandas DataFrame with one row per run, built from the very
records the report reads (build.collect: every result.json under the folders, a completed run found twice once).

Columns: folder, status, task, method, model, seed, train_size, data_seed (the record's `run`), metric (the primary
metric's name) and score (its value, in percent), then every other field of result.json flattened with dots:
metrics.<name>, lr, trainable_params and the costs (peak_memory_bytes, train_flops, train_time_s, delta_bytes, ...),
forgetting.<key>, protocol.<key>, holdout.<key>, data_sha256.<split>, identity, error. The resolved config and the
library versions stay in each run's result.json (the `folder` column points at it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LEAD = ("folder", "status", "task", "method", "model", "seed", "train_size", "data_seed", "metric", "score")
LEFT_OUT = ("config", "versions", "run", "schema", "_path", "primary_metric")


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def row(rec: dict[str, Any]) -> dict[str, Any]:
    """One record as one row (see the module doc)."""
    metric = rec.get("primary_metric")
    out = {"folder": rec.get("_path"), "status": rec.get("status"), **(rec.get("run") or {}), "metric": metric,
           "score": (rec.get("metrics") or {}).get(metric)}
    out.update(flat({k: v for k, v in rec.items() if k not in LEFT_OUT and k != "status"}))
    return out


def results_frame(folders: list[str | Path]) -> Any:
    """Every run under `folders` as a DataFrame (build.collect's records, in its order)."""
    import pandas as pd

    from .build import collect

    rows = [row(r) for r in collect(folders)]
    frame = pd.DataFrame(rows)
    lead = [c for c in LEAD if c in frame.columns]
    return frame[lead + [c for c in frame.columns if c not in lead]]
