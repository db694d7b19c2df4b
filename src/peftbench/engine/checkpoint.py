"""Crash-safe training state: trainable tensors, optimizer, scheduler, loss scale, RNG states and the loop's
TrainState (its position in the data order and what it has counted).

One file, `OUT/checkpoint.pt`, replaced atomically, so a kill at any moment leaves the previous checkpoint intact.
It is loaded with `torch.load(weights_only=True)`: plain tensors and numbers, no pickled code.
Because each epoch's batch order is a function of (seed, epoch), (epoch, batch index) is all the data state needed.
Tensors are named as in the unwrapped model (no DDP `module.` or compile `_orig_mod.` prefix), so a checkpoint
written under DDP or compile loads into the same run however it is wrapped. Each process keeps its own RNG state:
under DDP every process draws its own dropout masks.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .signals import Interrupted, StopFlag  # noqa: F401  (the loop's signal handling, torch-free)

FILE = "checkpoint.pt"
# 2: TrainState, the GradScaler's state, one RNG state per process. Version 1 files (a string-keyed loop dict, no
# loss scale) do not load: resuming them would restart fp16's loss scale, so such a run starts over
VERSION = 2


@dataclass
class TrainState:
    """Where the loop is and what it has counted; everything a resume needs besides tensors and RNG states."""

    step: int = 0                  # optimizer steps done (the LR schedule's position)
    updates: int = 0               # of those, the ones a method's step hook saw applied (fp16's scaler skips a step
                                   # whose gradients overflowed; without a hook nobody looks, and this is `step`)
    epoch: int = 0
    batch: int = 0                 # batches of `epoch` trained on so far
    samples: int = 0
    tokens: int = 0                # real (unpadded) tokens trained on
    train_time_s: float = 0.0
    running: torch.Tensor = field(default_factory=lambda: torch.tensor(0.0))  # loss summed since the last log line
    padded_tokens: int = 0         # the cost meter's counts (cost.Meter), carried over a resume
    flops_per_token: float | None = None
    cost: dict[str, Any] = field(default_factory=dict)


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU, Python, every CUDA device)."""
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def save(out: Path, model: torch.nn.Module, optimizer, scheduler, scaler: torch.amp.GradScaler, state: TrainState,
         rngs: list[dict[str, Any]]) -> None:
    """Write OUT/checkpoint.pt atomically; `model` unwrapped, `rngs` the RNG state of each process by rank."""
    payload = {
        "version": VERSION,
        "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),  # {} when disabled (fp32, bf16)
        "rng": rngs,
        "state": {**dataclasses.asdict(state), "running": state.running.detach().cpu()},
    }
    tmp = out / f".{FILE}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, out / FILE)


def load(out: Path, model: torch.nn.Module, optimizer, scheduler, scaler: torch.amp.GradScaler,
         rank: int = 0) -> TrainState | None:
    """Restore everything from OUT/checkpoint.pt into the unwrapped `model` and the rest; return the loop's state,
    or None when there is no checkpoint. Process `rank` takes its own RNG state (rank 0's if the file has none)."""
    path = out / FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # a torn or foreign file: refuse rather than train from a wrong state
        raise UserError(f"checkpoint {path} is unreadable ({type(e).__name__}): delete it to start over") from None
    version = payload.get("version", 1) if isinstance(payload, dict) else None
    if version != VERSION:
        raise UserError(f"checkpoint {path} is from another peftbench (format {version}, this one reads {VERSION}): "
                        "delete it, or run with overwrite=true, to start this run over")
    params = dict(model.named_parameters())
    missing = set(payload["trainable"]) ^ {n for n, p in params.items() if p.requires_grad}
    if missing:
        raise UserError(f"checkpoint {path} does not match this run's trainable tensors (e.g. {sorted(missing)[0]}): "
                        "was the method or model changed? use another out=")
    with torch.no_grad():
        for name, tensor in payload["trainable"].items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scaler.load_state_dict(payload["scaler"])
    rng = payload["rng"][rank if rank < len(payload["rng"]) else 0]
    torch.set_rng_state(rng["torch"])
    random.setstate((3, tuple(rng["python"]), None))
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    return TrainState(**payload["state"])

