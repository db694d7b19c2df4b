"""A run's setup, before its first step: the data, the model with its method, the optimizer, LR schedule and loss
scaler, each built once and held in a `Run` that the loop (train.py) steps. Nothing here looks at a method's name:
a method's own parameter groups and per-step hook come through models.methods."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from omegaconf import DictConfig
from transformers import get_linear_schedule_with_warmup

from . import cost, forgetting
from .delta import base_fingerprint
from .device import autocast, mixed_precision, on_cpu, raise_recompile_limit
from ..data.batches import pad_multiple, total_steps
from ..data.tasks import TASKS
from ..errors import UserError
from ..models.load import load_model, load_tokenizer, start_at
from ..models.methods import apply_method, no_step_hook, step_hook
from ..models.methods import param_groups as method_groups

log = logging.getLogger("peftbench")


@dataclass
class Run:
    """What the loop uses on every step; built once by `setup`."""

    accelerator: Accelerator
    task: Any                      # the task's module (data.tasks.TASKS)
    data: Any                      # its splits, labels and notes
    model: torch.nn.Module         # prepared (DDP) and maybe compiled; accelerator.unwrap_model gives the method's
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler   # enabled for fp16 only
    after_step: Callable[[int], None]  # the method's per-update hook (models.methods.step_hook)
    steps: int
    lr: float
    precision: str                 # no | fp16 | bf16
    amp: torch.autocast
    trainable: list[torch.nn.Parameter]
    multiple: int                  # pad every batch to a multiple of this
    fingerprint: str               # the base model's, for the delta
    probe: forgetting.Probe | None
    stop_group: Any = None         # several processes: a gloo group on which they agree when to stop (host-only)
    meter: cost.Meter | None = None

    @property
    def hooked(self) -> bool:
        return self.after_step is not no_step_hook


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Frozen parameters get no optimizer state; biases and LayerNorm weights (1-D) get no weight decay."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]


def setup(cfg: DictConfig, record: dict[str, Any]) -> Run:
    """Seed, load, apply the method, wrap for the device, build the optimizer; fill the record's fixed fields."""
    set_seed(cfg.seed)
    # autocast and the scaler are ours, not accelerate's: its mixed precision is a once-per-process setting, so a
    # study running an fp16 run after an fp32 one in the same process would fail
    accelerator = Accelerator(cpu=on_cpu(cfg))
    world, accum = accelerator.num_processes, cfg.grad_accum
    if cfg.batch_size % (world * accum):
        raise UserError(f"batch_size={cfg.batch_size} does not divide over {world} processes x grad_accum={accum}: "
                        f"the global batch is per-process micro-batch x processes x grad_accum, so use a multiple of "
                        f"{world * accum}")
    task = TASKS[cfg.task.kind]
    tokenizer = load_tokenizer(cfg.model)
    data = task.load(cfg, tokenizer)
    record["primary_metric"] = cfg.task.metric  # task=classification finds it from its labels (accuracy | pearson)
    record["holdout"] = data.meta.get("holdout")
    if data.meta.get("data_sha256"):  # own data files (and the Python API's in-memory data, written as files)
        record["data_sha256"] = data.meta["data_sha256"]
    for note in data.notes:
        log.info(note)
    model = load_model(cfg.model, task.HEAD, data.num_labels)
    if data.meta.get("regression") and cfg.task.get("head_bias") == "mean":
        start_at(model, float(np.mean(data.train.columns["labels"])))
    base_total = sum(p.numel() for p in model.parameters())
    fingerprint = base_fingerprint(model)
    # the base side of the forgetting measure, before the method touches the model (it leaves the RNG as it was)
    probe = (forgetting.Probe(cfg, tokenizer, model, accelerator.device)
             if cfg.forgetting and accelerator.is_main_process else None)
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
    precision = mixed_precision(cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # bf16 needs none
    if cfg.compile:
        raise_recompile_limit(torch._dynamo.config)
        model = torch.compile(model, mode=cfg.compile_mode, dynamic=False)  # static kernels, one per padded shape
    record.update(train_examples=data.train_examples, eval_examples=data.eval_examples, schedule=cfg.schedule,
                  train_steps=steps, lr=lr, device=str(device), precision=precision,
                  num_processes=world, grad_accum=accum)
    if len(data.train) != data.train_examples:
        record["train_windows"] = len(data.train)
    return Run(accelerator, task, data, model, optimizer, scheduler, scaler, after_step, steps, lr, precision,
               autocast(cfg, device),
               trainable=[p for p in model.parameters() if p.requires_grad],  # once, not a module walk per step
               multiple=pad_multiple(cfg, device), fingerprint=fingerprint, probe=probe,
               stop_group=torch.distributed.new_group(backend="gloo") if world > 1 else None)
