"""`peftbench params`: every method's trainable parameters on a model, built from its config with random weights."""

from __future__ import annotations

import copy
import functools

from .config import group_options, load_config
from .methods import apply_method
from .models import load_model
from .tasks import TASKS


@functools.lru_cache(maxsize=2)
def _base(overrides: tuple[str, ...]):
    """One random-weights build per (model, task): building bert-base is most of the command's time."""
    cfg = load_config(list(overrides))
    head = TASKS[cfg.task.kind].HEAD
    return load_model(cfg.model, head, num_labels=len(cfg.task.get("labels") or [0, 1]), random_init=True)


def count(overrides: list[str]) -> dict[str, int | str]:
    """Trainable and total parameter counts for one (model, method, task), no weights downloaded."""
    cfg = load_config(overrides)
    model = copy.deepcopy(_base(tuple(o for o in overrides if not o.startswith("method"))))
    total = sum(p.numel() for p in model.parameters())
    model = apply_method(model, cfg.method, cfg.model.name)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"method": cfg.method.name, "trainable": trainable, "total": total, "trains": cfg.method.trains}


def params_table(overrides: list[str]) -> str:
    """A markdown table, one row per method config (or just `method=` if given)."""
    given = [o for o in overrides if o.startswith("method=")]
    rest = [o for o in overrides if not o.startswith("method=")]
    methods = [g.split("=", 1)[1] for g in given] or group_options("method")
    methods.sort(key=lambda m: (m != "full", m))  # the baseline first
    rows = [count(rest + [f"method={m}"]) for m in methods]
    cfg = load_config(rest)
    lines = [f"Trainable parameters on {cfg.model.name} with a {cfg.task.name} head (random weights, from config)", "",
             "| method | trainable | % of total | what trains |", "|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.3f}% | {r['trains']} |")
    lines.append(f"\ntotal (base + head): {rows[0]['total']:,}")
    return "\n".join(lines)
