"""LayerNorm tuning (Zhao et al. 2023; Qi et al. 2022): only the weights and biases of every LayerNorm in the
encoder (the embeddings' and two per block) train, plus the task head.

LayerNorms are found by class (`nn.LayerNorm`, or any module whose class name ends in LayerNorm/RMSNorm), so
BERT- and RoBERTa-style encoders both work. The trained tensors are the model's own weights: nothing to merge.
`to_peft` gives the trained model as peft's LN tuning (LNTuningConfig), for `peftbench export --format peft`.
"""

from __future__ import annotations

import warnings

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


def to_peft(model: nn.Module, cfg: DictConfig) -> nn.Module:
    """The trained model as peft's LN tuning: peft copies each targeted LayerNorm, trained values included, into its
    adapter, and the head into modules_to_save; on the untouched base the adapter then gives these outputs."""
    from peft import LNTuningConfig, get_peft_model

    from . import head_names

    names = [name for name, m in model.named_modules() if is_norm(m) and name.startswith(model.base_model_prefix)]
    with warnings.catch_warnings():  # peft's note on a LayerNorm target ("unsupported layer type"): LN tuning's own
        warnings.filterwarnings("ignore", message="Unsupported layer type")
        return get_peft_model(model, LNTuningConfig(target_modules=names, modules_to_save=head_names(model)))
