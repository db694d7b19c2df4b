"""A study's decision per planned run folder, then the run itself: skip a completed twin, resume its own checkpoint,
or replace a run whose config changed, and call `train()` like any run (grid.py and launch.py's jobs share it).
"""

from __future__ import annotations

import gc
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..engine import signals
from ..engine.rundir import CHECKPOINT, Busy
from ..record import SCORED, check_version, identities, read_record


def verdict(rec: dict[str, Any]) -> str:
    """The run's primary metric against its task's trivial baseline, by the report's rule (reports/cells.py), e.g.
    'accuracy 52.35 (majority class 52.71: learned nothing)' or 'accuracy 88.30 (majority class 50.92: +37.38)'."""
    from ..reports.cells import learned_nothing  # here: the report package loads matplotlib, a dry run needs none
    from ..reports.baselines import baseline

    key = rec.get("primary_metric")
    value = rec.get("metrics", {}).get(key)
    if not isinstance(value, (int, float)):
        return "no metric"
    text = f"{key} {value:.2f}"
    b = baseline(rec) if isinstance(rec.get("config"), dict) else None
    if b is None:
        return text  # unknown (a hub eval set, or a task without one): say nothing rather than guess
    kind = rec["config"].get("task", {}).get("kind")
    # reports/baselines.py's trivial predictor: QA's first sentence; in accuracy (MNLI's accuracy_mm too) the majority
    # class; in an F1, MCC or Pearson one constant prediction
    name = ("first sentence" if kind == "squad" else
            "majority class" if key.split("_")[0] == "accuracy" else "constant prediction")
    return f"{text} ({name} {b:.2f}: {'learned nothing' if learned_nothing(rec) else f'{value - b:+.2f}'})"


def trains_here(study: DictConfig) -> bool:
    """Whether a study's runs train on this machine (no launcher, or a local one), so its device is theirs."""
    return not study.launcher or study.launcher in ("basic", "joblib", "submitit_local")


def twin(rec: dict[str, Any], folder: Path, cfg: DictConfig, here: bool = True) -> bool:
    """Whether `rec` (read from `folder`) is a run of this very config, trained as it would train on this machine
    (here=False: on any machine its device and precision allow; a cluster launcher's runs train elsewhere)."""
    from ..engine.device import runtimes  # here, not at the top: importing the CLI or a planner loads no torch

    if not rec:
        return False
    check_version(rec, folder / "result.json")
    return rec.get("identity") in identities(cfg, runtimes(cfg, here))


def check_versions(out: Path) -> None:
    """Every record in the study folder `out` hashed by today's identity version, or one line: migrate it first."""
    for path in sorted(Path(out).rglob("result.json")) if Path(out).is_dir() else []:
        if rec := read_record(path):
            check_version(rec, path, out)


def completed(folder: Path, cfg: DictConfig, here: bool = True) -> bool:
    """Whether `folder` holds a completed run of this very config."""
    old = read_record(folder / "result.json") or {}
    return old.get("status") in SCORED and twin(old, folder, cfg, here)


def run_one(folder: Path, cfg: DictConfig, label: str) -> str:
    """One planned run: 'skipped' (a completed twin exists), 'ran', or 'failed' (its traceback.txt says why).
    KeyboardInterrupt (a stop signal: the run saved its checkpoint, engine/signals.py) is printed and raised."""
    from ..engine.train import train  # here, not at the top: a study's plan and dry run never load torch

    if signals.requested():  # the study is stopping: start nothing new
        print(f"{label}: not started, the study is stopping", flush=True)
        raise signals.Interrupted(f"stopped by {signals.name(signals.requested())}")
    old = read_record(folder / "result.json") or {}
    same = twin(old, folder, cfg)
    if "resume" in cfg and not (folder / CHECKPOINT).is_file():
        cfg.resume = False  # the study decides per folder: resume=true on its command line cannot fail a fresh run
    if old.get("status") in SCORED:
        if same:
            print(f"{label}: skipped, {old['status']} ({verdict(old)})", flush=True)
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
        said = f"diverged at step {rec['diverged_at_step']}, scored as the trivial prediction: " \
            if rec["status"] == "diverged" else ""
        print(f"{label}: {said}{verdict(rec)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        return "ran"
    except KeyboardInterrupt as e:
        print(f"{label}: stopped after {time.perf_counter() - t0:.0f} s: {e}", flush=True)
        raise
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
