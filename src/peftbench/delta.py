"""The delta of a run: only the tensors that trained (safetensors), with what it takes to rebuild the model.

Run folder layout written by `save_delta`:
  delta.safetensors  trained tensors under the names the method's model gives them (full FT: the whole model)
  delta.json         method/model/task configs, label names, base fingerprint, tensor names
Loading rebuilds the base, re-applies the method (same config) and loads the tensors on top, so one format
serves every method, LoRA included.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from .record import write_json_atomic

DELTA_FILE = "delta.safetensors"
META_FILE = "delta.json"


def base_fingerprint(model: torch.nn.Module) -> str:
    """Hash over names, shapes and values of the encoder's weights (the head is new, so it is left out)."""
    h = hashlib.sha256()
    for name, param in model.base_model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(param.shape)).encode())
        h.update(param.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:32]


def trained_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_delta(model: torch.nn.Module, out: Path, cfg: DictConfig, fingerprint: str) -> dict[str, Any]:
    """Write the delta atomically (temp file, rename); return the record fields about it."""
    tensors = trained_tensors(model)
    tmp = out / f".{DELTA_FILE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / DELTA_FILE)
    meta = {"method": OmegaConf.to_container(cfg.method, resolve=True),
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "task": OmegaConf.to_container(cfg.task, resolve=True),
            "label_names": list(cfg.task.get("label_names") or []),
            "base_fingerprint": fingerprint, "tensors": sorted(tensors)}
    write_json_atomic(out / META_FILE, meta)
    size = (out / DELTA_FILE).stat().st_size
    return {"delta_bytes": size, "delta_file": DELTA_FILE}
