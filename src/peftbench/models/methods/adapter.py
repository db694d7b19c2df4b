"""Bottleneck adapters: a small down-project -> nonlinearity -> up-project block with a residual connection,
inserted into every encoder block; the base is frozen and the adapters and the head train.

  Houlsby et al. 2019 (`positions: [attention, ffn]`): after the attention's output projection and after the FFN's.
  Pfeiffer et al. 2021 (`positions: [ffn]`): after the FFN's output projection only.
The adapter sits where the `adapters` library puts it, on the sublayer's output h (after its projection and dropout,
before the residual), with the block's input r and its LayerNorm LN (the `adapters` library pins transformers 4.x,
hence this module):
  Houlsby (its DoubleSeqBnConfig):  LN(h + A(h) + r)
  Pfeiffer (its SeqBnConfig, `original_ln_before: true`):  LN(h + A(LN(h + r)) + r) -- the adapter reads the
  block's normalised output, and the same (frozen) LayerNorm is applied again after it.
Both are placed by role (families.py), with forward hooks, so no module is replaced and every frozen weight keeps
its name: Houlsby hooks the family's `attention_point` / `ffn_point` (output h -> h + A(h)); Pfeiffer hooks the
`*_post_norm` LayerNorm (input z = h + r, output LN(z) -> LN(z + A(LN(z)))). The adapter is registered on the hooked
module's parent as `adapter` (BERT: `attention.output.adapter`, `output.adapter`). A pre-norm family (ModernBERT) has
no post-norm, so Pfeiffer's placement refuses there. ALBERT's shared layer gets one adapter set, reused at every depth.
Width = hidden size // `reduction_factor`. Near-identity start: both projections ~ N(0, 0.01) truncated at two
standard deviations (Houlsby et al.), biases zero. Adapters are not linear in the weights: nothing to merge.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from transformers.activations import ACT2FN

from ..families import family_of, modules_for

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


class AfterOutput:
    """Forward hook on the sublayer's output point: h -> h + A(h). An object, not a closure, so deepcopy follows."""

    def __init__(self, adapter: Bottleneck) -> None:
        self.adapter = adapter

    def __call__(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        return out + self.adapter(out)


class AroundNorm:
    """Forward hook on the post-residual LayerNorm: input z, output LN(z) -> LN(z + A(LN(z)))."""

    def __init__(self, adapter: Bottleneck) -> None:
        self.adapter = adapter
        self.inside = False

    def __call__(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        if self.inside:  # the second pass through the same LayerNorm, below
            return None
        self.inside = True
        try:
            return module(args[0] + self.adapter(out))
        finally:
            self.inside = False


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import freeze_all_but_head

    positions = list(cfg.positions)
    unknown = [p for p in positions if p not in POSITIONS]
    if unknown or not positions:
        raise ValueError(f"method.positions={positions}: pick from {list(POSITIONS)}")
    if cfg.activation not in ACT2FN:
        raise ValueError(f"method.activation='{cfg.activation}' is unknown; e.g. relu, gelu, swish")
    family = family_of(model)
    around_norm = bool(cfg.get("original_ln_before", False))
    freeze_all_but_head(model)
    hidden = model.config.hidden_size
    width = max(1, hidden // cfg.reduction_factor)
    parents = dict(model.named_modules())
    for position in positions:
        role = f"{position}_post_norm" if around_norm else f"{position}_point"
        points = modules_for(model, role)
        if not points:
            raise LookupError(family.lacks.get("post_norm" if around_norm else position,
                                               f"no '{role}' module in this family's blocks"))
        for name, module in points:
            adapter = Bottleneck(hidden, width, cfg.activation)
            parent = parents[name.rpartition(".")[0]]
            if hasattr(parent, "adapter"):
                raise LookupError(f"two adapter positions share the module {name.rpartition('.')[0]}")
            parent.adapter = adapter
            module.register_forward_hook(AroundNorm(adapter) if around_norm else AfterOutput(adapter))
    return model
