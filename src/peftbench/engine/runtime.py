"""How long runs take on a CPU like this project's: the measured run-time model, for `study --dry-run`'s estimate
and for the one-line note when a run goes many times slower than that.

The model is bench/run_time.py's (docs/run-time-cpu.md): a run's time is its optimizer steps x the measured seconds
per step. The seconds per step were measured for bert-base (fp32, 2 threads, batch 16, the idle 2-core AMD EPYC VM,
see that page); another model's step is scaled by its matmul FLOPs per token against bert-base's, another batch size
by its rows. Tasks without a measurement take the closest measured one (one sentence: SST-2; a pair: MRPC; QA:
SQuAD). The rate a running step is held against: training FLOPs per second measured on the same machine
(the median of the committed MiniLM studies: fp32 5.3e10, bf16 2.1e11 at 2 threads).
"""

from __future__ import annotations

import math
from typing import Any

# seconds per optimizer step, bert-base-uncased, batch 16, fp32, 2 threads (docs/run-time-cpu.md)
S_PER_STEP = {"sst2": {"full": 1.11, "bitfit": 0.70, "bitfit_subset": 0.64, "lora": 0.69, "prompt": 1.67},
              "mrpc": {"full": 4.48, "bitfit": 2.84, "bitfit_subset": 2.65, "lora": 2.51, "prompt": 4.21},
              "rte": {"full": 3.84, "bitfit": 2.31, "bitfit_subset": 2.37, "lora": 3.17, "prompt": 3.68},
              "squad": {"full": 11.30, "bitfit": 8.08}}
BERT_BASE = 12 * (4 * 768 * 768 + 2 * 768 * 3072)  # matmul multiply-adds per token of bert-base's encoder
MEASURED_BATCH = 16
# training FLOPs per second per thread on this project's 2-core CPU (results/prompt_residual_minilm: fp32;
# results/glue_minilm: bf16 autocast), and how many times slower a run must be for its one-line note
FLOPS_PER_S_PER_THREAD = {"fp32": 5.3e10 / 2, "bf16": 2.1e11 / 2}
SLOW = 5.0
CHECK_AFTER_S = 60.0        # the rate is read once, a minute into training (the first step's FLOP count is slow)
REAL_STEP_FLOPS = 1e9       # below this a step is overhead, not matmuls (the tiny test model): no note


def _matmul_per_token(model_cfg: Any) -> int | None:
    from ..models.load import shipped_config

    try:
        c = shipped_config(model_cfg)
        return c.num_hidden_layers * (4 * c.hidden_size ** 2 + 2 * c.hidden_size * c.intermediate_size)
    except Exception:  # noqa: BLE001 (a model this cannot read: no estimate, never an error)
        return None


def step_seconds(cfg: Any) -> float | None:
    """Estimated seconds per optimizer step of `cfg` on the measured CPU (None: nothing to scale from)."""
    task = cfg.task.name if cfg.task.name in S_PER_STEP else (
        "squad" if cfg.task.kind == "squad" else
        "mrpc" if (cfg.task.get("text_fields") and len(cfg.task.text_fields) > 1) or cfg.task.get("text_pair")
        else "sst2")
    per = S_PER_STEP[task]
    measured = per.get(cfg.method.name) or per["full"] * (2 / 3 if cfg.method.name != "full" else 1)
    matmuls = _matmul_per_token(cfg.model)
    return None if matmuls is None else measured * matmuls / BERT_BASE * cfg.batch_size / MEASURED_BATCH


def run_seconds(cfg: Any, steps: int) -> float | None:
    s = step_seconds(cfg)
    return None if s is None else s * steps


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def slow_note(flops: float, seconds: float, precision: str, threads: int) -> str | None:
    """The note for a CPU run whose FLOPs per second are SLOW times below the measured rate; None when it is not."""
    rate = FLOPS_PER_S_PER_THREAD.get(precision, FLOPS_PER_S_PER_THREAD["fp32"]) * threads
    achieved = flops / seconds if seconds > 0 else math.inf
    if achieved * SLOW >= rate:
        return None
    return (f"this run trains at {achieved:.2g} FLOP/s, {rate / achieved:.0f}x below the rate measured on a 2-core "
            f"CPU ({rate:.2g} with {threads} threads): other processes may be using the cores; leave them free, or "
            f"set OMP_NUM_THREADS to the cores that are")


class SlowCheck:
    """Once, CHECK_AFTER_S into a CPU run, the note of `slow_note` when the run trains far below this CPU's measured
    rate (other processes on the cores); never for steps too small to be matmul-bound (the tiny test model)."""

    def __init__(self, on: bool, precision: str, threads: int) -> None:
        self.on, self.precision, self.threads = on, "bf16" if precision == "bf16" else "fp32", threads

    def __call__(self, meter: Any, elapsed: float) -> str | None:
        if not (self.on and meter.flops_per_token and elapsed > CHECK_AFTER_S):
            return None
        self.on = False
        if meter.fields.get("train_flops_per_step", 0) <= REAL_STEP_FLOPS:
            return None
        return slow_note(meter.flops_per_token * meter.padded_tokens, elapsed, self.precision, self.threads)
