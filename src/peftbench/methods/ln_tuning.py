"""LayerNorm tuning (Zhao et al. 2023; Qi et al. 2022): only the weights and biases of every LayerNorm in the
encoder (the embeddings' and two per block) train, plus the task head.

LayerNorms are found by class (`nn.LayerNorm`, or any module whose class name ends in LayerNorm/RMSNorm), so
BERT- and RoBERTa-style encoders both work. The trained tensors are the model's own weights: nothing to merge.
"""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import freeze_all_but_head

    freeze_all_but_head(model)
    norms = [m for m in model.base_model.modules() if is_norm(m)]
    if not norms:
        raise LookupError("no LayerNorm in the encoder")
    for norm in norms:
        for param in norm.parameters(recurse=False):
            param.requires_grad = True
    return model
