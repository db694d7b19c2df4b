"""Where a run computes and in what precision: the CPU or the accelerator, what `precision=auto` resolves to,
the forward passes' autocast, torch's CPU threads for a run (`threads`), and torch.compile's recompile cap under
the name this torch gives it.

`runtime(cfg)` is the device and precision a run resolves to on this machine: train() trains with them, and the run's
identity (record.identity) hashes them, so `precision=auto` run on a CPU (fp32) and on a GPU (fp16 or bf16) are two
experiments, never one table cell or a skipped "twin"."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from omegaconf import DictConfig

COMPILE_SHAPES = 64  # padding to pad_multiple leaves a handful of shapes; each compiles once
DEVICES = ("cpu", "cuda")  # what `device=auto` can become (accelerate's MPS is never picked: on_cpu below)


def on_cpu(cfg: DictConfig) -> bool:
    # accelerate forms a multi-process CPU group (gloo) only when told cpu=True
    return cfg.device == "cpu" or not torch.cuda.is_available()


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to `n` while the run trains (None: as they are), then back: another count
    sums in another order, so a CPU run's digits reproduce only at one count, and a Python session's later work
    keeps its own."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cuda_has_bf16() -> bool:
    """Whether this CUDA device computes in bf16 natively (Ampere and later; ROCm). torch's default also answers
    True where bf16 is only emulated (a T4 or V100 can hold bf16 tensors), which runs far slower than fp16 there."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch from before the emulation check: its answer is the native one
        return torch.cuda.is_bf16_supported()


def mixed_precision(cfg: DictConfig) -> str:
    """`no`, `fp16` or `bf16`. `auto`: bf16 on a CUDA device that has it (no loss scale to manage, no fp16
    overflow: DeBERTa-v3 is known to overflow in fp16), fp16 with a GradScaler on other CUDA devices, fp32 on CPU."""
    if cfg.precision == "auto":
        if on_cpu(cfg):
            return "no"
        return "bf16" if cuda_has_bf16() else "fp16"
    return {"fp32": "no"}.get(cfg.precision, cfg.precision)


def runtime(cfg: Any) -> dict[str, str]:
    """{'device': 'cpu'|'cuda', 'precision': 'fp32'|'fp16'|'bf16'}: what this run trains with on this machine."""
    precision = mixed_precision(cfg)
    return {"device": "cpu" if on_cpu(cfg) else "cuda", "precision": {"no": "fp32"}.get(precision, precision)}


def runtimes(cfg: Any, here: bool = True) -> list[dict[str, str]]:
    """[runtime(cfg)] on this machine; with here=False (the runs train elsewhere: a cluster launcher) every choice
    the config leaves open, so a run completed on any machine the config allows counts as done."""
    if here:
        return [runtime(cfg)]
    out = []
    for device in (DEVICES if cfg.device == "auto" else (str(cfg.device),)):
        auto = ("fp16", "bf16") if device == "cuda" else ("fp32",)  # what mixed_precision picks for auto
        out += [{"device": device, "precision": p} for p in (auto if cfg.precision == "auto" else (str(cfg.precision),))]
    return out


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


def raise_recompile_limit(config: Any, limit: int = COMPILE_SHAPES) -> None:
    """Let dynamo compile `limit` versions of a function (one per padded shape) before it falls back to eager.
    torch renamed the setting: `recompile_limit` now, `cache_size_limit` in the older torch the project allows."""
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), limit))
