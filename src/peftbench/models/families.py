"""The encoder families peftbench knows: one role table per `config.model_type`, naming modules by what they do.

A method asks for a role (query, value, FFN output, ...) and gets a regex over module paths for this model's family;
no method branches on the family. Roles are paths relative to one block (`blocks`, a regex of a block's path):
  query key value     the attention's input projections (ModernBERT's fused `Wqkv` stands for all three: a
                      method on query and value then adapts the whole fused projection)
  attention_output    the attention's output projection          ffn_in / ffn_out   the FFN's two projections
  attention_point     the module whose output is the attention branch after its output projection (and dropout),
  ffn_point           before the residual: where a Houlsby adapter reads and adds (same for the FFN branch)
  attention_post_norm the LayerNorm over (branch + residual) after each sublayer: where a Pfeiffer adapter reads;
  ffn_post_norm       None on pre-norm encoders (ModernBERT), which have no such LayerNorm
  attention           the module that calls transformers' attention function (prefix tuning extends its keys)
`pooler` is a path under the encoder (not per block). `lacks` says, per capability, why the family has none, with
what to use instead; methods refuse with that line. `token_types`: whether the family's tokenizer feeds
token_type_ids (the tiny tokenizer mimics it). `tiny` holds the family's own names for a tiny random config.
Adding a family is one entry in FAMILIES (docs/models.md); a model_type without one gets a table derived from its
modules (roles.py), and `model.roles.*` overrides any entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class Family:
    blocks: str
    roles: dict[str, str | None]
    pooler: str | None = None
    token_types: bool = True
    lacks: dict[str, str] = field(default_factory=dict)
    # a tiny random config's family-specific keys: "to:NAME" renames a generic key, "add:N" adds N to its value,
    # "same:KEY" defaults to another key's value, anything else is a default (models.tiny_config)
    tiny: dict = field(default_factory=dict)


BERT_ROLES = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
              "attention_output": "attention.output.dense", "ffn_in": "intermediate.dense", "ffn_out": "output.dense",
              "attention_point": "attention.output.dropout", "ffn_point": "output.dropout",
              "attention_post_norm": "attention.output.LayerNorm", "ffn_post_norm": "output.LayerNorm",
              "attention": "attention.self"}
BERT_BLOCKS = r"encoder\.layer\.\d+"

FAMILIES: dict[str, Family] = {
    "bert": Family(BERT_BLOCKS, BERT_ROLES, pooler="pooler.dense"),
    "roberta": Family(BERT_BLOCKS, BERT_ROLES, pooler="pooler.dense", token_types=False,
                      tiny={"max_position_embeddings": "add:2"}),  # positions start after padding_idx
    "xlm-roberta": Family(BERT_BLOCKS, BERT_ROLES, pooler="pooler.dense", token_types=False,
                          tiny={"max_position_embeddings": "add:2"}),
    "electra": Family(BERT_BLOCKS, BERT_ROLES, tiny={"embedding_size": "same:hidden_size"}),
    "deberta-v2": Family(BERT_BLOCKS, {**BERT_ROLES, "query": "attention.self.query_proj",
                                       "key": "attention.self.key_proj", "value": "attention.self.value_proj",
                                       "attention": None},
                         lacks={"prefix": "its disentangled relative-position attention scores content and position "
                                          "inside its own module, with no attention function to hand extra keys to; "
                                          "use prompt or lora"},
                         # DeBERTa-v3's own attention: relative positions in buckets, no absolute positions
                         tiny={"relative_attention": True, "pos_att_type": "p2c|c2p", "position_buckets": 16,
                               "norm_rel_ebd": "layer_norm", "share_att_key": True, "position_biased_input": False,
                               "max_relative_positions": -1}),
    "distilbert": Family(r"transformer\.layer\.\d+", {
        "query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
        "attention_output": "attention.out_lin", "ffn_in": "ffn.lin1", "ffn_out": "ffn.lin2",
        "attention_point": "attention.out_lin", "ffn_point": "ffn.dropout",
        "attention_post_norm": "sa_layer_norm", "ffn_post_norm": "output_layer_norm", "attention": "attention"},
        token_types=False, lacks={"token_types": "DistilBERT has no token type embeddings"},
        tiny={"hidden_size": "to:dim", "num_hidden_layers": "to:n_layers", "num_attention_heads": "to:n_heads",
              "intermediate_size": "to:hidden_dim"}),
    "albert": Family(r"encoder\.albert_layer_groups\.\d+\.albert_layers\.\d+", {
        # one layer group shared by all 12 layers: a method on it adds one set of parameters, reused at every depth
        "query": "attention.query", "key": "attention.key", "value": "attention.value",
        "attention_output": "attention.dense", "ffn_in": "ffn", "ffn_out": "ffn_output",
        "attention_point": "attention.output_dropout", "ffn_point": "ffn_output",
        "attention_post_norm": "attention.LayerNorm", "ffn_post_norm": "full_layer_layer_norm",
        "attention": "attention"}, pooler="pooler", tiny={"embedding_size": 16}),
    "modernbert": Family(r"layers\.\d+", {
        "query": "attn.Wqkv", "key": "attn.Wqkv", "value": "attn.Wqkv",
        "attention_output": "attn.Wo", "ffn_in": "mlp.Wi", "ffn_out": "mlp.Wo",
        "attention_point": "attn.out_drop", "ffn_point": "mlp.Wo",
        "attention_post_norm": None, "ffn_post_norm": None, "attention": "attn"},
        token_types=False,
        lacks={"bias": "ModernBERT has no bias terms (its config's attention_bias, mlp_bias and norm_bias are false); "
                       "use ln_tuning or lora",
               "post_norm": "ModernBERT is pre-norm: no LayerNorm follows a sublayer's residual for a Pfeiffer "
                            "adapter to read (original_ln_before); use adapter_houlsby or "
                            "method.original_ln_before=false"},
        tiny={"global_attn_every_n_layers": 2, "local_attention": 16, "bos_token_id": 2, "eos_token_id": 3,
              "cls_token_id": 2, "sep_token_id": 3}),
}
SUPPORTED = sorted(FAMILIES)


def model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", None) or type(model).__name__)


def family_of(model: nn.Module) -> Family:
    """The role table of this model's family: families.py's entry, else one derived from the model's modules
    (roles.py), with `model.roles` (kept on the model by load_model as `peftbench_roles`) over either. A LookupError
    (the method's refusal) names what to set when not even the blocks can be found."""
    from dataclasses import replace

    from .roles import derive, missing_line

    kind = model_type(model)
    given = {k: v for k, v in (getattr(model, "peftbench_roles", None) or {}).items() if v is not None}
    if kind in FAMILIES:
        family = FAMILIES[kind]
    else:
        blocks, roles, pooler, lacks = derive(model)
        if blocks is None and not given.get("blocks"):
            raise LookupError(f"model_type '{kind}' has no role table (known: {', '.join(SUPPORTED)}) and no list of "
                              "blocks was found among its modules: set model.roles.blocks=REGEX (e.g. "
                              "'encoder\\.layer\\.\\d+') and the roles the method needs (model.roles.query=PATH, "
                              "...), or name modules with method.target_modules")
        for role, path in roles.items():
            if path is None:
                lacks.setdefault(role, missing_line(kind, role, blocks))
        family = Family(blocks or "", roles, pooler=pooler, lacks=lacks)
    if not given:
        return family
    unknown = sorted(set(given) - set(family.roles) - {"blocks", "pooler"})
    if unknown:
        raise ValueError(f"model.roles has unknown roles {unknown}; known: blocks, pooler, {', '.join(family.roles)}")
    roles = {**family.roles, **{k: v for k, v in given.items() if k not in ("blocks", "pooler")}}
    return replace(family, blocks=given.get("blocks", family.blocks), pooler=given.get("pooler", family.pooler),
                   roles=roles, lacks={k: v for k, v in family.lacks.items() if k not in given})


def describe(model: nn.Module) -> str:
    """`model_type` and where it came from, for refusal messages."""
    path = getattr(getattr(model, "config", None), "name_or_path", "") or "random init"
    return f"{model_type(model)}, {path}"


def role_paths(family: Family, roles: list[str], what: str) -> list[str]:
    """Each role's path under a block, unique (a fused qkv answers for query, key and value once)."""
    unknown = [r for r in roles if r not in family.roles]
    if unknown:
        raise ValueError(f"{what} has unknown roles {unknown}; known: {sorted(family.roles)}")
    paths = []
    for r in roles:
        path = family.roles[r]
        if path is None:
            raise LookupError(family.lacks.get(r, f"this family has no '{r}' module"))
        if path not in paths:
            paths.append(path)
    return paths


def role_regex(model: nn.Module, roles: list[str], what: str, suffix: str = "") -> str:
    """A regex (full match, as peft reads a string target_modules) over module paths of the model for `roles`."""
    family = family_of(model)
    alts = "|".join(re.escape(p) for p in role_paths(family, roles, what))
    return rf"(?:.*\.)?{family.blocks}\.(?:{alts}){suffix}"


def modules_for(model: nn.Module, role: str) -> list[tuple[str, nn.Module]]:
    """(path, module) of the role in every block, each distinct module once (ALBERT's shared layer is one)."""
    family = family_of(model)
    path = family.roles.get(role)
    if path is None:
        return []
    pattern = re.compile(rf"(?:.*\.)?{family.blocks}\.{re.escape(path)}")
    seen, found = set(), []
    for name, module in model.named_modules(remove_duplicate=False):
        if pattern.fullmatch(name) and id(module) not in seen:
            seen.add(id(module))
            found.append((name, module))
    return found
