"""Prompt tuning (Lester et al. 2021): k learned virtual-token embeddings inserted into the embedded input.

The base model is frozen except its task head. Two placements:
  before_cls: P1..Pk [CLS] x [SEP]  -- the reference study's and PEFT's; BERT's pooler then reads P1, not [CLS]
  after_cls:  [CLS] P1..Pk x [SEP]  -- the pooler keeps reading [CLS]
The attention mask and token types are extended; QA start/end labels are shifted in and logits shifted back out
(token labels get -100 at the virtual positions, whose per-token logits are cut back out),
so callers never see the virtual positions. Any family works: the rows go in through `inputs_embeds` beside the
model's own input embeddings (token types only where the family has them; rotary ModernBERT numbers positions itself).
`text_positions`: `shift` (the default, PEFT's) lets BERT number the whole sequence, so every real token's absolute
position moves right by k and [CLS] sits at k under before_cls; `keep` gives the text the position ids 0..L-1 the
frozen model was trained with (as WARP, Hambardzumyan et al. 2021, does by permuting position ids) and the virtual
tokens position 0, a fixed embedding their learned rows absorb.
`reparam: residual` (config `prompt_residual`) is Residual Prompt Tuning (Razdaibiedina et al., ACL 2023): the rows
reach the model as P + LN(W_up ReLU(W_down P)), one bottleneck MLP shared by all rows and trained with them; the
paper reports it makes prompt tuning learn more, and depend less on the rate and init, on BERT-base and T5. The
saved delta holds the rows it produces, not the MLP (`fold_for_delta`).
`to_peft` gives a classification run as peft's prompt tuning (same rows, same placement) for `peftbench export`.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

POSITIONS = {"before_cls": 0, "after_cls": 1}
INITS = ("normal", "vocab")
REPARAMS = ("none", "residual")
TEXT_POSITIONS = ("shift", "keep")


class ResidualReparam(nn.Module):
    """P + LN(W_up ReLU(W_down P)), row by row; the skip keeps the rows' own gradient path (the paper's MLP1)."""

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, bottleneck), nn.ReLU(), nn.Linear(bottleneck, dim), nn.LayerNorm(dim))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return rows + self.mlp(rows)


class PromptModel(nn.Module):
    def __init__(self, model: nn.Module, num_virtual_tokens: int, position: str, init: str,
                 reparam: str = "none", bottleneck: int = 0, text_positions: str = "shift") -> None:
        super().__init__()
        self.model = model
        self.at = POSITIONS[position]
        self.k = num_virtual_tokens
        self.keep_positions = text_positions == "keep"
        words = model.get_input_embeddings()
        self.soft_prompt = nn.Embedding(num_virtual_tokens, words.embedding_dim)
        if init == "vocab":  # start from real token embeddings (Lester et al.'s sampled-vocabulary init)
            rows = torch.randint(0, words.num_embeddings, (num_virtual_tokens,))
            self.soft_prompt.weight.data.copy_(words.weight.data[rows])
        else:
            nn.init.normal_(self.soft_prompt.weight, std=0.02)
        self.reparam = ResidualReparam(words.embedding_dim, bottleneck) if reparam == "residual" else None

    def prompts(self) -> torch.Tensor:
        """The k rows the model sees: the learned embeddings, through the reparameterisation if there is one."""
        rows = self.soft_prompt.weight
        return rows if self.reparam is None else self.reparam(rows)

    def fold_for_delta(self, tensors: dict[str, torch.Tensor], method: dict) -> tuple[dict[str, torch.Tensor], dict]:
        """The delta in inference form: the rows the MLP produces stand in for the learned rows and the MLP is dropped
        (as the paper does after training), so the run reloads as plain prompt tuning with the same outputs."""
        if self.reparam is None:
            return tensors, method
        kept = {name: t for name, t in tensors.items() if not name.startswith("reparam.")}
        with torch.no_grad():
            kept["soft_prompt.weight"] = self.prompts().cpu().contiguous()
        return kept, {**method, "reparam": "none"}

    def text_states(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states at the text's own positions, the virtual ones cut out (forgetting.py pools over these)."""
        return torch.cat([hidden[:, : self.at], hidden[:, self.at + self.k :]], dim=1)

    def _insert(self, x: torch.Tensor, piece: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, : self.at], piece, x[:, self.at :]], dim=1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, labels=None, **kwargs):
        b = input_ids.shape[0]
        token_labels = labels is not None and labels.dim() == 2 and not labels.is_floating_point()  # not multi-label
        if token_labels and labels.shape == input_ids.shape:  # one label per token
            labels = self._insert(labels, labels.new_full((b, self.k), -100))  # the virtual tokens have none
        if labels is not None:
            kwargs["labels"] = labels
        embeds = self.model.get_input_embeddings()(input_ids)
        prompt = self.prompts().unsqueeze(0).expand(b, -1, -1).to(embeds.dtype)
        embeds = self._insert(embeds, prompt)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = self._insert(attention_mask, attention_mask.new_ones(b, self.k))
        if token_type_ids is not None:  # only when given: DistilBERT and ModernBERT take none
            kwargs["token_type_ids"] = self._insert(token_type_ids, token_type_ids.new_zeros(b, self.k))
        if self.keep_positions:
            text = torch.arange(input_ids.shape[1], device=input_ids.device).expand(b, -1)
            kwargs["position_ids"] = self._insert(text, text.new_zeros(b, self.k))
        if start_positions is not None:  # label positions move right past the virtual tokens
            start_positions = torch.where(start_positions >= self.at, start_positions + self.k, start_positions)
            end_positions = torch.where(end_positions >= self.at, end_positions + self.k, end_positions)
            kwargs.update(start_positions=start_positions, end_positions=end_positions)
        out = self.model(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        for key in ("start_logits", "end_logits", "logits"):
            per_token = key != "logits" or (out.get(key) is not None and out[key].dim() == 3)  # not a row's classes
            if out.get(key) is not None and per_token:
                logits = out[key]
                out[key] = torch.cat([logits[:, : self.at], logits[:, self.at + self.k :]], dim=1)
        return out


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    from . import freeze_all_but_head

    if cfg.position not in POSITIONS:
        raise ValueError(f"method.position='{cfg.position}' is unknown; pick one of {sorted(POSITIONS)}")
    if cfg.init not in INITS:
        raise ValueError(f"method.init='{cfg.init}' is unknown; pick one of {list(INITS)}")
    reparam = cfg.get("reparam", "none")
    if reparam not in REPARAMS:
        raise ValueError(f"method.reparam='{reparam}' is unknown; pick one of {list(REPARAMS)}")
    bottleneck = cfg.get("bottleneck", 0)
    if reparam != "none" and (not isinstance(bottleneck, int) or isinstance(bottleneck, bool) or bottleneck < 1):
        raise ValueError(f"method.bottleneck={bottleneck} must be a whole number >= 1 for reparam={reparam}")
    text_positions = cfg.get("text_positions", "shift")
    if text_positions not in TEXT_POSITIONS:
        raise ValueError(f"method.text_positions='{text_positions}' is unknown; pick one of {list(TEXT_POSITIONS)}")
    if model.get_input_embeddings() is None:
        raise LookupError("the model exposes no input embeddings to put virtual tokens beside")
    freeze_all_but_head(model)
    return PromptModel(model, cfg.num_virtual_tokens, cfg.position, cfg.init, reparam, bottleneck, text_positions)


def to_peft(model: PromptModel, cfg: DictConfig) -> nn.Module:
    """The run as peft's prompt tuning for sequence classification, which places the rows as before_cls with shifted
    positions does (and token type 0); the head goes to modules_to_save, the rows to the prompt encoder."""
    from peft import PromptTuningConfig, get_peft_model

    from . import head_names

    inner = model.model
    if not type(inner).__name__.endswith("ForSequenceClassification"):
        raise LookupError("peft's prompt tuning returns logits for the virtual positions of a QA or token head too, where this "
                          "run removes them")
    if model.at != POSITIONS["before_cls"] or model.keep_positions:
        raise LookupError("peft's prompt tuning puts the rows before [CLS] and shifts the text's positions; this run "
                          f"has position={cfg.position} text_positions={cfg.get('text_positions', 'shift')}")
    config = PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=model.k, token_dim=model.soft_prompt.embedding_dim,
                                num_transformer_submodules=1, num_attention_heads=inner.config.num_attention_heads,
                                num_layers=inner.config.num_hidden_layers, modules_to_save=head_names(inner))
    rows = model.prompts().detach()
    peft_model = get_peft_model(inner, config)
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(rows)
    return peft_model
