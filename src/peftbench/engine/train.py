"""train(cfg) -> record: the one explicit training loop. It never looks at the method's name.

train() owns the run folder and the record; _run is the loop: `setup` (run.py) builds the model, data and optimizer
once, `step` trains one global batch, `report` logs and evaluates, `save_checkpoint` writes the TrainState and the
tensors, `finish` evaluates and saves the delta."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import checkpoint, cost, preflight, runtime
from .checkpoint import TrainState
from .delta import save_delta
from .device import cpu_has_bf16, cpu_threads, on_cpu, runtime as resolved
from .predict import evaluate
from .rundir import claim
from .run import Run, setup
from .tracking import Tracker
from ..data.batches import train_batches
from ..errors import UserError
from ..record import new_record, write_json_atomic

log = logging.getLogger("peftbench")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    with cpu_threads(cfg.get("threads")):  # before the record: its machine.cpu_threads is the run's count
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, Any]:
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
    record = new_record(cfg, resolved(cfg))
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
    run = setup(cfg, record)
    save()
    log.info("%s | %s | %s: %d trainable of %d params (%.3f%%), %d steps, lr %g, %s", cfg.task.name, cfg.method.name,
             cfg.model.name, record["trainable_params"], record["total_params"], record["trainable_percent"],
             run.steps, run.lr, run.accelerator.device)
    warn_emulated_bf16(run)
    run.meter = cost.Meter(run.accelerator.device)  # after loading: the peak is the loop's
    state = resume(out, run) if cfg.resume else TrainState()
    state.running = state.running.to(run.accelerator.device)
    main = run.accelerator.is_main_process
    bar = tqdm(total=run.steps, initial=state.step, desc=f"{cfg.task.name}/{cfg.method.name}", dynamic_ncols=True,
               mininterval=1.0, disable=not main)
    t0 = time.perf_counter() - state.train_time_s
    slow = runtime.SlowCheck(run.accelerator.device.type == "cpu" and main, cfg.precision, torch.get_num_threads())
    run.model.train()
    with checkpoint.StopFlag() as stop, bar:  # the bar closes (and prints) here even when the run stops
        for idx in batches(cfg, run, state):
            step(cfg, run, state, idx)
            bar.update(1)
            state.train_time_s = time.perf_counter() - t0
            if note := slow(run.meter, state.train_time_s):  # other processes on the cores? (said once)
                log.warning(note)
                print(f"\npeftbench: note: {note}", file=sys.stderr, flush=True)
            report(cfg, run, state, record, tracker, bar)
            stopping = stop_agreed(stop, run)  # every process asks, every step: under DDP all stop at one step
            if stopping or (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0
                            and state.step < run.steps):
                save_checkpoint(out, run, state)
            if stopping:
                raise checkpoint.Interrupted(
                    f"stopped by signal {stop.signal or 'to another process'} at step {state.step}; checkpoint "
                    "saved: run the same command with resume=true to continue")
    state.train_time_s = time.perf_counter() - t0
    finish(cfg, out, run, state, record, tracker)


def warn_emulated_bf16(run: Run) -> None:
    if run.precision == "bf16" and run.accelerator.device.type == "cpu" and not cpu_has_bf16():
        # emulated bf16 runs at a fraction of fp32's speed (README, "bf16 on the CPU"); the run is still valid
        warn = ("precision=bf16 on a CPU without native bf16 (no AVX512-BF16/AMX): autocast is emulated and much "
                "slower than fp32 here; use precision=fp32 unless this run must match bf16 runs")
        log.warning(warn)
        if run.accelerator.is_main_process:
            print(f"peftbench: warning: {warn}", file=sys.stderr, flush=True)


def resume(out: Path, run: Run) -> TrainState:
    """The checkpoint's state, loaded into the unwrapped model (its names carry no DDP or compile prefix)."""
    state = checkpoint.load(out, run.accelerator.unwrap_model(run.model), run.optimizer, run.scheduler, run.scaler,
                            run.accelerator.process_index)
    if state is None:  # rundir.claim refuses resume=true without a checkpoint; a study may still ask
        return TrainState()
    run.meter.fields.update(state.cost)
    run.meter.padded_tokens, run.meter.flops_per_token = state.padded_tokens, state.flops_per_token
    log.info("resumed from %s at step %d (epoch %d, batch %d)", checkpoint.FILE, state.step, state.epoch, state.batch)
    return state


def batches(cfg: DictConfig, run: Run, state: TrainState) -> Iterator[list[int]]:
    """The global batches still to train on, in the seeded order; state.epoch and state.batch say where the loop
    is (state.batch counts the batch being trained, so a checkpoint after its step resumes at the next one)."""
    while state.step < run.steps:
        for b, idx in enumerate(train_batches(run.data.train.lengths, cfg.batch_size, cfg.seed, state.epoch,
                                              cfg.group_by_length)):
            if b < state.batch:  # batches this epoch already trained on before the resume
                continue
            if state.step == run.steps:
                return
            state.batch = b + 1
            yield idx
        state.epoch, state.batch = state.epoch + 1, 0


def step(cfg: DictConfig, run: Run, state: TrainState, idx: list[int]) -> None:
    """One optimizer step on the global batch `idx`: this process's share in grad_accum micro-batches, then the
    update, the method's hook if the update was applied, and the LR schedule."""
    model, world = run.model, run.accelerator.num_processes
    mine = idx[run.accelerator.process_index::world] or idx[:1]  # this process's share (never empty)
    micro = [m.tolist() for m in np.array_split(mine, cfg.grad_accum) if len(m)]
    loss, padded = 0.0, 0
    with run.meter.count(state.step):
        for j, rows in enumerate(micro):
            batch = run.data.train.batch(rows, run.accelerator.device, run.multiple)
            # DDP all-reduces gradients on the last micro-batch only
            with run.accelerator.no_sync(model) if j < len(micro) - 1 else contextlib.nullcontext():
                with run.amp:
                    part = model(**batch).loss * (len(rows) / len(mine))  # the mean over `mine`
                run.scaler.scale(part).backward()
            loss, padded = loss + part.detach(), padded + batch["input_ids"].numel()
    run.meter.add_step(padded * world, (model, batch["input_ids"].shape, cfg.method))  # shards: the same size
    run.scaler.unscale_(run.optimizer)
    if cfg.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(run.trainable, cfg.max_grad_norm)
    if applied_update(run.scaler, run.optimizer, watch=run.hooked):
        state.updates += 1
        run.after_step(state.updates)  # after the update, before the gradients are cleared (AdaLoRA reads them)
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.running += loss.detach()
    state.step += 1
    state.samples += len(idx)
    state.tokens += int(run.data.train.lengths[idx].sum())


def applied_update(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer, watch: bool) -> bool:
    """Step `optimizer` through `scaler`; whether the update was applied. An fp16 scaler skips a step whose
    gradients overflowed and lowers its scale, which is the only sign of it: reading the scale syncs the host with
    the device, so it is read only when `watch`ed (else the answer is True)."""
    before = scaler.get_scale() if watch and scaler.is_enabled() else None
    scaler.step(optimizer)  # fused AdamW skips an overflowed step on the device: no host sync
    scaler.update()
    return before is None or scaler.get_scale() >= before


def report(cfg: DictConfig, run: Run, state: TrainState, record: dict[str, Any], tracker: Tracker, bar) -> None:
    """Every log_every steps the mean loss (a diverged one stops the run); every eval_every steps the dev metrics."""
    step, lr = state.step, run.scheduler.get_last_lr()[0]
    if step % cfg.log_every == 0 or step == run.steps:
        n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
        mean = (state.running / n).item()
        state.running.zero_()
        if not math.isfinite(mean):
            raise Diverged(step, f"loss is {mean} at step {step} (lr {run.lr}): lower the learning rate, or use "
                           "precision=bf16/fp32 if fp16 overflowed",
                           run.task.trivial(run.data) if hasattr(run.task, "trivial") else {})
        rate = state.samples / state.train_time_s
        bar.set_postfix(loss=f"{mean:.4f}", samples_s=f"{rate:.1f}")
        log.info("step %d/%d epoch %d loss %.4f lr %.3g %.1f samples/s", step, run.steps, state.epoch, mean, lr, rate)
        tracker.log({"train/loss": mean, "train/lr": lr}, step)
    if cfg.eval_every and step % cfg.eval_every == 0 and step < run.steps:
        metrics, _, _ = evaluate(run.model, run.data, run.task, cfg, run.accelerator, run.amp)
        record.setdefault("history", []).append({"step": step, **metrics})
        log.info("eval at step %d: %s", step, metrics)
        tracker.log({f"eval/{k}": v for k, v in metrics.items()}, step)
        run.model.train()


def stop_agreed(stop: checkpoint.StopFlag, run: Run) -> bool:
    """Whether any process got SIGTERM/SIGINT. A launcher signals every process, but each sees it at its own point
    in a step: stopping on its own, one would leave the others waiting in the next step's all-reduce. The flag is
    a CPU tensor summed over a gloo group, so the host never waits for the GPU."""
    flag = torch.tensor([int(stop.signal is not None)])
    if run.stop_group is not None:
        torch.distributed.all_reduce(flag, group=run.stop_group)
    return bool(flag.item())


def save_checkpoint(out: Path, run: Run, state: TrainState) -> None:
    """Every process hands over its RNG state; the main process writes the file (checkpoint.save)."""
    rngs = gather_object([checkpoint.rng_state()])
    state.padded_tokens, state.flops_per_token = run.meter.padded_tokens, run.meter.flops_per_token
    state.cost = run.meter.peak()
    if run.accelerator.is_main_process:
        checkpoint.save(out, run.accelerator.unwrap_model(run.model), run.optimizer, run.scheduler, run.scaler,
                        state, rngs)


def finish(cfg: DictConfig, out: Path, run: Run, state: TrainState, record: dict[str, Any], tracker: Tracker) -> None:
    """The run's figures, the final dev metrics; on the main process the predictions, delta and forgetting."""
    seconds = state.train_time_s
    record.update(train_time_s=round(seconds, 3), epochs_run=round(state.samples / len(run.data.train), 3),
                  train_samples_per_s=round(state.samples / seconds, 3),
                  train_tokens_per_s=round(state.tokens / seconds, 1), **run.meter.peak())
    metrics, predictions, eval_time = evaluate(run.model, run.data, run.task, cfg, run.accelerator, run.amp)
    record.update(metrics=metrics, eval_time_s=round(eval_time, 3))
    log.info("eval: %s", metrics)
    tracker.log({f"eval/{k}": v for k, v in metrics.items()}, state.step)
    if run.accelerator.is_main_process:
        model = run.accelerator.unwrap_model(run.model)
        if hasattr(run.task, "write_predictions"):
            run.task.write_predictions(out, run.data, predictions)
        record.update(save_delta(model, out, cfg, run.fingerprint))
        record["forgetting"] = run.probe.finish(model) if run.probe else None
        (out / checkpoint.FILE).unlink(missing_ok=True)  # the delta and record now hold everything
    run.accelerator.wait_for_everyone()
