"""A run folder belongs to one run: a lock while it runs, no silent replacement, resume only of the run that paused.

`claim(out, cfg)` runs first in `train()` (on the main process, before anything is written):
  - OUT/run.lock (host, pid, start time) is created atomically; a live holder means refusal. A lock whose pid no
    longer runs on this host is stale (a crash, a SIGKILL): it is named on stderr and taken over. A lock from another
    host cannot be checked from here: refused, with the file to delete if that run is dead.
  - A completed run, or an unfinished one with a checkpoint, is not replaced unless overwrite=true; then its
    files (record, delta, predictions, checkpoint, traceback) go first, so the folder never mixes two runs.
  - resume=true continues only when the checkpoint's run (its result.json) has this config's identity; otherwise it
    refuses and names the keys that differ. Keys outside the identity (grad_accum, eval_every, out, ...) may change.
A study decides per folder what to do (runner.py's `run_one`) and then calls `train()` like any run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from ..errors import UserError
from ..record import check_version, identity, identity_fields, read_record, recorded_runtime

LOCK = "run.lock"
CHECKPOINT = "checkpoint.pt"  # = checkpoint.FILE (not imported: that would pull in torch for a study's plan)
# in the identity (a study with evals is another record), yet evaluating more or less often does not change the training
RESUME_MAY_CHANGE = ("eval_every",)
# what a run writes besides its log and W&B mirror: removed before another run takes the folder over
RUN_FILES = ("result.json", "delta.safetensors", "delta.json", "predictions.json", CHECKPOINT, "traceback.txt")


class Busy(UserError):
    """The folder is in use by another live run: nothing of it may be touched."""


def read_lock(out: Path) -> dict[str, Any] | None:
    try:
        lock = json.loads((Path(out) / LOCK).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as held by an unknown run
    return lock if isinstance(lock, dict) else {}


def alive(lock: dict[str, Any]) -> bool | None:
    """Whether the lock's process still runs: True/False on this host, None when it is another host's."""
    if lock.get("host") != platform.node() or not isinstance(lock.get("pid"), int):
        return None
    try:
        os.kill(lock["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _holder(out: Path, lock: dict[str, Any]) -> str:
    return f"pid {lock.get('pid', '?')} on host {lock.get('host', '?')} (since {lock.get('started_at', '?')})"


def _acquire(out: Path) -> None:
    """Create OUT/run.lock atomically (link of a complete temp file), taking over a stale one; refuse a live one."""
    path = out / LOCK
    me = {"host": platform.node(), "pid": os.getpid(),
          "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = out / f".{LOCK}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(me))
    try:
        for _ in range(2):  # a stale lock is removed once, then the link is tried again
            try:
                os.link(tmp, path)
                return
            except FileExistsError:
                pass
            lock = read_lock(out)
            if lock is None:
                continue  # released meanwhile
            state = alive(lock)
            if state is False:
                print(f"peftbench: note: {path} was left by {_holder(out, lock)}, which is no longer running (a "
                      "crash or kill): taking the folder over", file=sys.stderr, flush=True)
                path.unlink(missing_ok=True)
                continue
            if state is None and lock:
                raise Busy(f"{out} is locked by a run of {_holder(out, lock)}, which cannot be checked from this host: "
                           f"if that run is dead, delete {path}; else pick another out=")
            raise Busy(f"{out} is in use by a running run: {_holder(out, lock)}; wait for it to end or pick another "
                       "out=")
        raise Busy(f"{out} was taken by another run at the same moment: pick another out=")
    finally:
        tmp.unlink(missing_ok=True)


def _release(out: Path) -> None:
    lock = read_lock(out)
    if lock and lock.get("pid") == os.getpid() and lock.get("host") == platform.node():
        (out / LOCK).unlink(missing_ok=True)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def differing_keys(rec: dict[str, Any], cfg: DictConfig) -> list[str]:
    """'key: old -> new' for every identity key whose value differs between a record's run and `cfg` here."""
    from .device import runtime  # here, not at the top: importing a study's planner loads no torch

    here = runtime(cfg)
    a = _flat(identity_fields(rec["config"], recorded_runtime(rec) or here))
    b = _flat(identity_fields(OmegaConf.to_container(cfg, resolve=True), here))
    missing = "(absent)"
    return [f"{k}: {json.dumps(a.get(k, missing))} -> {json.dumps(b.get(k, missing))}" for k in sorted(set(a) | set(b))
            if a.get(k, missing) != b.get(k, missing)]


def _check(out: Path, cfg: DictConfig) -> None:
    """With the lock held: refuse what would replace or mix runs; clear the old run's files when it may go."""
    rec = read_record(out / "result.json")
    checkpoint = (out / CHECKPOINT).is_file()
    overwrite, resume = bool(cfg.get("overwrite")), bool(cfg.get("resume"))
    status = (rec or {}).get("status")
    if status == "completed" and not overwrite:
        r = rec.get("run", {})
        raise UserError(f"{out} holds a completed run ({r.get('task')} {r.get('method')} {r.get('model')} seed "
                        f"{r.get('seed')}, finished {rec.get('finished_at')}){': nothing to resume' if resume else ''}; "
                        "pick another out=, or overwrite=true to replace it")
    if resume and not checkpoint and not overwrite:  # as Trainer's "no valid checkpoint found": never a silent restart
        raise UserError(f"resume=true, but {out} has no {CHECKPOINT} to resume from: drop resume=true to start this run "
                        "(or give the out= of the run that was interrupted)")
    if checkpoint and resume and not overwrite:
        if rec is None or "config" not in rec:
            raise UserError(f"{out / CHECKPOINT} has no readable result.json beside it, so its run's config is unknown: "
                            "overwrite=true to start over")
        from .device import runtime

        check_version(rec, out / "result.json")
        every = differing_keys(rec, cfg)
        diff = [d for d in every if d.split(":")[0] not in RESUME_MAY_CHANGE]
        if rec.get("identity") != identity(cfg, runtime(cfg)) and (diff or not every):
            raise UserError(f"resume=true, but the checkpoint in {out} is of another config: "
                            f"{'; '.join(diff) if diff else 'identity ' + str(rec.get('identity'))} (only keys outside "
                            "the run's identity, like grad_accum or eval_every, may change): run without those "
                            "changes, or overwrite=true to start over")
        return  # resume: the checkpoint and the record stay
    if checkpoint and not overwrite:
        raise UserError(f"{out} holds an unfinished run with a checkpoint (status {status}): resume=true to continue "
                        "it, or overwrite=true to start over")
    for name in RUN_FILES:  # a failed run, a crash before its first checkpoint, or overwrite=true
        (out / name).unlink(missing_ok=True)


def claim(out: Path, cfg: DictConfig) -> Callable[[], None]:
    """Make OUT this run's own (see the module doc); returns the function that releases it when the run ends."""
    out = Path(out)
    _acquire(out)
    try:
        _check(out, cfg)
    except BaseException:
        _release(out)
        raise
    return lambda: _release(out)
