"""LoRA (Hu et al. 2021) through the `peft` library: rank-r adapters on chosen linear layers; the head trains.

Configs of this one module, differing only in arguments:
  lora (query, value), lora_all (every linear layer of the encoder's blocks),
  dora      peft's `use_dora`: DoRA (Liu et al. 2024), a trained magnitude per output unit on top of the update
  rslora    peft's `use_rslora`: rank-stabilised scaling alpha / sqrt(r) instead of alpha / r (Kalajdzievski 2023)
  lora_pissa, lora_olora  peft's `init_lora_weights`: A and B start from the weight's top singular vectors (PiSSA,
            Meng et al. 2024) or its QR factors (OLoRA, Büyükakyüz 2024), and that rank-r part is taken out of the
            frozen weight, so the model starts where the base is
  loraplus  `loraplus_lr_ratio`: LoRA+ (Hayou et al. 2024), B learns at that multiple of A's rate (peft's
            create_loraplus_optimizer builds the groups; `param_groups` below hands them to the loop)
They name roles (`target_roles`), resolved per family through families.py; `method.target_modules` (names or a
regex, peft's rule) overrides them. PiSSA and OLoRA change the frozen weights at apply time, from the base alone
(a full SVD / QR: deterministic), so a saved delta (the trained A and B) reloads by applying the method to the same
base again; the merged model is the tuned one.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from peft import LoraConfig, get_peft_model
from torch import nn

INITS = ("gaussian", "pissa", "olora")  # gaussian: peft's default (True): A Kaiming-uniform, B zero


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import head_names, targets

    init = cfg.get("init_lora_weights", "gaussian")
    if init not in INITS:
        raise ValueError(f"method.init_lora_weights='{init}' is unknown; pick one of {list(INITS)}")
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets(model, cfg, "LoRA"),
        bias="none",
        use_dora=bool(cfg.get("use_dora", False)),
        use_rslora=bool(cfg.get("use_rslora", False)),
        init_lora_weights=True if init == "gaussian" else init,
        # the head is found by role so a QA head (qa_outputs) trains and saves like a classifier
        modules_to_save=head_names(model),
    )
    return get_peft_model(model, config)


def param_groups(model: nn.Module, cfg: DictConfig, lr: float, weight_decay: float) -> list[dict[str, Any]] | None:
    """LoRA+'s groups (B at lr x ratio) from peft's create_loraplus_optimizer; None (the loop's own) otherwise."""
    ratio = cfg.get("loraplus_lr_ratio")
    if ratio is None:
        return None
    from peft.optimizers import create_loraplus_optimizer

    groups = create_loraplus_optimizer(model, optimizer_cls=lambda groups, **kw: groups, lr=lr,
                                       loraplus_lr_ratio=ratio, loraplus_weight_decay=weight_decay)
    return [g for g in groups if g["params"]]
