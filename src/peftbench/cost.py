"""What a run costs: parameters, peak memory (measured and the static split), training FLOPs.

Fields written to result.json:
  trainable_params, total_params (the base model with its head, before the method adds anything),
  trainable_percent (100 * trainable / total), added_params (what the method adds: LoRA matrices, prompt rows)
  memory_weights_bytes, memory_gradients_bytes, memory_optimizer_bytes  -- static split from the parameters
  peak_memory_bytes -- CUDA: max allocated during training; CPU: peak resident set (VmHWM) during training
  peak_memory_reserved_bytes (CUDA), rss_before_train_bytes (CPU: resident set when training starts)
  train_flops_per_step (counted with torch.utils.flop_counter on the first real batch, forward + backward),
  train_flops_per_token, train_flops (per-token count x padded tokens of every step)
"""

from __future__ import annotations

import ctypes
import gc
import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

ADAMW_STATES = 2  # exp_avg and exp_avg_sq per trainable element


def param_counts(model: torch.nn.Module, base_total: int) -> dict[str, Any]:
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total_now = sum(p.numel() for p in params)
    weights = sum(p.numel() * p.element_size() for p in params)
    grads = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return {"trainable_params": trainable, "total_params": base_total,
            "trainable_percent": round(100 * trainable / base_total, 4),
            "added_params": total_now - base_total,
            "memory_weights_bytes": weights, "memory_gradients_bytes": grads,
            "memory_optimizer_bytes": ADAMW_STATES * grads}


def _status(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) * 1024


def release_freed_memory() -> None:
    """Free what earlier runs left behind before the resident set is read: objects kept alive only by reference
    cycles (models, optimizers), then the heap pages glibc holds after free() (malloc_trim). Without it a study's
    second run on CPU started at the first run's peak (measured: 1.8 GB resident before a MiniLM run that needs
    1.3 GB), and its "peak" was the previous run's."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): the cycles are still collected
        pass


class Meter:
    """Peak memory over the training loop and FLOPs of one real step."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.flops_per_token = None
        self.padded_tokens = 0
        self.fields: dict[str, Any] = {}
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        else:
            release_freed_memory()  # a study runs many runs in one process: the last run's memory is not this one's
            try:  # Linux: "5" resets the peak resident set, so the peak is the loop's, not the model load's
                Path("/proc/self/clear_refs").write_text("5")
                self.fields["rss_before_train_bytes"] = _status("VmRSS")
            except OSError:
                pass

    def count(self, step: int):
        """A FLOP counter around the first step's forward and backward; nothing on later steps."""
        self._counter = FlopCounterMode(display=False) if step == 0 else None
        return self._counter or nullcontext()

    def add_step(self, padded_tokens: int) -> None:
        self.padded_tokens += padded_tokens
        if self._counter is not None:
            flops = self._counter.get_total_flops()
            self.fields["train_flops_per_step"] = flops
            self.flops_per_token = flops / padded_tokens

    def peak(self) -> dict[str, Any]:
        out = dict(self.fields)
        if self.cuda:
            out["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
            out["peak_memory_reserved_bytes"] = torch.cuda.max_memory_reserved()
        elif "rss_before_train_bytes" in out:  # the kernel updates VmHWM lazily: it can lag a resident set read
            out["peak_memory_bytes"] = max(_status("VmHWM"), _status("VmRSS"), out["rss_before_train_bytes"])
        if self.flops_per_token:
            out["train_flops_per_token"] = round(self.flops_per_token, 1)
            out["train_flops"] = round(self.flops_per_token * self.padded_tokens)
        return out
