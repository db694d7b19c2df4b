"""A study's decision per planned run folder, then the run itself: skip a completed twin, resume its own checkpoint,
or replace a run whose config changed, and call `train()` like any run (study.py and launch.py's jobs share it).
"""

from __future__ import annotations

import gc
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .record import identity, read_record
from .rundir import CHECKPOINT, Busy


def _metric(rec: dict[str, Any]) -> str:
    key = rec.get("primary_metric")
    value = rec.get("metrics", {}).get(key)
    return f"{key} {value:.2f}" if isinstance(value, (int, float)) else "no metric"


def completed(folder: Path, cfg: DictConfig) -> bool:
    """Whether `folder` holds a completed run of this very config."""
    old = read_record(folder / "result.json") or {}
    return old.get("status") == "completed" and old.get("identity") == identity(cfg)


def run_one(folder: Path, cfg: DictConfig, label: str) -> str:
    """One planned run: 'skipped' (a completed twin exists), 'ran', or 'failed' (its traceback.txt says why)."""
    from .train import train  # here, not at the top: a study's plan and dry run never load torch

    old = read_record(folder / "result.json") or {}
    same = old.get("identity") == identity(cfg)
    if old.get("status") == "completed":
        if same:
            print(f"{label}: skipped, completed ({_metric(old)})", flush=True)
            return "skipped"
        print(f"{label}: its config changed since it completed; running it again", flush=True)
        if "overwrite" in cfg:
            cfg.overwrite = True  # the study's plan owns this folder: the new config replaces the old run
    elif (folder / CHECKPOINT).is_file():
        if same and "resume" in cfg:
            cfg.resume = True  # an interrupted run of this very config: go on from its checkpoint
            print(f"{label}: resuming from {folder / CHECKPOINT}", flush=True)
        elif "overwrite" in cfg:
            cfg.overwrite = True
            print(f"{label}: its config changed since its checkpoint; starting over", flush=True)
    t0 = time.perf_counter()
    try:
        rec = train(cfg)
        print(f"{label}: {_metric(rec)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        return "ran"
    except Exception as e:  # one broken run must not stop the others; its record says failed
        where = ""
        if not isinstance(e, Busy):  # Busy: another live run owns the folder, so nothing is written there
            where = f" (traceback in {folder / 'traceback.txt'})"
            try:
                (folder / "traceback.txt").write_text(traceback.format_exc())
            except OSError:
                pass
        print(f"{label}: FAILED after {time.perf_counter() - t0:.0f} s: {type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else ''}{where}", flush=True)
        return "failed"
    finally:
        gc.collect()
