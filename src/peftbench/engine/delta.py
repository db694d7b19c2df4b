"""The delta of a run: only the tensors that trained (safetensors), with what it takes to rebuild the model.

Run folder layout written by `save_delta`:
  delta.safetensors  trained tensors under the names the method's model gives them (full FT: the whole model)
  delta.json         method/model/task configs, label names, seed, num_labels, base fingerprint, tensor names,
                     sha256 of delta.safetensors
Loading (`load_run`) rebuilds the base, checks its fingerprint, re-applies the method (same config) and puts the
tensors on top, so one format serves every method, LoRA and prompt tuning included. A model with training-only parts
(`fold_for_delta`: residual prompt tuning's MLP) saves its inference form and the method config that rebuilds it.
The two files alone are enough to load a run; result.json is only needed to re-score it (serve.evaluate_run).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UserError
from ..record import read_record, write_json_atomic

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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_delta(model: torch.nn.Module, out: Path, cfg: DictConfig, fingerprint: str) -> dict[str, Any]:
    """Write the delta atomically (temp file, rename); return the record fields about it."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper would prefix every name
    tensors = trained_tensors(model)
    method = OmegaConf.to_container(cfg.method, resolve=True)
    fold = getattr(model, "fold_for_delta", None)  # training-only parts that fold away (residual prompt tuning's MLP)
    if fold is not None:
        tensors, method = fold(tensors, method)
    tmp = out / f".{DELTA_FILE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)  # shared like result.json
    tmp.replace(out / DELTA_FILE)
    hf_model = next(m for m in model.modules() if isinstance(m, PreTrainedModel))  # under peft/prompt wrappers
    meta = {"method": method,
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "task": OmegaConf.to_container(cfg.task, resolve=True),
            "label_names": list(cfg.task.get("label_names") or []),
            "seed": cfg.seed, "num_labels": hf_model.config.num_labels,
            "base_fingerprint": fingerprint, "tensors": sorted(tensors),
            "sha256": file_sha256(out / DELTA_FILE)}
    write_json_atomic(out / META_FILE, meta)
    size = (out / DELTA_FILE).stat().st_size
    return {"delta_bytes": size, "delta_file": DELTA_FILE}


@dataclass
class Run:
    """A loaded run: the model (eval mode, on `device`) with its tokenizer and delta.json."""
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    meta: dict[str, Any]
    head: str
    device: torch.device


def read_meta(run_dir: Path) -> dict[str, Any]:
    """delta.json, or one UserError saying why this folder holds no loadable delta."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist: give the out= folder of a finished training run")
    if not (run_dir / META_FILE).is_file() or not (run_dir / DELTA_FILE).is_file():
        missing = " and ".join(f for f in (DELTA_FILE, META_FILE) if not (run_dir / f).is_file())
        rec = read_record(run_dir / "result.json")
        why = (f"result.json says status={rec['status']}" + (f" ({rec['error']})" if rec.get("error") else "")
               if rec else "and no result.json: it is not a run folder")
        raise UserError(f"{run_dir} has no {missing} ({why}): train the run to completion first")
    try:
        meta = json.loads((run_dir / META_FILE).read_text())
    except ValueError as e:
        raise UserError(f"{run_dir / META_FILE} is damaged (not JSON: {e}): train the run again") from None
    keys = ("method", "model", "task", "base_fingerprint", "tensors")
    missing = [k for k in keys if k not in meta] if isinstance(meta, dict) else list(keys)
    if missing:
        raise UserError(f"{run_dir / META_FILE} is damaged (no {', '.join(missing)}): train the run again")
    return meta


def read_tensors(run_dir: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The delta's tensors; a truncated or altered file is refused before anything is built on it."""
    path = Path(run_dir) / DELTA_FILE
    if meta.get("sha256") and file_sha256(path) != meta["sha256"]:
        raise UserError(f"{path} is corrupted or truncated (its sha256 differs from the one in {META_FILE}): "
                        "copy it again or train the run again")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error type on bad headers and short files
        raise UserError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}): "
                        "copy it again or train the run again") from None


def check_base(fingerprint: str, meta: dict[str, Any], where: Path, model_cfg: DictConfig) -> None:
    if fingerprint != meta["base_fingerprint"]:
        source = model_cfg.get("name_or_path") or "random init (seed)"
        raise UserError(f"{where}: the delta was trained on base {meta['base_fingerprint']} but model "
                        f"'{model_cfg.name}' ({source}) is base {fingerprint}: load the base it was trained on "
                        "(model.name_or_path=DIR)")


def attach(model: torch.nn.Module, tensors: dict[str, torch.Tensor], where: Path) -> None:
    """Put the delta's tensors in as the model's parameters: exactly the rebuilt model's trainable set, by name.

    `assign=True` swaps the parameter objects instead of copying into them, so a base shared between several
    task models (multitask.MultiTask) is never written to.
    """
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    extra, missing = sorted(set(tensors) - trainable), sorted(trainable - set(tensors))
    if extra or missing:
        parts = [f"{len(extra)} saved tensor(s) with no parameter (e.g. {extra[0]})"] if extra else []
        parts += [f"{len(missing)} trainable parameter(s) not in the delta (e.g. {missing[0]})"] if missing else []
        raise UserError(f"{where / DELTA_FILE} does not match the model rebuilt from {META_FILE}: "
                        f"{'; '.join(parts)}: the files come from different runs or versions")
    try:
        model.load_state_dict(tensors, strict=False, assign=True)
    except RuntimeError as e:  # shape mismatches
        detail = " ".join(str(e).split())
        raise UserError(f"{where / DELTA_FILE} does not fit the rebuilt model: {detail[:300]}") from None


def model_config(meta: dict[str, Any], overrides: dict[str, Any] | None = None) -> DictConfig:
    """The run's model config; `overrides` (e.g. {"name_or_path": DIR}) point at a moved base."""
    cfg = OmegaConf.create(meta["model"])
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise UserError(f"model.{key} is not a model key; known: {', '.join(cfg)}")
        cfg[key] = value
    return cfg


def task_head(meta: dict[str, Any]) -> str:
    from ..data.tasks import TASKS

    kind = meta["task"].get("kind")
    if kind not in TASKS:
        raise UserError(f"task kind '{kind}' of this run is not known to this peftbench: known {sorted(TASKS)}")
    return TASKS[kind].HEAD


def merge_peft(model: torch.nn.Module, meta: dict[str, Any]) -> torch.nn.Module:
    """A peft method's update folded into the base weights by peft's merge_and_unload (LoRA, DoRA, VeRA: W + a
    low-rank update; IA3: W rescaled; OFT, BOFT, HRA: W rotated; BEFT: a bias added): a plain model, same outputs
    up to float rounding."""
    if not hasattr(model, "peft_config"):
        raise UserError(f"merge=true applies to peft runs only (lora and its variants, ia3, vera and the other peft "
                        f"tuners); method '{meta['method']['name']}' trains weights directly or adds modules that "
                        "cannot be folded in")
    from peft.utils import ModulesToSaveWrapper

    # the trained head copies go in first: peft's IA3/VeRA unloading assumes a head with a .weight (a Linear) and
    # breaks on a composite one (RoBERTa's dense + out_proj, DeBERTa's pooler, ModernBERT's head)
    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.modules_to_save[module.active_adapters[0]])
    try:
        return model.merge_and_unload()
    except ValueError as e:  # peft's own refusal, e.g. BEFT's bias on a layer that has none to fold into
        from ..models.families import model_type

        raise UserError(f"merge=true: method '{meta['method']['name']}' cannot be folded into this "
                        f"{model_type(model.get_base_model())} model ({str(e).splitlines()[0]}): use it unmerged "
                        "(leave out merge=true)") from None


def load_run(run_dir: Path, model_overrides: dict[str, Any] | None = None, device: str = "cpu",
             merge: bool = False) -> Run:
    """Load base + delta: base from models.load_model, fingerprint check, method re-applied, tensors attached."""
    from ..models.methods import apply_method
    from ..models.load import load_model, load_tokenizer

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    tensors = read_tensors(run_dir, meta)
    model_cfg, head = model_config(meta, model_overrides), task_head(meta)
    with torch.random.fork_rng():  # a random base (model=tiny) is a function of the run's seed, as in training
        torch.manual_seed(meta.get("seed", 42))
        model = load_model(model_cfg, head, meta.get("num_labels", 2))
    check_base(base_fingerprint(model), meta, run_dir, model_cfg)
    model = apply_method(model, OmegaConf.create(meta["method"]), model_cfg.name)
    attach(model, tensors, run_dir)
    if merge:
        model = merge_peft(model, meta)
    dev = torch.device(device)
    model.requires_grad_(False)
    return Run(model.to(dev).eval(), load_tokenizer(model_cfg), meta, head, dev)
