"""result.json: the run record, the source of truth every report reads. Written atomically, read with checks.

Schema (version 1), one JSON object:
  schema, status ("running" | "completed" | "failed"), error (one line or null),
  run: {task, method, model, seed, train_size}  -- the names used everywhere (configs, plots, tables)
  identity: hash of the resolved config without output/tracking keys (a study skips runs with a completed twin)
  config: the resolved config; versions: {python, torch, transformers, peft, peftbench}; git_commit
  metrics: {accuracy, f1} (GLUE) or {exact_match, f1} (SQuAD), in percent; primary_metric
  trainable_params, total_params, trainable_percent, train_examples, eval_examples, train_windows (SQuAD)
  schedule ("epochs" | "steps"), train_steps, epochs_run, num_processes, grad_accum
  train_time_s, train_samples_per_s, train_tokens_per_s, eval_time_s, started_at, finished_at, device, precision
  host, pid: the machine and process that ran it
  costs: see cost.py (peak memory, static memory split, FLOPs, delta size on disk)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

SCHEMA = 1
# how a run is executed, not what it learns (grad_accum: the same global batch in smaller pieces)
NOT_IDENTITY = ("out", "tracking", "log_every", "eval_batch_size", "data_dir", "resume", "checkpoint_every", "grad_accum",
                "pad_multiple", "compile", "compile_mode",  # how fast, not what is trained
                "overwrite")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Temp file in the same folder, fsync, rename: a crash never leaves a half-written file under `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are meant to be shared
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def identity_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config (as result.json stores it) that makes two runs the same experiment."""
    data = json.loads(json.dumps(config))  # a deep copy
    for key in NOT_IDENTITY:
        data.pop(key, None)
    data.get("task", {}).pop("data_dir", None)
    return data


def identity(cfg: DictConfig) -> str:
    """What makes two runs the same experiment: the resolved config minus where it is written or mirrored."""
    data = identity_fields(OmegaConf.to_container(cfg, resolve=True))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "peftbench": __version__}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def new_record(cfg: DictConfig) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "status": "running",
        "error": None,
        "run": {"task": cfg.task.name, "method": cfg.method.name, "model": cfg.model.name, "seed": cfg.seed,
                "train_size": cfg.train_size},
        "identity": identity(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(),
        "git_commit": git_commit(),
        "host": platform.node(), "pid": os.getpid(),  # which machine and process ran it (launchers, clusters)
        "metrics": {},
        "primary_metric": cfg.task.metric,
    }


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when the file is missing or not a complete JSON object (a crash mid-write elsewhere)."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("schema") == SCHEMA else None
