"""Deep prompt tuning: prefix tuning (Li & Liang 2021) / P-tuning v2 (Liu et al. 2022) on an encoder.

Every layer's self-attention gets k trainable key and value vectors in front of its own keys and values; every
query can attend to them, they attend to nothing (they are not tokens), and the attention mask gets k always-visible
columns. Token positions, lengths and outputs are unchanged, so QA labels need no shifting.
  projection: 0    the prefixes are free parameters, k x layers x 2 x hidden (P-tuning v2's default)
  projection: N    reparameterised: k embeddings of width hidden -> Linear(hidden, N) -> tanh -> Linear(N,
                   layers x 2 x hidden), trained together (Li & Liang's stabiliser); the MLP is part of the delta
Initialisation: N(0, 1), as nn.Embedding (and so peft and P-tuning v2) does.
peft's own prefix tuning refuses BERT under transformers 5 ("Model does not support past key values"). Here each
block's attention module (the family's `attention` role, families.py) gets a config stand-in that names a
registered attention function, `peftbench_prefix`: it puts the layer's prefixes in front of the keys and values
the module computed (after rotary embeddings, on ModernBERT: prefixes have no position), extends the mask, and calls
the model's configured implementation (eager, sdpa, ...). So any family whose attention calls transformers'
attention functions works; DeBERTa's disentangled attention does not, and is refused. ALBERT shares one layer
across depth, so it gets one set of prefixes. Nothing to merge: the prefixes are not weights.
"""

from __future__ import annotations

import sys

import torch
from omegaconf import DictConfig
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from ..families import family_of, modules_for


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


class PrefixConfig:
    """Stands in for one attention module's config: it reports the prefix attention function (below) as the
    implementation and forwards everything else to the model's config, so `_attn_implementation` stays live there.
    `kv` holds this layer's (k, hidden) prefix keys and values during a forward (set by PrefixModel)."""

    def __init__(self, config, eager) -> None:
        self.__dict__.update(inner=config, eager=eager, kv=None)

    @property
    def _attn_implementation(self) -> str:
        return IMPLEMENTATION

    def __getattr__(self, name: str):
        return getattr(self.__dict__["inner"], name)


def prefix_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs):
    """The configured attention function with the layer's prefix keys/values in front of its own (b, heads, t, d)."""
    cfg = module.config
    b, heads, _, d = key.shape
    prefix_k, prefix_v = (p.to(key.dtype).view(1, -1, heads, d).transpose(1, 2).expand(b, -1, -1, -1)
                          for p in cfg.kv)
    key, value = torch.cat([prefix_k, key], dim=2), torch.cat([prefix_v, value], dim=2)
    if attention_mask is not None:  # 4-D (b, 1, t|1, t): boolean "may attend" or additive 0 / -inf
        shape = (*attention_mask.shape[:-1], prefix_k.shape[2])
        boolean = attention_mask.dtype == torch.bool
        visible = attention_mask.new_ones(shape) if boolean else attention_mask.new_zeros(shape)
        attention_mask = torch.cat([visible, attention_mask], dim=-1)
    kwargs.pop("cache", None)  # an encoder keeps no cache; prefixes play its part
    impl = cfg.inner._attn_implementation
    attend = cfg.eager if impl == "eager" else ALL_ATTENTION_FUNCTIONS[impl]
    return attend(module, query, key, value, attention_mask, **kwargs)


IMPLEMENTATION = "peftbench_prefix"
AttentionInterface.register(IMPLEMENTATION, prefix_attention)


class PrefixModel(nn.Module):
    def __init__(self, model: nn.Module, layers: list[PrefixConfig], tokens: int, projection: int) -> None:
        super().__init__()
        self.model = model
        self.layers = layers  # a plain list of the attention modules' PrefixConfig: no parameters of their own
        self.prefix = PrefixEncoder(len(layers), tokens, model.config.hidden_size, projection)

    def forward(self, *args, **kwargs):
        kv = self.prefix()
        for i, layer in enumerate(self.layers):
            layer.__dict__["kv"] = (kv[i, 0], kv[i, 1])
        try:
            return self.model(*args, **kwargs)
        finally:
            for layer in self.layers:
                layer.__dict__["kv"] = None  # no graph kept alive between steps


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import freeze_all_but_head

    if cfg.num_virtual_tokens < 1 or cfg.projection < 0:
        raise ValueError("method.num_virtual_tokens must be >= 1 and method.projection >= 0 (0: no MLP)")
    family = family_of(model)
    if "prefix" in family.lacks:
        raise LookupError(family.lacks["prefix"])
    attentions = modules_for(model, "attention")
    if not attentions:
        raise LookupError("no 'attention' module in this family's blocks to put prefixes on; use prompt or lora")
    freeze_all_but_head(model)
    layers = []
    for _, module in attentions:  # ALBERT's shared layer: one module, one set of prefixes for every depth
        # the family's own eager attention function: the one the module falls back to for "eager"
        eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
        if eager is None or not hasattr(module, "config"):
            raise LookupError(f"{type(module).__name__} does not call transformers' attention functions; "
                              "use prompt or lora")
        module.config = PrefixConfig(module.config, eager)
        layers.append(module.config)
    return PrefixModel(model, layers, cfg.num_virtual_tokens, cfg.projection)


def to_peft(model: nn.Module, cfg: DictConfig) -> nn.Module:
    """No peft form to export to: the prefixes would load into peft's prefix tuning, which cannot run these models."""
    raise LookupError("peft's prefix tuning refuses encoders under transformers 5 (\"Model does not support past key "
                      "values\"), so plain peft could not load it")
