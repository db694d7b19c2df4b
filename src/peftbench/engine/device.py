"""Where and in what precision a run trains: `device` and `precision` resolved on this machine, once for all.

train() trains with these choices, and the run's identity (record.identity) hashes them, so `precision=auto` run on a
CPU (fp32) and on a GPU (fp16 or bf16) are two experiments, never one table cell or a skipped "twin". Only torch is
imported, and only when a choice depends on the machine: a study's plan and dry run stay light.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

DEVICES = ("cpu", "cuda")  # what `device=auto` can become (accelerate's MPS is never picked: on_cpu below)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def on_cpu(cfg: DictConfig) -> bool:
    # accelerate forms a multi-process CPU group (gloo) only when told cpu=True
    return cfg.device == "cpu" or not cuda_available()


def mixed_precision(cfg: DictConfig) -> str:
    if cfg.precision == "auto":
        return "fp16" if cfg.device != "cpu" and cuda_available() else "no"
    return {"fp32": "no"}.get(cfg.precision, cfg.precision)


def runtime(cfg: Any) -> dict[str, str]:
    """{'device': 'cpu'|'cuda', 'precision': 'fp32'|'fp16'|'bf16'}: what this run trains with on this machine."""
    cpu = on_cpu(cfg)
    return {"device": "cpu" if cpu else "cuda", "precision": {"no": "fp32"}.get(p := mixed_precision(cfg), p)}


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
