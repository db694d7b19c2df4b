"""The methods: one module each with `apply(model, cfg) -> model`; a method config names its module in `apply`."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from ..errors import UserError
from . import bitfit, full, lora, prompt

METHODS = {"full": full.apply, "bitfit": bitfit.apply, "lora": lora.apply, "prompt": prompt.apply}


def head_names(model: nn.Module) -> list[str]:
    """Top-level children outside the encoder: the task head (classifier, qa_outputs, ...) found by role, not name."""
    base = model.base_model
    return [name for name, child in model.named_children() if child is not base and any(True for _ in child.parameters())]


def freeze_all_but_head(model: nn.Module) -> None:
    heads = head_names(model)
    for name, param in model.named_parameters():
        param.requires_grad = name.split(".")[0] in heads


def apply_method(model: nn.Module, method_cfg: DictConfig, model_name: str) -> nn.Module:
    fn = METHODS.get(method_cfg.apply)
    if fn is None:
        raise UserError(f"method.apply='{method_cfg.apply}' is unknown: pick one of {sorted(METHODS)}")
    try:
        return fn(model, method_cfg)
    except LookupError as e:  # a method that cannot find the modules it needs in this architecture
        raise UserError(f"method '{method_cfg.name}' cannot handle model '{model_name}': {e}") from None
