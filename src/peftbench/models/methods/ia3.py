"""(IA)^3 (Liu et al. 2022) through `peft`: learned vectors that rescale the keys, the values and the FFN's inner
activations (the input of the FFN's output projection), initialised to ones; the head trains.

Roles (`target_roles`, `feedforward_roles`) resolve per family (families.py); on ModernBERT's fused Wqkv the
key/value vector scales the whole fused output, queries included. Merging folds each vector into its linear
layer's weight (peft's merge_and_unload).
"""

from __future__ import annotations

from omegaconf import DictConfig
from peft import IA3Config, get_peft_model
from torch import nn


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import head_names, targets

    config = IA3Config(
        target_modules=targets(model, cfg, "IA3"),
        # these scale their layer's input (the 4x-wide FFN activation), the others their output
        feedforward_modules=targets(model, cfg, "IA3", "feedforward"),
        modules_to_save=head_names(model),
    )
    return get_peft_model(model, config)
