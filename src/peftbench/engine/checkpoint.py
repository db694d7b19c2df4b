"""Crash-safe training state: trainable tensors, optimizer, scheduler, RNG states and the position in the data order.

One file, `OUT/checkpoint.pt`, replaced atomically, so a kill at any moment leaves the previous checkpoint intact.
It is loaded with `torch.load(weights_only=True)`: plain tensors and numbers, no pickled code.
Because each epoch's batch order is a function of (seed, epoch), (epoch, batch index) is all the data state needed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .signals import Interrupted, StopFlag  # noqa: F401  (the loop's signal handling, torch-free)

FILE = "checkpoint.pt"


def save(out: Path, model: torch.nn.Module, optimizer, scheduler, state: dict[str, Any]) -> None:
    payload = {
        "trainable": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "state": state,
    }
    tmp = out / f".{FILE}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, out / FILE)


def load(out: Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any] | None:
    """Restore everything from OUT/checkpoint.pt and return the loop state, or None when there is none."""
    path = out / FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # a torn or foreign file: refuse rather than train from a wrong state
        raise UserError(f"checkpoint {path} is unreadable ({type(e).__name__}): delete it to start over") from None
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
    torch.set_rng_state(payload["rng"]["torch"])
    random.setstate((3, tuple(payload["rng"]["python"]), None))
    if payload["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
    return payload["state"]
