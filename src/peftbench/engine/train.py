"""train(cfg) -> record: the one explicit training loop. It never looks at the method's name."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate import PartialState
from accelerate.utils import set_seed
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from . import checkpoint, cost, forgetting, preflight, runtime
from ..data.batches import pad_multiple, total_steps, train_batches
from .delta import base_fingerprint, save_delta
from ..errors import UserError
from ..models.methods import apply_method, step_hook
from ..models.methods import param_groups as method_groups
from ..models.load import load_model, load_tokenizer, start_at
from .predict import evaluate
from ..record import new_record, write_json_atomic
from .rundir import claim
from ..data.tasks import TASKS
from .tracking import Tracker

log = logging.getLogger("peftbench")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Frozen parameters get no optimizer state; biases and LayerNorm weights (1-D) get no weight decay."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]


def on_cpu(cfg: DictConfig) -> bool:
    # accelerate forms a multi-process CPU group (gloo) only when told cpu=True
    return cfg.device == "cpu" or not torch.cuda.is_available()


def mixed_precision(cfg: DictConfig) -> str:
    if cfg.precision == "auto":
        return "fp16" if torch.cuda.is_available() and cfg.device != "cpu" else "no"
    return {"fp32": "no"}.get(cfg.precision, cfg.precision)


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX, as oneDNN sees it)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def autocast(cfg: DictConfig, device: torch.device) -> torch.autocast:
    """Mixed precision for forward passes (training and eval): fp16 or bf16 autocast, or off."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision(cfg))
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def setup_logging(out: Path) -> logging.Handler:
    handler = logging.FileHandler(out / "train.log", mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


class Diverged(Exception):
    """The training loss became non-finite at `step`; `metrics`: the trivial prediction's on the eval set."""

    def __init__(self, step: int, message: str, metrics: dict[str, float]) -> None:
        super().__init__(message)
        self.step, self.metrics = step, metrics


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fine-tune cfg.model on cfg.task with cfg.method; write result.json, train.log and the delta in cfg.out."""
    out = Path(cfg.out)
    preflight.check_run(cfg)  # device, model, lengths: a run that cannot be what was asked stops before its folder
    main = PartialState(cpu=on_cpu(cfg)).is_main_process  # under `accelerate launch` only the main process writes
    try:
        out.mkdir(parents=True, exist_ok=True)
        if main:  # only the writer checks; other processes racing on one probe file would trip each other
            tempfile.NamedTemporaryFile(dir=out).close()
    except OSError as e:
        raise UserError(f"cannot write the run folder {out}: {e.strerror}; pick another out=") from None
    release = claim(out, cfg) if main else (lambda: None)  # the folder is this run's (lock, overwrite, resume rules)
    handler = setup_logging(out) if main else logging.NullHandler()
    record = new_record(cfg)
    record["started_at"] = now()
    tracker = None
    save = (lambda: write_json_atomic(out / "result.json", record)) if main else (lambda: None)
    try:
        save()
        tracker = Tracker(cfg if main else OmegaConf.merge(cfg, {"tracking": {"mode": "disabled"}}), out)
        _run(cfg, out, record, tracker, save)
        record["status"] = "completed"
    except Diverged as e:  # data, not a failure: the run ends, scored as the trivial prediction, and is not re-run
        record.update(status="diverged", error=str(e), diverged_at_step=e.step, metrics=e.metrics)
        log.warning("run diverged: %s; scored as the trivial prediction %s", e, e.metrics)
        print(f"peftbench: diverged: {e}", file=sys.stderr, flush=True)
    except BaseException as e:
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
        log.error("run failed: %s", record["error"])
        raise
    finally:
        record["finished_at"] = now()
        save()
        if tracker is not None:
            tracker.finish(record)
        log.removeHandler(handler)
        handler.close()
        release()
    return record


def _run(cfg: DictConfig, out: Path, record: dict[str, Any], tracker: Tracker, save) -> None:
    set_seed(cfg.seed)
    # autocast and the scaler are ours, not accelerate's: its mixed precision is a once-per-process setting, so a
    # study running an fp16 run after an fp32 one in the same process would fail
    accelerator = Accelerator(cpu=on_cpu(cfg))
    precision = mixed_precision(cfg)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    accum = cfg.grad_accum
    if cfg.batch_size % (world * accum):
        raise UserError(f"batch_size={cfg.batch_size} does not divide over {world} processes x grad_accum={accum}: "
                        f"the global batch is per-process micro-batch x processes x grad_accum, so use a multiple of "
                        f"{world * accum}")
    task = TASKS[cfg.task.kind]
    tokenizer = load_tokenizer(cfg.model)
    data = task.load(cfg, tokenizer)
    record["primary_metric"] = cfg.task.metric  # task=classification finds it from its labels (accuracy | pearson)
    record["holdout"] = data.meta.get("holdout")
    for note in data.notes:
        log.info(note)
    model = load_model(cfg.model, task.HEAD, data.num_labels)
    if data.meta.get("regression") and cfg.task.get("head_bias") == "mean":
        start_at(model, float(np.mean(data.train.columns["labels"])))
    base_total = sum(p.numel() for p in model.parameters())
    fingerprint = base_fingerprint(model)
    # the base side of the forgetting measure, before the method touches the model (it leaves the RNG as it was)
    probe = forgetting.Probe(cfg, tokenizer, model, accelerator.device) if cfg.forgetting and main else None
    model = apply_method(model, cfg.method, cfg.model.name)
    record.update(cost.param_counts(model, base_total))
    lr = cfg.lr if cfg.lr is not None else cfg.method.lr
    steps = total_steps(cfg, len(data.train))
    after_step = step_hook(model, cfg.method, steps)  # a no-op but for methods that act each step (AdaLoRA)
    # Only the model goes through accelerate (device, DDP). The step is the plain torch AMP recipe: accelerate's
    # optimizer and scheduler wrappers cost ~1 ms of host time per step (package lookups on every call), and its
    # scheduler steps once per process per step, which assumes a sharded data loader; our batch is global.
    model = accelerator.prepare(model)
    device = accelerator.device
    # the fused kernel: on full FT its step is ~6x cheaper than foreach on CPU (bench/README.md)
    groups = (method_groups(accelerator.unwrap_model(model), cfg.method, lr, cfg.weight_decay)  # LoRA+'s, or ours
              or param_groups(model, cfg.weight_decay))
    optimizer = torch.optim.AdamW(groups, lr=lr, fused=device.type in ("cpu", "cuda"))
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * steps), steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # bf16 needs none
    if cfg.compile:
        # padding to pad_multiple leaves a handful of shapes; each compiles once (dynamic=False: static kernels)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        model = torch.compile(model, mode=cfg.compile_mode, dynamic=False)
    record.update(train_examples=data.train_examples, eval_examples=data.eval_examples, schedule=cfg.schedule,
                  train_steps=steps, lr=lr, device=str(device), precision=precision,
                  num_processes=world, grad_accum=accum)
    if len(data.train) != data.train_examples:
        record["train_windows"] = len(data.train)
    save()
    log.info("%s | %s | %s: %d trainable of %d params (%.3f%%), %d steps, lr %g, %s", cfg.task.name, cfg.method.name,
             cfg.model.name, record["trainable_params"], record["total_params"], record["trainable_percent"], steps,
             lr, device)
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        # emulated bf16 runs at a fraction of fp32's speed (README, "bf16 on the CPU"); the run is still valid
        warn = ("precision=bf16 on a CPU without native bf16 (no AVX512-BF16/AMX): autocast is emulated and much "
                "slower than fp32 here; use precision=fp32 unless this run must match bf16 runs")
        log.warning(warn)
        if main:
            print(f"peftbench: warning: {warn}", file=sys.stderr, flush=True)

    lengths = data.train.lengths
    trainable = [p for p in model.parameters() if p.requires_grad]  # once, not a walk over every module per step
    multiple = pad_multiple(cfg, device)
    amp = autocast(cfg, device)  # built once; re-entered for every micro-batch
    meter = cost.Meter(device)
    loop = {"step": 0, "epoch": 0, "batch": 0, "samples": 0, "tokens": 0, "train_time_s": 0.0, "running": 0.0,
            "padded_tokens": 0, "flops_per_token": None, "cost": {}}
    resumed = checkpoint.load(out, model, optimizer, scheduler) if cfg.resume else None
    if resumed:
        loop.update(resumed)
        meter.fields.update(loop["cost"])
        meter.padded_tokens, meter.flops_per_token = loop["padded_tokens"], loop["flops_per_token"]
        log.info("resumed from %s at step %d (epoch %d, batch %d)", checkpoint.FILE, loop["step"], loop["epoch"],
                 loop["batch"])
    step = loop["step"]
    running = torch.tensor(loop["running"], device=device)
    bar = tqdm(total=steps, initial=step, desc=f"{cfg.task.name}/{cfg.method.name}", dynamic_ncols=True,
               mininterval=1.0, disable=not main)
    model.train()
    t0 = time.perf_counter() - loop["train_time_s"]
    slow = runtime.SlowCheck(device.type == "cpu" and main, cfg.precision, torch.get_num_threads())

    def save_checkpoint(epoch: int, batch: int) -> None:
        loop.update(step=step, epoch=epoch, batch=batch, train_time_s=time.perf_counter() - t0,
                    running=running.item(), padded_tokens=meter.padded_tokens,
                    flops_per_token=meter.flops_per_token, cost=meter.peak())
        if main:
            checkpoint.save(out, accelerator.unwrap_model(model), optimizer, scheduler, loop)

    with checkpoint.StopFlag() as stop, bar:  # the bar closes (and prints) here even when the run stops
        epoch, skip = loop["epoch"], loop["batch"]
        while step < steps:
            for b, idx in enumerate(train_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)):
                if b < skip:  # batches this epoch already trained on before the resume
                    continue
                if step == steps:
                    break
                mine = idx[rank::world] or idx[:1]  # this process's share of the global batch (never empty)
                micro = [m.tolist() for m in np.array_split(mine, accum) if len(m)]
                loss, padded = 0.0, 0
                with meter.count(step):
                    for j, rows in enumerate(micro):
                        batch = data.train.batch(rows, device, multiple)
                        # DDP all-reduces gradients on the last micro-batch only
                        with accelerator.no_sync(model) if j < len(micro) - 1 else contextlib.nullcontext():
                            with amp:
                                part = model(**batch).loss * (len(rows) / len(mine))  # the mean over `mine`
                            scaler.scale(part).backward()
                        loss, padded = loss + part.detach(), padded + batch["input_ids"].numel()
                meter.add_step(padded * world, (model, batch["input_ids"].shape, cfg.method))  # shards: the same size
                if note := slow(meter, time.perf_counter() - t0):  # other processes on the cores? (said once)
                    log.warning(note)
                    print(f"\npeftbench: note: {note}", file=sys.stderr, flush=True)
                scaler.unscale_(optimizer)
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                scaler.step(optimizer)  # fused AdamW skips an overflowed step on the device: no host sync
                scaler.update()
                after_step(step + 1)  # after the update, before the gradients are cleared (AdaLoRA reads them)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                running += loss.detach()
                step += 1
                loop["samples"] += len(idx)
                loop["tokens"] += int(lengths[idx].sum())
                bar.update(1)
                if step % cfg.log_every == 0 or step == steps:
                    n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
                    mean = (running / n).item()
                    running.zero_()
                    if not math.isfinite(mean):
                        raise Diverged(step, f"loss is {mean} at step {step} (lr {lr}): lower the learning rate, or "
                                       "use precision=bf16/fp32 if fp16 overflowed",
                                       task.trivial(data) if hasattr(task, "trivial") else {})
                    rate = loop["samples"] / (time.perf_counter() - t0)
                    bar.set_postfix(loss=f"{mean:.4f}", samples_s=f"{rate:.1f}")
                    log.info("step %d/%d epoch %d loss %.4f lr %.3g %.1f samples/s", step, steps, epoch, mean,
                             scheduler.get_last_lr()[0], rate)
                    tracker.log({"train/loss": mean, "train/lr": scheduler.get_last_lr()[0]}, step)
                if cfg.eval_every and step % cfg.eval_every == 0 and step < steps:
                    metrics, _, _ = evaluate(model, data, task, cfg, accelerator, amp)
                    record.setdefault("history", []).append({"step": step, **metrics})
                    log.info("eval at step %d: %s", step, metrics)
                    tracker.log({f"eval/{k}": v for k, v in metrics.items()}, step)
                    model.train()
                if stop.signal or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps):
                    save_checkpoint(epoch, b + 1)
                    if stop.signal:
                        raise checkpoint.Interrupted(
                            f"stopped by signal {stop.signal} at step {step}; checkpoint saved: run the same "
                            "command with resume=true to continue")
            epoch, skip = epoch + 1, 0
    bar.close()
    train_time = time.perf_counter() - t0
    samples = loop["samples"]
    record.update(train_time_s=round(train_time, 3), epochs_run=round(samples / len(data.train), 3),
                  train_samples_per_s=round(samples / train_time, 3),
                  train_tokens_per_s=round(loop["tokens"] / train_time, 1), **meter.peak())

    metrics, predictions, eval_time = evaluate(model, data, task, cfg, accelerator, amp)
    record.update(metrics=metrics, eval_time_s=round(eval_time, 3))
    log.info("eval: %s", metrics)
    tracker.log({f"eval/{k}": v for k, v in metrics.items()}, step)
    if main:
        if hasattr(task, "write_predictions"):
            task.write_predictions(out, data, predictions)
        record.update(save_delta(accelerator.unwrap_model(model), out, cfg, fingerprint))
        record["forgetting"] = probe.finish(accelerator.unwrap_model(model)) if probe else None
        (out / checkpoint.FILE).unlink(missing_ok=True)  # the delta and record now hold everything
    accelerator.wait_for_everyone()
