"""(IA)^3 (Liu et al. 2022) through `peft`: learned vectors that rescale the keys, the values and the FFN's inner
activations (the input of the FFN's output projection), initialised to ones; the head trains.

Merging folds each vector into its linear layer's weight (peft's merge_and_unload).
"""

from __future__ import annotations

from omegaconf import DictConfig
from peft import IA3Config, get_peft_model
from torch import nn


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import check_targets, head_names

    config = IA3Config(
        target_modules=check_targets(model, str(cfg.target_modules), "IA3"),
        # these scale their layer's input (the 4x-wide FFN activation), the others their output
        feedforward_modules=check_targets(model, str(cfg.feedforward_modules), "IA3"),
        modules_to_save=head_names(model),
    )
    return get_peft_model(model, config)
