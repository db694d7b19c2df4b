"""LoRA (Hu et al. 2021) through the `peft` library: rank-r adapters on the attention projections; the head trains."""

from __future__ import annotations

from omegaconf import DictConfig
from peft import LoraConfig, get_peft_model
from torch import nn


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import head_names

    targets = list(cfg.target_modules)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing:
        raise LookupError(f"no module named {missing} to put LoRA on (set method.target_modules)")
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        bias="none",
        # the head is found by role so a QA head (qa_outputs) trains and saves like a classifier
        modules_to_save=head_names(model),
    )
    return get_peft_model(model, config)
