"""One base in memory, many task deltas on it: `MultiTask().add(run_dir)` for each run, then `predict(task, inputs)`.

Design: instead of switching one model between deltas (copy the delta in, restore the base's tensors after,
un-inject LoRA...), every task gets its own light module tree whose frozen tensors ARE the base's tensors:
  1. the base is loaded once (per head type: BERT's QA model has no pooler, so a QA run brings a second base);
  2. for a task, the model with its head is built on the meta device (no memory), its encoder is replaced by a
     deep copy of the shared encoder that copies the modules but not the tensors (deepcopy memo maps each base
     tensor to itself), and only the small head is materialized;
  3. the method is re-applied as in training (bitfit marks biases, peft injects LoRA A/B beside the shared
     weights, prompt tuning wraps the model) and the delta's tensors are attached with `assign=True`: the task's
     modules get new parameter objects for exactly the trained tensors, and the base is never written to.
So the memory is one base + per task its delta and head (+ the modules' small bookkeeping); `predict` on any
task, in any order, needs no switching and cannot leak one task's tensors into another. Full-FT runs work too,
but their delta is a whole model. LoRA merging (delta.load_run(merge=True)) would write into the shared
weights, so it is for single-run serving only.
"""

from __future__ import annotations

import copy
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ..engine.delta import Run, attach, base_fingerprint, check_base, model_config, read_meta, read_tensors, task_head
from ..errors import UserError
from ..models.methods import apply_method, head_names
from ..models.load import HEADS, load_model, load_tokenizer
from .serve import Input, predict


class MultiTask:
    def __init__(self, model_overrides: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.model_overrides = model_overrides
        self.device = torch.device(device)
        self.model_name: str | None = None
        self.bases: dict[str, tuple[torch.nn.Module, Any, str]] = {}  # head -> (encoder, config, fingerprint)
        self.tokenizer = None
        self.runs: dict[str, Run] = {}

    def _base(self, model_cfg: DictConfig, head: str, seed: int) -> tuple[torch.nn.Module, Any, str]:
        if head not in self.bases:
            with torch.random.fork_rng():  # a random base (model=tiny) is a function of the run's seed
                torch.manual_seed(seed)
                model = load_model(model_cfg, head)
            fingerprint = base_fingerprint(model)
            encoder = model.base_model.to(self.device).requires_grad_(False)
            self.bases[head] = (encoder, model.config, fingerprint)
        return self.bases[head]

    def _skeleton(self, head: str, num_labels: int) -> torch.nn.Module:
        """The task's model: a fresh head around modules that share every tensor of the loaded encoder."""
        encoder, config, _ = self.bases[head]
        config = copy.deepcopy(config)
        if head == "seq_cls":
            config.num_labels = num_labels
        with torch.device("meta"):
            model = HEADS[head].from_config(config)
        shared = {id(t): t for t in chain(encoder.parameters(), encoder.buffers())}
        setattr(model, model.base_model_prefix, copy.deepcopy(encoder, memo=shared))
        for name in head_names(model):
            getattr(model, name).to_empty(device=self.device)  # the delta fills it in
        return model

    def add(self, run_dir: Path, name: str | None = None) -> str:
        """Load a run's delta onto the shared base; returns the name to predict with (default: the task's)."""
        run_dir = Path(run_dir)
        meta = read_meta(run_dir)
        tensors = read_tensors(run_dir, meta)
        model_cfg, head = model_config(meta, self.model_overrides), task_head(meta)
        name = name or meta["task"]["name"]
        if name in self.runs:
            raise UserError(f"task name '{name}' is taken ({run_dir}): add it under another name")
        if self.model_name is not None and model_cfg.name != self.model_name:
            raise UserError(f"{run_dir} was trained on model '{model_cfg.name}' but this MultiTask serves "
                            f"'{self.model_name}': use one MultiTask per base")
        _, _, fingerprint = self._base(model_cfg, head, meta.get("seed", 42))
        check_base(fingerprint, meta, run_dir, model_cfg)
        model = self._skeleton(head, meta.get("num_labels", 2))
        model = apply_method(model, OmegaConf.create(meta["method"]), model_cfg.name)
        attach(model, {k: v.to(self.device) for k, v in tensors.items()}, run_dir)
        model.requires_grad_(False)
        self.model_name = model_cfg.name
        self.tokenizer = self.tokenizer or load_tokenizer(model_cfg)
        self.runs[name] = Run(model.eval(), self.tokenizer, meta, head, self.device)
        return name

    def predict(self, task: str, inputs: list[Input], batch_size: int = 64) -> list[dict[str, Any]]:
        """Answers of task `task` for `inputs` (texts, text pairs, or (question, context) pairs)."""
        if task not in self.runs:
            raise UserError(f"no task '{task}' loaded: loaded are {sorted(self.runs)}")
        return predict(self.runs[task], inputs, batch_size)
