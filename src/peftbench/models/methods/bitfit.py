"""BitFit (Ben Zaken et al. 2022): train only bias terms, all of them or a subset by role, plus the task head.

`biases: all` marks every bias of the encoder, whatever its module is called. A list names roles, resolved per
family through families.py: query, key, value, attention_output, ffn_in, ffn_out (each block's projection of that
role), norm (every LayerNorm's bias, found by class) and pooler. A fused qkv (ModernBERT) has one bias for query,
key and value. An encoder with no biases at all (ModernBERT by default) is refused: BitFit there would train only the
head. The names of older configs still read: intermediate = ffn_in, output = ffn_out, layernorm = norm.
"""

from __future__ import annotations

import re

from omegaconf import DictConfig
from torch import nn

from ..families import family_of, role_regex
from .ln_tuning import is_norm

ALIASES = {"intermediate": "ffn_in", "output": "ffn_out", "layernorm": "norm"}  # the names of runs before roles
BLOCK_ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
ROLES = (*BLOCK_ROLES, "norm", "pooler")


def role_biases(model: nn.Module, role: str) -> list[nn.Parameter]:
    base = model.base_model
    if role == "norm":
        return [m.bias for m in base.modules() if is_norm(m) and getattr(m, "bias", None) is not None]
    if role == "pooler":
        pooler = family_of(model).pooler
        pattern = rf"{re.escape(pooler)}\.bias" if pooler else None
    else:
        pattern = role_regex(model, [role], "method.biases", suffix=r"\.bias")
    return [p for n, p in base.named_parameters() if pattern and re.fullmatch(pattern, n)]


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import freeze_all_but_head

    freeze_all_but_head(model)
    if cfg.biases == "all":
        found = {"bias": [p for n, p in model.base_model.named_parameters() if n.endswith(".bias")]}
    else:
        roles = [ALIASES.get(str(r), str(r)) for r in cfg.biases]
        unknown = [r for r in cfg.biases if ALIASES.get(str(r), str(r)) not in ROLES]
        if unknown:
            raise ValueError(f"method.biases has unknown roles {unknown}; known: {sorted(ROLES)}")
        found = {role: role_biases(model, role) for role in roles}
    for params in found.values():
        for p in params:
            p.requires_grad = True
    if not any(found.values()) and found:
        raise LookupError(family_of(model).lacks.get("bias", "the encoder has no bias terms") +
                          " (BitFit would train only the head)")
    missing = [role for role, params in found.items() if not params]
    if missing:
        raise LookupError(f"no bias found for roles {missing}; pick roles this family has biases for, or biases=all")
    return model
