"""LoRA (Hu et al. 2021) through the `peft` library: rank-r adapters on chosen linear layers; the head trains.

Configs of this one module: `lora` (query, value), `lora_all` (every linear layer of the encoder's blocks, by a
regex over module paths) and `dora` (peft's `use_dora`: DoRA, Liu et al. 2024, a trained magnitude per output
unit on top of the low-rank direction update).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from peft import LoraConfig, get_peft_model
from torch import nn


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import check_targets, head_names

    targets = cfg.target_modules
    targets = check_targets(model, targets if isinstance(targets, str) else list(OmegaConf.to_object(targets)), "LoRA")
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        bias="none",
        use_dora=bool(cfg.get("use_dora", False)),
        # the head is found by role so a QA head (qa_outputs) trains and saves like a classifier
        modules_to_save=head_names(model),
    )
    return get_peft_model(model, config)
