"""Deep prompt tuning: prefix tuning (Li & Liang 2021) / P-tuning v2 (Liu et al. 2022) on an encoder.

Every layer's self-attention gets k trainable key and value vectors in front of its own keys and values; every
query can attend to them, they attend to nothing (they are not tokens), and the attention mask gets k always-visible
columns. Token positions, lengths and outputs are unchanged, so QA labels need no shifting.
  projection: 0    the prefixes are free parameters, k x layers x 2 x hidden (P-tuning v2's default)
  projection: N    reparameterised: k embeddings of width hidden -> Linear(hidden, N) -> tanh -> Linear(N,
                   layers x 2 x hidden), trained together (Li & Liang's stabiliser); the MLP is part of the delta
Initialisation: N(0, 1), as nn.Embedding (and so peft and P-tuning v2) does.
peft's own prefix tuning refuses BERT under transformers 5 ("Model does not support past key values"), so the
layer's attention is recomputed here from its own query/key/value projections and transformers' attention
function for the configured implementation (eager, sdpa, ...). Nothing to merge: the prefixes are not weights.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

NEEDED = ("query", "key", "value", "attention_head_size", "scaling", "config", "dropout")  # BERT-style


class PrefixEncoder(nn.Module):
    """All layers' prefixes as one (layers, 2, k, hidden) tensor: keys at [:, 0], values at [:, 1]."""

    def __init__(self, layers: int, tokens: int, hidden: int, projection: int) -> None:
        super().__init__()
        self.shape = (tokens, layers, 2, hidden)
        width = hidden if projection else layers * 2 * hidden
        self.embedding = nn.Embedding(tokens, width)
        self.mlp = nn.Sequential(nn.Linear(hidden, projection), nn.Tanh(),
                                 nn.Linear(projection, layers * 2 * hidden)) if projection else None

    def forward(self) -> torch.Tensor:
        x = self.embedding.weight
        if self.mlp is not None:
            x = self.mlp(x)
        return x.view(self.shape).permute(1, 2, 0, 3)


class PrefixSelfAttention(nn.Module):
    """One layer's self-attention with the prefix keys/values (set by PrefixModel for each forward) in front."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.attn = attn
        self.kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        a = self.attn
        b, t = hidden_states.shape[:2]

        def split(x: torch.Tensor) -> torch.Tensor:  # (b, n, hidden) -> (b, heads, n, head size)
            return x.view(b, x.shape[1], -1, a.attention_head_size).transpose(1, 2)

        prefix_k, prefix_v = (p.to(hidden_states.dtype).unsqueeze(0).expand(b, -1, -1) for p in self.kv)
        query = split(a.query(hidden_states))
        key = split(torch.cat([prefix_k, a.key(hidden_states)], dim=1))
        value = split(torch.cat([prefix_v, a.value(hidden_states)], dim=1))
        if attention_mask is not None:  # 4-D (b, 1, t|1, t): boolean "may attend" or additive 0 / -inf
            shape = (*attention_mask.shape[:-1], prefix_k.shape[1])
            boolean = attention_mask.dtype == torch.bool
            visible = attention_mask.new_ones(shape) if boolean else attention_mask.new_zeros(shape)
            attention_mask = torch.cat([visible, attention_mask], dim=-1)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(a.config._attn_implementation, None)
        if attend is None:
            from transformers.models.bert.modeling_bert import eager_attention_forward as attend
        kwargs.pop("cache", None)  # an encoder keeps no cache; prefixes play its part
        out, weights = attend(a, query, key, value, attention_mask, dropout=a.dropout.p if self.training else 0.0,
                              scaling=a.scaling, **kwargs)
        return out.reshape(b, t, -1).contiguous(), weights


class PrefixModel(nn.Module):
    def __init__(self, model: nn.Module, layers: list[PrefixSelfAttention], tokens: int, projection: int) -> None:
        super().__init__()
        self.model = model
        self.layers = layers  # a plain list: the modules are registered inside self.model already
        self.prefix = PrefixEncoder(len(layers), tokens, model.config.hidden_size, projection)

    def forward(self, *args, **kwargs):
        kv = self.prefix()
        for i, layer in enumerate(self.layers):
            layer.kv = (kv[i, 0], kv[i, 1])
        try:
            return self.model(*args, **kwargs)
        finally:
            for layer in self.layers:
                layer.kv = None  # no graph kept alive between steps


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import freeze_all_but_head

    if cfg.num_virtual_tokens < 1 or cfg.projection < 0:
        raise ValueError("method.num_virtual_tokens must be >= 1 and method.projection >= 0 (0: no MLP)")
    freeze_all_but_head(model)
    modules = dict(model.base_model.named_modules())
    layers = []
    for name, module in list(modules.items()):
        # the self-attention of each block: query/key/value projections under an `attention` parent
        if name.endswith("attention.self") and all(hasattr(module, a) for a in NEEDED):
            parent, _, child = name.rpartition(".")
            wrapped = PrefixSelfAttention(module)
            setattr(modules[parent], child, wrapped)
            layers.append(wrapped)
    if not layers:
        raise LookupError("no BERT-style self-attention (attention.self with query/key/value) to put prefixes on")
    return PrefixModel(model, layers, cfg.num_virtual_tokens, cfg.projection)
