"""The data path of the loop: tokenized rows packed once into arrays, batches sliced from them, batch order, schedule.

`Packed` holds a split as padded numpy arrays, so a batch is one slice: no `datasets` row access and no
`tokenizer.pad` per step. `Packed.batch` pads to the batch's longest row rounded up to `pad_multiple` (8 on CUDA:
tensor-core friendly, and few distinct shapes for torch.compile and the kernels' first-time costs) and, on CUDA,
copies from pinned memory with `non_blocking`, so the host never waits for the GPU inside a step.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
from omegaconf import DictConfig

BUCKET_BATCHES = 50  # sort by length within windows of this many batches: little padding, order still random
SEQUENCE_COLUMNS = ("input_ids", "token_type_ids", "attention_mask")  # padded per batch; others are one value per row


class Packed:
    """One split, tokenized once: sequence columns as a (rows x longest) array, label columns as one value per row.

    Token columns are stored as int32 (half the memory of SST-2's 67k rows) and the attention mask is rebuilt from
    the row lengths (rows are right-padded), so only ids and token types take memory. `pads` names further columns
    that run along the tokens and their padding value (token classification's labels, padded with -100); any other
    column is one value per row, which may itself be a vector (multi-label targets).
    """

    def __init__(self, columns: dict[str, np.ndarray], lengths: np.ndarray, pad_id: int,
                 pads: dict[str, int] | None = None) -> None:
        self.columns, self.lengths, self.pad_id = columns, lengths, pad_id
        self.pads = {"input_ids": pad_id, "token_type_ids": 0, **(pads or {})}  # each sequence column's padding

    def sequence(self, name: str) -> bool:
        return name in self.pads or name == "attention_mask"

    @classmethod
    def from_lists(cls, columns: dict[str, list], pad_id: int = 0, pads: dict[str, int] | None = None) -> "Packed":
        """From a tokenizer's output (lists of token lists) plus per-row label lists."""
        rows = columns["input_ids"]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = -(-int(lengths.max()) // 8) * 8 if len(rows) else 0  # batches round up to 8 without a copy
        packed = {}
        fill = {"input_ids": pad_id, **(pads or {})}
        for name, values in columns.items():
            if name == "attention_mask":
                packed[name] = None  # rebuilt per batch from the lengths
            elif name in SEQUENCE_COLUMNS or name in fill:
                arr = np.full((len(rows), width), fill.get(name, 0), dtype=np.int32)
                for i, r in enumerate(values):
                    arr[i, : len(r)] = r
                packed[name] = arr
            else:
                packed[name] = np.asarray(values, dtype=np.int64)
        return cls(packed, lengths, pad_id, pads)

    @property
    def column_names(self) -> list[str]:
        return list(self.columns)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, name: str) -> list:
        """A column as lists, without padding (sequence columns) or one int per row (labels)."""
        col = self.columns[name]
        if name == "attention_mask":
            return [[1] * n for n in self.lengths.tolist()]
        if self.sequence(name):
            return [row[:n].tolist() for row, n in zip(col, self.lengths)]
        return col.tolist()

    def select(self, rows: Iterable[int]) -> "Packed":
        idx = np.asarray(list(rows), dtype=np.int64)
        width = int(self.lengths[idx].max()) if len(idx) else 0
        return Packed({k: v if v is None else v[idx, :width] if self.sequence(k) else v[idx]
                       for k, v in self.columns.items()}, self.lengths[idx], self.pad_id,
                      {k: v for k, v in self.pads.items() if k not in ("input_ids", "token_type_ids")})

    def batch(self, rows, device: torch.device | None = None, pad_multiple: int = 1,
              names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Rows `rows` as tensors padded to their longest row (rounded up to `pad_multiple`), on `device`."""
        idx = np.asarray(rows, dtype=np.int64)
        width = -(-int(self.lengths[idx].max()) // pad_multiple) * pad_multiple
        out = {}
        for name in names or self.columns:
            col = self.columns[name]
            if col is None:  # attention_mask
                part = (np.arange(width)[None, :] < self.lengths[idx, None]).astype(np.int64)
            elif self.sequence(name):
                part = col[idx, :width].astype(np.int64)
                if part.shape[1] < width:  # an odd multiple went past the packed width
                    part = np.pad(part, ((0, 0), (0, width - part.shape[1])), constant_values=self.pads[name])
            else:
                part = col[idx]
            out[name] = torch.from_numpy(part)
        if device is not None and device.type == "cuda":
            return {k: v.pin_memory().to(device, non_blocking=True) for k, v in out.items()}
        return out if device is None else {k: v.to(device) for k, v in out.items()}


def pad_multiple(cfg: DictConfig, device: torch.device) -> int:
    """`pad_multiple`, with `auto` = 8 on CUDA (32 when compiling: a handful of shapes) and 1 on CPU (no extra work)."""
    if cfg.pad_multiple != "auto":
        return int(cfg.pad_multiple)
    if cfg.compile:
        return 32
    return 8 if device.type == "cuda" else 1


def train_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """One epoch's batches of row indices; a function of (seed, epoch) alone, so a resumed run sees the same order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        window = batch_size * BUCKET_BATCHES
        chunks = [order[i : i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if group_by_length:  # shuffle the batches so long ones are not always first in each window
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def total_steps(cfg: DictConfig, n_train: int) -> int:
    """Optimizer steps: `epochs` full passes, or the reference study's rule min(cap, max(min_steps, ceil(n/b*e)))."""
    if cfg.schedule == "steps":
        s = cfg.steps
        steps = min(s.cap, max(s.min_steps, math.ceil(n_train / cfg.batch_size * s.epochs_equiv)))
    else:
        steps = cfg.epochs * math.ceil(n_train / cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps
