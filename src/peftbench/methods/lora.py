"""LoRA (Hu et al. 2021) through the `peft` library: rank-r adapters on chosen linear layers; the head trains.

Configs of this one module: `lora` (query, value), `lora_all` (every linear layer of the encoder's blocks) and
`dora` (peft's `use_dora`: DoRA, Liu et al. 2024, a trained magnitude per output unit on top of the low-rank
direction update). They name roles (`target_roles`), resolved per family through
families.py; `method.target_modules` (names or a regex, peft's rule) overrides them.
"""

from __future__ import annotations

from omegaconf import DictConfig
from peft import LoraConfig, get_peft_model
from torch import nn


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import head_names, targets

    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets(model, cfg, "LoRA"),
        bias="none",
        use_dora=bool(cfg.get("use_dora", False)),
        # the head is found by role so a QA head (qa_outputs) trains and saves like a classifier
        modules_to_save=head_names(model),
    )
    return get_peft_model(model, config)
