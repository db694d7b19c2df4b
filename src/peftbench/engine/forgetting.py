"""Forgetting: how far a run moved the encoder, measured on a fixed text sample that no task trains on.

Every run (`forgetting: true`, the default) records in result.json, under `forgetting`:
  cka             linear CKA (Kornblith et al., ICML 2019) between the base encoder's and the tuned encoder's sentence
                  vectors: the mean of the last hidden state over each sentence's tokens ([CLS] and [SEP] included;
                  padding and prompt tuning's virtual tokens left out). 1: the same representation up to a rotation
                  and a scale; lower: training moved it.
  mlm_loss_base, mlm_loss_tuned, mlm_loss_delta (tuned - base)
                  the masked-LM loss (cross-entropy, mean over the masked tokens) of the checkpoint's own, pre-trained
                  MLM head read on the base encoder and on the tuned one, with the same masks (transformers'
                  DataCollatorForLanguageModeling, 15%, torch seeded with MASK_SEED). The head is the one loaded from the checkpoint
                  on both sides, so the change is the encoder's. null where the checkpoint has no MLM head (MiniLM's
                  sentence-transformers folder holds the encoder only), and `mlm_note` says why. The tiny random model
                  gets a random head (seed MASK_SEED): its losses are a random head's, its change still a measure.
  sample, n, pooling, max_length: what was measured (samples/general_en.txt: hand-written, provenance in the file)
"The tuned encoder" is the run's model as it predicts: adapters, LoRA, prefixes and prompts active. The base side
is measured before the method is applied, on the base as loaded, in eval mode (no dropout) and inside
torch.random.fork_rng, so a run's training and metrics are bit-identical with the measure on or off.
"""

from __future__ import annotations

import importlib.resources
import logging
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import logging as hf_logging

from ..models.load import resolve_path, shipped_config

SAMPLE = "general_en"
MAX_LENGTH = 128     # every sentence of the sample fits whole in a word-piece tokenizer; the tiny char model cuts
MLM_PROBABILITY = 0.15
MASK_SEED = 0
BATCH = 32


def load_sample(name: str = SAMPLE) -> list[str]:
    """The sample's sentences (lines that are neither empty nor # comments)."""
    text = importlib.resources.files("peftbench").joinpath(f"samples/{name}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA of two representations of the same n examples (n x p and n x q):
    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), columns centred (Kornblith et al. 2019, eq. 5)."""
    x, y = (np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64) for a in (x, y))
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"linear_cka needs two 2-D arrays with the same rows (>= 2), got {x.shape} and {y.shape}")
    x, y = x - x.mean(0), y - y.mean(0)
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if denominator == 0:
        raise ValueError("linear_cka is undefined for a constant representation")
    return float(np.linalg.norm(y.T @ x) ** 2 / denominator)


@contextmanager
def own_rng(device: torch.device):
    """Whatever draws random numbers inside (a random head's init) leaves the run's torch RNG streams as they were."""
    cuda = device.type == "cuda"
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):
        yield


def encoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers encoder inside the run's model (under peft's or peftbench's wrappers)."""
    return next(m for m in model.modules() if isinstance(m, PreTrainedModel)).base_model


@torch.no_grad()
def last_hidden(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """The encoder's last hidden states at the text's own positions, one (b, L, h) tensor per batch, fp32."""
    seen: list[torch.Tensor] = []
    handle = encoder_of(model).register_forward_hook(lambda module, args, out: seen.append(out[0]))
    strip = getattr(model, "text_states", None)  # prompt tuning: cut its virtual positions out
    try:
        for batch in batches:
            model(**{k: v for k, v in batch.items() if k != "labels"})
    finally:
        handle.remove()
    return [(strip(h) if strip else h).float() for h in seen]


@contextmanager
def quiet_load():
    """No load report (the MLM head's keys missing from an encoder-only folder is an answer here, not a problem) and
    no progress bar. A filter, not a level: transformers runs an extra check when its logger's level is raised."""
    names = ("transformers.modeling_utils", "transformers.distributed.tensor_parallel")
    loggers = [logging.getLogger(n) for n in names]
    drop = logging.Filter("nothing")  # passes only records of a logger named "nothing"
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    for lg in loggers:
        lg.addFilter(drop)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(drop)
        if bars:
            hf_logging.enable_progress_bar()


class _Given(torch.nn.Module):
    """Stands in for the MLM model's encoder: returns the hidden states it is given, so the head reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: torch.Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> BaseModelOutput:
        return BaseModelOutput(last_hidden_state=self.hidden)


def mlm_head(model_cfg: DictConfig, device: torch.device) -> tuple[PreTrainedModel | None, str | None]:
    """The checkpoint's masked-LM model with its encoder replaced by `_Given`, or None and why not."""
    with own_rng(device):
        try:
            if model_cfg.get("tiny"):
                torch.manual_seed(MASK_SEED)
                mlm, note = AutoModelForMaskedLM.from_config(shipped_config(model_cfg)), "tiny: a random MLM head"
            else:
                with quiet_load():
                    mlm, info = AutoModelForMaskedLM.from_pretrained(resolve_path(model_cfg), use_safetensors=True,
                                                                     output_loading_info=True)
                note = None
                prefix = mlm.base_model_prefix + "."
                if missing := [k for k in info["missing_keys"] if not k.startswith(prefix)]:
                    return None, f"the checkpoint has no MLM head weights ({len(missing)} missing, e.g. {missing[0]})"
        except (OSError, ValueError, KeyError) as e:  # no masked-LM class for this family, or nothing to load
            return None, f"no masked-LM model for this checkpoint ({str(e).strip().splitlines()[0][:160]})"
    setattr(mlm, mlm.base_model_prefix, _Given())  # the head keeps its weights (a tied decoder keeps its tensor)
    return mlm.to(device).eval(), note


@torch.no_grad()
def mlm_loss(head: PreTrainedModel, hidden: list[torch.Tensor], batches: list[dict[str, torch.Tensor]]) -> float:
    """Cross-entropy of the head's predictions at the masked tokens, summed over every batch, then averaged."""
    total, count = 0.0, 0
    for h, batch in zip(hidden, batches):
        # only the masked positions go through the head: its vocabulary-wide matmul, the costliest part, then runs
        # at ~15% of the tokens (measured: the MLM side's CPU time halves on MiniLM; bench/forgetting_cost.py)
        pick = batch["labels"] != -100
        head.base_model.hidden = h[pick].unsqueeze(0)
        ids = batch["input_ids"][pick].unsqueeze(0)
        logits = head(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()[0]
        total += torch.nn.functional.cross_entropy(logits, batch["labels"][pick], reduction="sum").item()
        count += int(pick.sum())
    head.base_model.hidden = None
    return total / count


def pooled(hidden: list[torch.Tensor], batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Mean over each sentence's real tokens (the attention mask): one row per sentence."""
    rows = []
    for h, batch in zip(hidden, batches):
        mask = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
        rows.append(((h * mask).sum(1) / mask.sum(1)).double().cpu())
    return torch.cat(rows)


class Probe:
    """Measures the base side when built (before the method is applied), the tuned side in `finish`."""

    def __init__(self, cfg: DictConfig, tokenizer, model: torch.nn.Module, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        texts = load_sample()
        features = [dict(zip(enc, values)) for enc in [tokenizer(texts, truncation=True, max_length=MAX_LENGTH)]
                    for values in zip(*enc.values())]
        chunks = [features[i:i + BATCH] for i in range(0, len(features), BATCH)]
        self.clean = [self._to(tokenizer.pad(c, return_tensors="pt")) for c in chunks]
        self.head, self.note = mlm_head(cfg.model, device)
        if self.head is not None and tokenizer.mask_token is None:
            self.head, self.note = None, "the tokenizer has no mask token"
        self.masked = []
        if self.head is not None:
            # the collator's own `seed=` refuses to run in a worker process (a joblib/ray study), so the masks are
            # drawn from torch's RNG, seeded here and restored after: the training stream is left as it was
            collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_PROBABILITY)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(MASK_SEED)
                self.masked = [self._to(collator(c)) for c in chunks]  # drawn once: both sides see the same masks
        self.n = len(texts)
        home, was_training = next(model.parameters()).device, model.training
        model.to(device).eval()  # on the device the tuned side runs on, so an untouched encoder compares exactly
        try:
            self.base = pooled(last_hidden(model, self.clean), self.clean)
            self.mlm_base = mlm_loss(self.head, last_hidden(model, self.masked), self.masked) if self.head else None
        finally:
            model.to(home).train(was_training)
        self.head = None  # freed while training (a bert-base head is ~90 MB); `finish` loads it again

    def _to(self, batch) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def finish(self, model: torch.nn.Module) -> dict[str, Any]:
        """The record's `forgetting` fields, from the tuned model (as it predicts) against the base side."""
        model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper: the same weights
        was_training = model.training
        model.eval()
        try:
            cka = linear_cka(self.base, pooled(last_hidden(model, self.clean), self.clean))
            tuned = None
            if self.mlm_base is not None:
                head, _ = mlm_head(self.cfg.model, self.device)
                tuned = mlm_loss(head, last_hidden(model, self.masked), self.masked)
        finally:
            model.train(was_training)
        rnd = lambda v: None if v is None else round(v, 6)  # noqa: E731
        return {"sample": SAMPLE, "n": self.n, "pooling": "mean", "max_length": MAX_LENGTH, "cka": cka,
                "mlm_loss_base": rnd(self.mlm_base), "mlm_loss_tuned": rnd(tuned),
                "mlm_loss_delta": None if tuned is None else round(tuned - self.mlm_base, 6), "mlm_note": self.note}
