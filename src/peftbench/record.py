"""result.json: the run record, the source of truth every report reads. Written atomically, read with checks.

Schema (version 1), one JSON object:
  schema, status ("running" | "completed" | "diverged" | "failed"), error (one line or null),
    diverged: the training loss became non-finite at step `diverged_at_step`; `error` says so in one line and
    `metrics` are the trivial prediction's on the eval set (the training rows' majority class or mean; QA: the
    empty answer), so a study scores the run as data and never re-runs it
  run: {task, method, model, seed, train_size}  -- the names used everywhere (configs, plots, tables)
  identity: hash of the resolved config without output/tracking keys (a study skips runs with a completed twin)
  config: the resolved config; versions: {python, torch, transformers, peft, peftbench}; git_commit
  metrics: {accuracy, f1} (GLUE) or {exact_match, f1} (SQuAD), in percent; primary_metric
  trainable_params, total_params, trainable_percent, train_examples, eval_examples, train_windows (SQuAD)
  schedule ("epochs" | "steps"), train_steps, epochs_run, num_processes, grad_accum
  train_time_s, train_samples_per_s, train_tokens_per_s, eval_time_s, started_at, finished_at, device, precision
  host, pid: the machine and process that ran it
  costs: see cost.py (peak memory, static memory split, FLOPs, delta size on disk)
  forgetting: how far training moved the encoder on a fixed text sample (null with forgetting=false); see forgetting.py
    {sample, n, pooling, max_length, cka (linear CKA base vs tuned, 1 = unmoved), mlm_loss_base, mlm_loss_tuned,
     mlm_loss_delta (tuned - base; null where the checkpoint has no MLM head), mlm_note (why null, or null)}
  eval_split ("dev" | "holdout"): the split `metrics` were scored on
  data_seed: the seed that drew the train_size subset and the holdout (the training seed when `data_seed` is null);
    also in run: {..., data_seed}
  holdout: {spec (the fraction or count asked), size (rows held out; QA: questions), ids_sha256 (sha256 of the
    sorted row ids, one per line: training-file positions, QA question ids)} or null (nothing held out)
  data_sha256: {train, dev}: sha256 of the own-data files a run read (task=classification from files; the Python
    API's in-memory data is written as such files), absent for GLUE, SQuAD and hub data
  protocol: the study's holdout protocol (study/grid.py), or null for a run outside one:
    {select: "dev"|"holdout", phase: "select"|"final"|null, config: "lr0.0002"|"t3"|null (its folder name),
     params: {lr: 2e-4, ...} (the configuration's values), budget (configurations per method),
     sampler: "grid"|"random"|"tpe", picked_holdout_score (final runs: the picked config's holdout score),
     picked_holdout (final runs: the select run's `holdout` field), seeds: "auto"|"fixed", min_seeds, max_seeds,
     margin, alpha (the verdicts' non-inferiority margin in points and level), final_rows: "selection"|"all"}
    (records written before margin/alpha existed carry ci_target instead, and read with the defaults)
  Records written before these fields existed lack them (read them with .get).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from omegaconf import DictConfig, OmegaConf

SCHEMA = 1
SCORED = ("completed", "diverged")  # statuses whose `metrics` are data: a diverged run scores the trivial prediction
# how a run is executed, not what it learns (grad_accum: the same global batch in smaller pieces)
NOT_IDENTITY = ("out", "tracking", "log_every", "eval_batch_size", "data_dir", "resume", "checkpoint_every", "grad_accum",
                "pad_multiple", "compile", "compile_mode",  # how fast, not what is trained
                "overwrite", "forgetting",  # forgetting: a measurement after training, not what is trained
                "protocol")  # protocol: the study's bookkeeping (phase, picked score), not what trains
# run keys the holdout protocol added, left out of the identity at their old value so earlier runs keep their identity
QUIET_DEFAULTS = {"holdout": None, "eval_split": "dev"}


def write_atomic(path: Path, write: Callable[[IO[str]], Any]) -> None:
    """write(f) into a temp file in the same folder, fsync, rename: a crash never leaves a half-written file under
    `path` (the folder must exist)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, lambda f: json.dump(obj, f, indent=2, sort_keys=False, default=str))


def identity_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config (as result.json stores it) that makes two runs the same experiment."""
    data = json.loads(json.dumps(config))  # a deep copy
    for key in NOT_IDENTITY:
        data.pop(key, None)
    data.get("task", {}).pop("data_dir", None)
    for key, default in QUIET_DEFAULTS.items():
        if key in data and data[key] == default:
            data.pop(key)
    # data_seed draws only the subset and the holdout: without either it changes nothing, and null is the old coupling
    if "data_seed" in data and (data["data_seed"] is None or (data.get("train_size") is None and "holdout" not in data)):
        data.pop("data_seed")
    if data.get("model", {}).get("tokenizer", 0) is None:  # the model's own tokenizer, as before the key existed
        data["model"].pop("tokenizer")
    roles = data.get("model", {}).get("roles", 0)
    if roles is None or (isinstance(roles, dict) and all(v is None for v in roles.values())):  # no override given
        data["model"].pop("roles")  # the family's own roles, as before the key existed
    return data


def identity(cfg: DictConfig) -> str:
    """What makes two runs the same experiment: the resolved config minus where it is written or mirrored."""
    data = identity_fields(OmegaConf.to_container(cfg, resolve=True))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


QV = ["query", "value"]
# Before families.py's roles the method configs named BERT's modules. A run recorded then, on a BERT-layout model, is
# the same experiment as today's role config: its recorded identity is one of `identities(cfg)` (no rerun, no mix-up).
PRE_ROLES = {
    "lora": ({"target_roles": QV, "target_modules": None}, {"target_modules": QV}),
    "dora": ({"target_roles": QV, "target_modules": None}, {"target_modules": QV}),
    "vera": ({"target_roles": QV, "target_modules": None}, {"target_modules": QV}),
    "lora_all": ({"target_roles": ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"],
                  "target_modules": None},
                 {"target_modules": r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|"
                                    r"intermediate\.dense|output\.dense)"}),
    "ia3": ({"target_roles": ["key", "value", "ffn_out"], "feedforward_roles": ["ffn_out"], "target_modules": None,
             "feedforward_modules": None},
            {"target_modules": r".*\.layer\.\d+\.(attention\.self\.(key|value)|output\.dense)",
             "feedforward_modules": r".*\.layer\.\d+\.output\.dense"}),
    "bitfit_subset": ({"biases": ["query", "ffn_in"]}, {"biases": ["query", "intermediate"]}),
}


def identities(cfg: DictConfig) -> set[str]:
    """identity(cfg), and the identity the same run had before role configs (PRE_ROLES), if it had another."""
    data = identity_fields(OmegaConf.to_container(cfg, resolve=True))
    ids = {hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]}
    now, before = PRE_ROLES.get(data.get("method", {}).get("name"), (None, None))
    if now and all(data["method"].get(k) == v for k, v in now.items()):
        for k in now:
            data["method"].pop(k)
        data["method"].update(before)
        ids.add(hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16])
    return ids


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    from .version import __version__

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
                "train_size": cfg.train_size, "data_seed": data_seed(cfg)},
        "identity": identity(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(),
        "git_commit": git_commit(),
        "host": platform.node(), "pid": os.getpid(),  # which machine and process ran it (launchers, clusters)
        "metrics": {},
        "primary_metric": cfg.task.metric,
        "eval_split": cfg.get("eval_split", "dev"),
        "data_seed": data_seed(cfg),
        "holdout": None,  # the task's load fills it in (holdout.describe) when it carves one
        "protocol": OmegaConf.to_container(cfg.protocol) if cfg.get("protocol") is not None else None,
    }


def data_seed(cfg: DictConfig) -> int:
    """The seed that draws the train_size subset and the holdout: `data_seed`, else the training seed (as before)."""
    return int(cfg.data_seed) if cfg.get("data_seed") is not None else int(cfg.seed)


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when the file is missing or not a complete JSON object (a crash mid-write elsewhere)."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and rec.get("schema") == SCHEMA else None
