"""Bottleneck adapters: a small down-project -> nonlinearity -> up-project block with a residual connection,
inserted into every encoder block; the base is frozen and the adapters and the head train.

  Houlsby et al. 2019 (`positions: [attention, ffn]`): after the attention's output projection and after the FFN's.
  Pfeiffer et al. 2021 (`positions: [ffn]`): after the FFN's output projection only.
The adapter sits where the `adapters` library puts it, on the projection's output h (after its dropout), with the
block's input r and its LayerNorm LN (the `adapters` library pins transformers 4.x, hence this module):
  Houlsby (its DoubleSeqBnConfig):  LN(h + A(h) + r)
  Pfeiffer (its SeqBnConfig, `original_ln_before: true`):  LN(h + A(LN(h + r)) + r) -- the adapter reads the
  block's normalised output, and the same (frozen) LayerNorm is applied again after it.
Both positions are found by role: the `*SelfOutput` module (attention output) and the `*Output` module beside an
`intermediate` (FFN output), each with `dense`, `dropout` and `LayerNorm` -- BERT, RoBERTa and their kin.
Width = hidden size // `reduction_factor`. Near-identity start: both projections ~ N(0, 0.01) truncated at two
standard deviations (Houlsby et al.), biases zero. Adapters are not linear in the weights: nothing to merge.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from transformers.activations import ACT2FN

POSITIONS = ("attention", "ffn")


class Bottleneck(nn.Module):
    def __init__(self, hidden: int, width: int, activation: str) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, width)
        self.act = ACT2FN[activation]
        self.up = nn.Linear(width, hidden)
        for layer in (self.down, self.up):
            nn.init.trunc_normal_(layer.weight, std=1e-2, a=-2e-2, b=2e-2)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class AdapterOutput(nn.Module):
    """A block's output module (dense -> dropout -> LayerNorm(h + residual)) with an adapter after the dropout.

    It keeps the original's children under their names, so the frozen weights keep their parameter names.
    """

    def __init__(self, output: nn.Module, adapter: Bottleneck, original_ln_before: bool) -> None:
        super().__init__()
        self.dense, self.dropout, self.LayerNorm = output.dense, output.dropout, output.LayerNorm
        self.adapter = adapter
        self.original_ln_before = original_ln_before

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.dense(hidden_states))
        x = self.LayerNorm(h + input_tensor) if self.original_ln_before else h
        return self.LayerNorm(h + self.adapter(x) + input_tensor)


def role(name: str, module: nn.Module, parent: nn.Module) -> str | None:
    if not all(hasattr(module, a) for a in ("dense", "dropout", "LayerNorm")):
        return None
    kind = type(module).__name__
    if kind.endswith("SelfOutput"):
        return "attention"
    if kind.endswith("Output") and hasattr(parent, "intermediate"):
        return "ffn"
    return None


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import freeze_all_but_head

    positions = list(cfg.positions)
    unknown = [p for p in positions if p not in POSITIONS]
    if unknown or not positions:
        raise ValueError(f"method.positions={positions}: pick from {list(POSITIONS)}")
    if cfg.activation not in ACT2FN:
        raise ValueError(f"method.activation='{cfg.activation}' is unknown; e.g. relu, gelu, swish")
    freeze_all_but_head(model)
    modules = dict(model.base_model.named_modules())
    found = []
    for name, module in list(modules.items()):
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name]
        if name and role(name, module, parent) in positions:
            hidden = module.dense.out_features
            width = max(1, hidden // cfg.reduction_factor)
            adapter = Bottleneck(hidden, width, cfg.activation)
            setattr(parent, child, AdapterOutput(module, adapter, bool(cfg.get("original_ln_before", False))))
            found.append(role(name, module, parent))
    missing = [p for p in positions if p not in found]
    if missing:
        raise LookupError(f"no {missing} output block (a *SelfOutput / *Output module with dense, dropout, LayerNorm)")
    return model
