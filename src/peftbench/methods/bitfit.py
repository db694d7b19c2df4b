"""BitFit (Ben Zaken et al. 2022): train only bias terms, all of them or a subset by role, plus the task head.

Roles are matched on the module path of each bias so that BERT- and RoBERTa-style encoders both work:
  query/key/value  -> attention.self.{query,key,value}.bias
  attention_output -> attention.output.dense.bias
  intermediate     -> intermediate.dense.bias (FFN input)
  output           -> layer.N.output.dense.bias (FFN output)
  layernorm        -> every LayerNorm bias (embeddings and each layer)
  pooler           -> pooler.dense.bias
"""

from __future__ import annotations

import re

from omegaconf import DictConfig
from torch import nn

ROLES = {
    "query": r"attention\.self\.query\.bias$",
    "key": r"attention\.self\.key\.bias$",
    "value": r"attention\.self\.value\.bias$",
    "attention_output": r"attention\.output\.dense\.bias$",
    "intermediate": r"intermediate\.dense\.bias$",
    "output": r"layer\.\d+\.output\.dense\.bias$",
    "layernorm": r"LayerNorm\.bias$",
    "pooler": r"pooler\.dense\.bias$",
}


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import freeze_all_but_head

    freeze_all_but_head(model)
    if cfg.biases == "all":
        wanted = {"bias": r"\.bias$"}  # every bias the encoder has, whatever its module is called
    else:
        unknown = [r for r in cfg.biases if r not in ROLES]
        if unknown:
            raise ValueError(f"method.biases has unknown roles {unknown}; known: {sorted(ROLES)}")
        wanted = {role: ROLES[role] for role in cfg.biases}
    found = dict.fromkeys(wanted, 0)
    for name, param in model.base_model.named_parameters():
        for role, pattern in wanted.items():
            if re.search(pattern, name):
                param.requires_grad = True
                found[role] += 1
    missing = [role for role, n in found.items() if n == 0]
    if missing:
        raise LookupError(f"no bias found for {missing} (BitFit expects BERT/RoBERTa-style module paths)")
    return model
