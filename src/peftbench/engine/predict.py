"""The model's outputs over a set of rows (`predict`), and dev metrics from them (`evaluate`).

Training evaluates with these, and `peftbench predict` / `evaluate` (serve.py) batch new inputs through `predict`.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from omegaconf import DictConfig

from ..data.batches import SEQUENCE_COLUMNS, Packed, pad_multiple


@torch.inference_mode()
def predict(model: torch.nn.Module, rows: Packed, batch_size: int, device: torch.device,
            shard: tuple[int, int] = (0, 1), pad_multiple: int = 1) -> dict[str, list[np.ndarray]]:
    """The model's outputs (every tensor but the loss) over `rows`: one array per row, in their order.

    Rows are batched by length (less padding); a row's array keeps its batch's padding on sequence outputs.
    Outputs stay on the device until the last batch, so the host queues every batch without waiting for one.
    With shard=(rank, world) this process does every world-th row of that order and leaves the others None.
    """
    model.eval()
    inputs = [c for c in rows.column_names if c in SEQUENCE_COLUMNS]
    order = np.argsort(rows.lengths, kind="stable")[shard[0] :: shard[1]]
    pending = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        out = model(**rows.batch(idx, device, pad_multiple, inputs))
        pending.append((idx, {k: v for k, v in out.items() if torch.is_tensor(v) and k != "loss"}))
    outputs: dict[str, list] = defaultdict(lambda: [None] * len(rows))
    for idx, out in pending:
        for key, value in out.items():
            for i, row in zip(idx.tolist(), value.float().cpu().numpy()):
                outputs[key][i] = row
    return dict(outputs)


def evaluate(model: torch.nn.Module, data: Any, task: Any, cfg: DictConfig, accelerator: Accelerator,
             amp: contextlib.AbstractContextManager) -> tuple[dict[str, float], Any, float]:
    """Dev metrics under `amp` (the run's autocast); with several processes each predicts a shard and the rows are
    gathered, each exactly once."""
    t0 = time.perf_counter()
    world = accelerator.num_processes
    with amp:
        outputs = predict(accelerator.unwrap_model(model), data.eval, cfg.eval_batch_size, accelerator.device,
                          shard=(accelerator.process_index, world), pad_multiple=pad_multiple(cfg, accelerator.device))
    if world > 1:
        shards = gather_object([outputs])
        outputs = {key: [next(s[key][i] for s in shards if s[key][i] is not None) for i in range(len(data.eval))]
                   for key in outputs}
    metrics, predictions = task.score(data, outputs)
    return metrics, predictions, time.perf_counter() - t0
