"""AdaLoRA (Zhang et al., ICLR 2023) through `peft`: SVD-shaped adapters P diag(E) Q that start at rank `init_r`
and are pruned, by an importance score, to an average `target_r` over training; the head trains.

peft needs two things a config cannot give, both from the loop's generic hooks (methods/__init__.py):
  - the run's length: `total_step` is fixed when the method is applied to train (`step_hook`), and the warm-up
    (`tinit`) and final (`tfinal`) phases are fractions of it, `tinit_ratio` and `tfinal_ratio`;
  - `update_and_allocate(step)` after every optimizer update, before the gradients are cleared (peft's recipe);
    the loop counts only updates applied, so a step fp16's scaler skipped neither feeds its inf gradients to the
    importance scores nor advances the budget schedule.
The pruning zeroes entries of E (peft masks rather than resizes), so the delta holds init_r-rank tensors with those
zeros, and reloads to the same outputs; merging is peft's merge_and_unload. peft adds the orthogonality penalty
(`orth_reg_weight`) to the loss inside the model's forward.
"""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig
from peft import AdaLoraConfig, get_peft_model
from torch import nn

PLACEHOLDER_STEPS = 1000  # a reload or a parameter count: no schedule runs, peft only asks for a positive length


def config(model: nn.Module, cfg: DictConfig, total_step: int) -> AdaLoraConfig:
    from . import head_names, targets

    if not (cfg.tinit_ratio >= 0 and cfg.tfinal_ratio >= 0 and cfg.tinit_ratio + cfg.tfinal_ratio < 1):
        raise ValueError("method.tinit_ratio + method.tfinal_ratio must be below 1 (the pruning phase needs steps)")
    return AdaLoraConfig(init_r=cfg.init_r, target_r=cfg.target_r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                         target_modules=targets(model, cfg, "AdaLoRA"), modules_to_save=head_names(model),
                         total_step=total_step, tinit=int(cfg.tinit_ratio * total_step),
                         tfinal=int(cfg.tfinal_ratio * total_step), deltaT=cfg.delta_t,
                         orth_reg_weight=cfg.orth_reg_weight)


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    return get_peft_model(model, config(model, cfg, PLACEHOLDER_STEPS))


def step_hook(model: nn.Module, cfg: DictConfig, total_steps: int) -> Callable[[int], None]:
    """Set the run's length in peft's config (its rank allocator reads that object) and return the per-step call."""
    tuner = model.base_model  # peft's AdaLoraModel under the PeftModel
    live = tuner.peft_config[tuner.trainable_adapter_name]
    live.total_step = max(total_steps, 2)
    live.tinit, live.tfinal = int(cfg.tinit_ratio * live.total_step), int(cfg.tfinal_ratio * live.total_step)
    return tuner.update_and_allocate
