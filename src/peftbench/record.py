"""result.json: the run record, the source of truth every report reads. Written atomically, read with checks.

Schema (version 1), one JSON object:
  schema, status ("running" | "completed" | "diverged" | "failed"), error (one line or null),
    diverged: the training loss became non-finite at step `diverged_at_step`; `error` says so in one line and
    `metrics` are the trivial prediction's on the eval set (the training rows' majority class or mean; QA: the
    empty answer), so a study scores the run as data and never re-runs it
  run: {task, method, model, seed, train_size}  -- the names used everywhere (configs, plots, tables)
  identity: hash of the resolved config without the keys of how it runs (NOT_IDENTITY), with `device` and
    `precision` as they resolved on the machine (cpu|cuda; fp32|fp16|bf16): a study skips runs with a completed twin
  identity_version: what the hash covers (IDENTITY_VERSION); `python -m peftbench.record migrate FOLDER...` rewrites
    older records once, adding migrated: {identity_version, identity (the old ones), config_keys (those respelled)}
  config: the resolved config; versions: {python, torch, transformers, peft, peftbench}; git_commit
  machine: {cpu (model name), cpu_flags (the kernel ISA flags it has: avx2, avx512f, avx512_bf16, amx_*, ... see
    KERNEL_FLAGS), cpu_count, cpu_threads (torch's intra-op threads: a CPU sums in another order with another
    count), cpu_kernels (the kernel set torch dispatches to: AVX512, AVX2, DEFAULT, ...), gpu (its name on a CUDA
    run, else null)}: why two records on two machines may differ
  metrics: {accuracy, f1} (GLUE) or {exact_match, f1} (SQuAD), in percent; primary_metric
  trainable_params, total_params, trainable_percent, train_examples, eval_examples, train_windows (SQuAD)
  schedule ("epochs" | "steps"), train_steps, epochs_run, num_processes, grad_accum
  train_time_s, train_samples_per_s, train_tokens_per_s, eval_time_s, started_at, finished_at, device, precision
  host, pid: the machine and process that ran it
  device_shared_with: on a CUDA run started by a study's parallel=N pool, how many other runs of the pool were given
    the same GPU (0: it had one to itself; more: its times are not a solo speed and reports mark them); null otherwise
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
  protocol: the study's holdout protocol (studies/grid.py), or null for a run outside one:
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

from .errors import UserError

SCHEMA = 1
IDENTITY_VERSION = 2  # bump when what the identity hashes changes, and give `migrate` the step from the last one
SCORED = ("completed", "diverged")  # statuses whose `metrics` are data: a diverged run scores the trivial prediction
# how a run is executed or recorded, not what it learns (grad_accum: the same global batch in smaller pieces;
# threads: the same sums in another order; forgetting: a measurement after training; protocol: the study's bookkeeping)
NOT_IDENTITY = ("out", "tracking", "log_every", "eval_batch_size", "data_dir", "resume", "checkpoint_every", "grad_accum",
                "pad_multiple", "compile", "compile_mode", "overwrite", "forgetting", "protocol", "threads")
SHARED_ENV = "PEFTBENCH_DEVICE_SHARED_WITH"  # set by a study's parallel=N pool: other runs it placed on this GPU


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


def identity_fields(config: dict[str, Any], runtime: dict[str, str]) -> dict[str, Any]:
    """The part of a resolved config (as result.json stores it) that makes two runs the same experiment, with
    `device` and `precision` as they resolved on the machine (engine/device.py's runtime): precision=auto on a CPU
    (fp32) and on a GPU (fp16) are two experiments."""
    data = json.loads(json.dumps(config))  # a deep copy
    for key in NOT_IDENTITY:
        data.pop(key, None)
    data.get("task", {}).pop("data_dir", None)
    # data_seed draws only the subset and the holdout: without either it changes nothing
    if data.get("train_size") is None and data.get("holdout") is None:
        data.pop("data_seed", None)
    data.update(device=runtime["device"], precision=runtime["precision"])
    return data


def _hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"identity_version": IDENTITY_VERSION, **data}, sort_keys=True).encode()
                          ).hexdigest()[:16]


def identity(cfg: DictConfig | dict[str, Any], runtime: dict[str, str]) -> str:
    """What makes two runs the same experiment: the resolved config minus where it is written or mirrored, with the
    device and precision it trains with (`runtime`), hashed with IDENTITY_VERSION."""
    config = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    return _hash(identity_fields(config, runtime))


def identities(cfg: DictConfig, runtimes: list[dict[str, str]]) -> set[str]:
    """identity(cfg) under each runtime: the runs that count as this config where the machine is not known."""
    return {identity(cfg, r) for r in runtimes}


def recorded_runtime(rec: dict[str, Any]) -> dict[str, str] | None:
    """The device type and precision a record's run trained with (its `device` and `precision` fields), or None."""
    device, precision = rec.get("device"), rec.get("precision")
    if not isinstance(device, str) or not isinstance(precision, str):
        return None
    return {"device": device.split(":")[0], "precision": {"no": "fp32"}.get(precision, precision)}


def check_version(rec: dict[str, Any], path: Path, where: Path | None = None) -> None:
    """A record hashed by an older identity would never match a config again (every run trained anew): one line
    naming the folder to migrate (`where`, else the record's own)."""
    version = rec.get("identity_version", 1)
    if version != IDENTITY_VERSION:
        raise UserError(f"{path}: its identity is version {version}, this peftbench hashes version {IDENTITY_VERSION}: "
                        f"run `python -m peftbench.record migrate {where or Path(path).parent}` once, then this "
                        "command again")


def versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    from .version import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "peftbench": __version__}


# the ISA flags that choose CPU kernels (oneDNN's bf16 and AMX paths, AVX-512 vs AVX2 GEMMs; Arm's SVE and bf16)
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "sve", "sve2", "bf16", "i8mm")


def cpu_info(text: str) -> dict[str, Any]:
    """{'cpu': model name, 'cpu_flags': the KERNEL_FLAGS and amx_* it has, sorted} from /proc/cpuinfo's text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())  # the first processor speaks for all
    flags = set((fields.get("flags") or fields.get("features") or "").split())  # Arm says "Features"
    model = fields.get("model name") or fields.get("hardware") or fields.get("model") or None
    return {"cpu": model, "cpu_flags": sorted(f for f in flags if f in KERNEL_FLAGS or f.startswith("amx_"))}


def machine(runtime: dict[str, str] | None = None) -> dict[str, Any]:
    """What ran the run, so two records that differ can say why: the CPU model and kernel ISA flags (from
    /proc/cpuinfo; elsewhere the platform's processor name and no flags), cores, torch's CPU threads (a CPU run's
    digits can move with their number), the kernels torch picked for this CPU (`ATEN_CPU_CAPABILITY` can pick
    others on the same CPU, and they move the digits too), and the GPU when it trained on one."""
    import torch

    try:
        info = cpu_info(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        info = {"cpu": None, "cpu_flags": None}
    info.update(cpu=info["cpu"] or platform.processor() or platform.machine() or None, cpu_count=os.cpu_count(),
                cpu_threads=torch.get_num_threads(), cpu_kernels=torch.backends.cpu.get_cpu_capability(), gpu=None)
    if runtime and runtime["device"] == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def new_record(cfg: DictConfig, runtime: dict[str, str]) -> dict[str, Any]:
    """The record a run starts with; `runtime` is the device and precision it trains with (engine/device.py)."""
    shared = os.environ.get(SHARED_ENV)
    return {
        "schema": SCHEMA,
        "status": "running",
        "error": None,
        "run": {"task": cfg.task.name, "method": cfg.method.name, "model": cfg.model.name, "seed": cfg.seed,
                "train_size": cfg.train_size, "data_seed": data_seed(cfg)},
        "identity": identity(cfg, runtime),
        "identity_version": IDENTITY_VERSION,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(),
        "machine": machine(runtime),
        "git_commit": git_commit(),
        "host": platform.node(), "pid": os.getpid(),  # which machine and process ran it (launchers, clusters)
        # train() refines both ("cuda:0"; "no" is fp32): set here so a run that fails early still says its identity's
        "device": runtime["device"], "precision": {"fp32": "no"}.get(runtime["precision"], runtime["precision"]),
        "device_shared_with": int(shared) if shared and shared.isdigit() and runtime["device"] == "cuda" else None,
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


# Identity version 1 -> 2, the config as version 1 records spell it -> as today's configs do (`migrate`):
V1_DEFAULTS = {"holdout": None, "eval_split": "dev", "data_seed": None}  # keys added later, at their behaviour before
V1_MODEL = {"tokenizer": None, "roles": dict.fromkeys(  # no override: the family's own (or derived) module roles
    ["blocks", "pooler", "query", "key", "value", "attention_output", "ffn_in", "ffn_out", "attention_point",
     "ffn_point", "attention_post_norm", "ffn_post_norm", "attention"])}
QV = ["query", "value"]
# method configs before families.py's roles named BERT's modules -> the role config that picks the same modules
V1_ROLES = {
    **{m: ({"target_modules": QV}, {"target_roles": QV, "target_modules": None}) for m in ("lora", "dora", "vera")},
    "lora_all": ({"target_modules": r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|"
                                    r"intermediate\.dense|output\.dense)"},
                 {"target_roles": ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"],
                  "target_modules": None}),
    "ia3": ({"target_modules": r".*\.layer\.\d+\.(attention\.self\.(key|value)|output\.dense)",
             "feedforward_modules": r".*\.layer\.\d+\.output\.dense"},
            {"target_roles": ["key", "value", "ffn_out"], "feedforward_roles": ["ffn_out"], "target_modules": None,
             "feedforward_modules": None}),
    "bitfit_subset": ({"biases": ["query", "intermediate"]}, {"biases": ["query", "ffn_in"]}),
}


def migrate_record(rec: dict[str, Any]) -> dict[str, Any] | None:
    """A version 1 record as written today: its config in today's spelling (keys added since at the behaviour it had,
    BERT module names as roles), hashed with its recorded device and precision, `migrated` saying what changed.
    None when it is current, or has no device or precision (it failed before training: nothing to skip)."""
    if (runtime := recorded_runtime(rec)) is None or rec.get("identity_version", 1) == IDENTITY_VERSION:
        return None
    config = json.loads(json.dumps(rec["config"]))
    changed = [k for k in V1_DEFAULTS if k not in config]
    config.update({k: V1_DEFAULTS[k] for k in changed})
    for key, default in V1_MODEL.items():  # the model's own tokenizer and its family's roles, as before the keys
        if key not in config.get("model", {key: None}):
            config["model"][key] = json.loads(json.dumps(default))
            changed.append(f"model.{key}")
    method = config.get("method", {})
    before, now = V1_ROLES.get(method.get("name"), ({}, {}))
    if before and all(method.get(k) == v for k, v in before.items()) and not any(k in method for k in now.keys() - before):
        method.update(now)
        changed += [f"method.{k}" for k in now]
    return {**rec, "config": config, "identity": identity(config, runtime), "identity_version": IDENTITY_VERSION,
            "migrated": {"identity_version": rec.get("identity_version", 1), "identity": rec.get("identity"),
                         "config_keys": changed}}


def migrate(folders: list[str]) -> int:
    """Rewrite every result.json under `folders` to IDENTITY_VERSION (atomically); print what it did."""
    done, current, left = 0, 0, []  # rewritten, already current, left as they are
    for path in sorted(p for f in folders for p in Path(f).rglob("result.json")):
        new = migrate_record(rec) if (rec := read_record(path)) else None
        if new is not None:
            write_json_atomic(path, new)
            done += 1
        elif rec and rec.get("identity_version", 1) == IDENTITY_VERSION:
            current += 1
        else:
            left.append(str(path))
    print(f"migrated {done} records to identity version {IDENTITY_VERSION}; {current} already were" + (
        f"; {len(left)} left as they are (unreadable, or failed before training): {', '.join(left[:5])}" if left else ""))
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["migrate"] or len(sys.argv) < 3 or not all(Path(f).is_dir() for f in sys.argv[2:]):
        print("usage: python -m peftbench.record migrate FOLDER... (study or run folders)", file=sys.stderr)
        sys.exit(2)
    sys.exit(migrate(sys.argv[2:]))
