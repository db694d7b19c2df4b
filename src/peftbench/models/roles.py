"""The role table of an encoder with no entry in families.py, found from its modules, and `model.roles` overrides.

`derive(model)` reads one encoder block the way a person would:
  blocks              the deepest `nn.ModuleList` of identical blocks holding the most Linear layers; its path (numbers
                      as \\d+, the encoder's prefix dropped) is the block regex
  query key value     peft's own LoRA/IA3 target-module table for the `model_type` (peft.utils.constants) names query
                      and value (IA3's: key), else the usual names (query, q_proj, q_lin, Wq...); a fused projection
                      (Wqkv, qkv, in_proj) stands for all three
  attention           the module holding the query projection (where prefix tuning extends the keys)
  attention_output    the other Linear of that module's subtree (out_proj, output.dense, out_lin, Wo, dense)
  ffn_in ffn_out      by shape outside the attention: hidden -> wider, and wider -> hidden
  *_point             the Dropout called right after an output projection in its module, else the projection
  *_post_norm         the first norm called after each output projection, when one runs after the FFN (post-norm);
                      a block where none does (pre-norm) has none
The call order comes from one tiny forward pass with hooks (registration order where the weights are on the meta
device).
`pooler` is the encoder's `pooler.dense` or `pooler` Linear. What cannot be found is None, and a method asking for it
gets one line naming the `model.roles.<role>` to set. `model.roles` (paths relative to one block; `blocks` a regex,
`pooler` a path under the encoder) overrides any entry, of a derived table or of a families.py one.
"""

from __future__ import annotations

import re

from torch import nn

ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out", "attention_point", "ffn_point",
         "attention_post_norm", "ffn_post_norm", "attention")
NAMES = {"query": ("query", "q", "q_proj", "q_lin", "query_proj", "wq"),
         "key": ("key", "k", "k_proj", "k_lin", "key_proj", "wk"),
         "value": ("value", "v", "v_proj", "v_lin", "value_proj", "wv"),
         "fused": ("wqkv", "qkv", "qkv_proj", "in_proj", "c_attn", "query_key_value")}


def _peft_names(kind: str) -> dict[str, str]:
    """query/key/value names from peft's target-module tables for this model_type (empty when peft has none)."""
    from peft.utils import constants as c

    lora = c.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(kind) or []
    ia3 = c.TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING.get(kind) or []
    found = dict(zip(("query", "value"), lora)) if len(lora) == 2 else {}
    if len(ia3) >= 2:
        found.setdefault("key", ia3[0])
    return found


def _blocks(encoder: nn.Module) -> tuple[str, nn.Module] | None:
    """(path of the block list with its indices as \\d+, the first block) for the best ModuleList under `encoder`."""
    best, score = None, (0, 0)
    for name, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and name:
            linears = sum(isinstance(m, nn.Linear) for m in module.modules())
            key = (linears, name.count("."))  # most Linear layers; on a tie the deepest list (ALBERT's layers)
            if linears and key > score:
                best, score = (name, module[0]), key
    if best is None:
        return None
    path = re.sub(r"\.(\d+)(?=\.|$)", ".#", best[0])
    return re.escape(path).replace("\\#", "#").replace("#", r"\d+") + r"\.\d+", best[1]


def call_order(model: nn.Module, block: nn.Module) -> list[str]:
    """The block's modules in the order its forward calls them (one tiny forward pass with hooks); registration
    order when the model cannot run here (weights on the meta device)."""
    import torch

    names = {id(m): n for n, m in block.named_modules() if n}
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: order.append(names[id(mod)]))
             for n, m in block.named_modules() if n]
    try:
        if any(p.is_meta for p in model.parameters()):
            raise RuntimeError("meta")
        with torch.no_grad():
            model(input_ids=torch.full((1, 8), 5, dtype=torch.long), attention_mask=torch.ones(1, 8, dtype=torch.long))
    except Exception:  # no forward here: the order the modules were registered in
        order = []
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(order)) or [n for n, _ in block.named_modules() if n]


def _after(block: nn.Module, order: list[str], target: str, kind: str, same_parent: bool) -> str | None:
    """The first module called after `target` that is a Dropout (kind "dropout") or a *Norm (kind "norm"), within the
    same parent module when `same_parent`; None if another Linear layer runs first."""
    parent = target.rpartition(".")[0]
    for name in order[order.index(target) + 1 :] if target in order else []:
        module = block.get_submodule(name)
        if same_parent and name.rpartition(".")[0] != parent:
            continue
        if kind == "dropout" and isinstance(module, nn.Linear):
            return None
        if (kind == "norm" and "Norm" in type(module).__name__) or (kind == "dropout" and isinstance(module, nn.Dropout)):
            return name
    return None


def derive(model: nn.Module) -> tuple[str | None, dict[str, str | None], str | None, dict[str, str]]:
    """(blocks regex, roles, pooler path, lacks) of `model` from its module names and shapes."""
    kind = str(getattr(model.config, "model_type", type(model).__name__))
    encoder = getattr(model, getattr(model, "base_model_prefix", ""), None) or model
    roles: dict[str, str | None] = dict.fromkeys(ROLES)
    lacks: dict[str, str] = {}
    found = _blocks(encoder)
    pooler = next((p for p in ("pooler.dense", "pooler") if isinstance(_get(encoder, p), nn.Linear)), None)
    if found is None:
        return None, roles, pooler, lacks
    blocks, block = found
    linears = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    leaf = {n: n.rpartition(".")[2].lower() for n in linears}
    given = _peft_names(kind)
    for role in ("query", "key", "value"):
        want = (given[role].rpartition(".")[2].lower(),) if role in given else NAMES[role]
        roles[role] = next((n for n in linears if leaf[n] in want), None)
    if not all(roles[r] for r in ("query", "key", "value")):
        fused = next((n for n in linears if leaf[n] in NAMES["fused"]), None)
        if fused:
            roles.update(query=fused, key=fused, value=fused)
    hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "dim", None)
    if roles["query"]:
        roles["attention"] = roles["query"].rpartition(".")[0] or None
        attn = roles["attention"]
        inside = [n for n in linears if attn and n.startswith(attn + ".") and n not in (roles["query"], roles["key"],
                                                                                         roles["value"])]
        # BERT's attention.output.dense sits beside attention.self, not inside it: look one level up too
        up = attn.rpartition(".")[0] if attn else ""
        beside = [n for n in linears if up and n.startswith(up + ".") and not n.startswith(attn + ".")]
        roles["attention_output"] = (inside or beside or [None])[0]
    out_of_attention = [n for n in linears if n != roles["attention_output"] and n not in
                        (roles["query"], roles["key"], roles["value"])]
    if hidden:
        roles["ffn_in"] = next((n for n in out_of_attention if linears[n].in_features == hidden
                                and linears[n].out_features > hidden), None)
        roles["ffn_out"] = next((n for n in out_of_attention if linears[n].out_features == hidden
                                 and linears[n].in_features > hidden), None)
    order = call_order(model, block)
    for out, point in (("attention_output", "attention_point"), ("ffn_out", "ffn_point")):
        if roles[out]:
            roles[point] = _after(block, order, roles[out], "dropout", True) or roles[out]
    # post-norm: a norm runs after the FFN's output projection (BERT, ALBERT, DistilBERT); pre-norm: none does
    post = bool(roles["ffn_out"]) and _after(block, order, roles["ffn_out"], "norm", False) is not None
    for out, norm in (("attention_output", "attention_post_norm"), ("ffn_out", "ffn_post_norm")):
        if roles[out] and post:
            roles[norm] = _after(block, order, roles[out], "norm", False)
    if not post:
        lacks["post_norm"] = (f"{kind}'s blocks run no norm after the FFN (pre-norm): no LayerNorm follows a "
                              "sublayer's residual for a Pfeiffer adapter to read; use adapter_houlsby, or set "
                              "model.roles.attention_post_norm / model.roles.ffn_post_norm")
    if not any(m.bias is not None for m in linears.values()):
        lacks["bias"] = f"{kind} has no bias terms in its blocks' Linear layers; use ln_tuning or lora"
    return blocks, roles, pooler, lacks


def _get(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def missing_line(kind: str, role: str, blocks: str | None) -> str:
    """The one line a method gets for a role that could not be found."""
    where = f"relative to one block ({blocks})" if blocks else "relative to one block"
    return (f"model_type '{kind}' has no role table in families.py and its '{role}' module was not found from its "
            f"module names: set model.roles.{role}=PATH {where}, or name modules with method.target_modules")
