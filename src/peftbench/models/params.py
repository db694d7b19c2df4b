"""`peftbench params`: every method's trainable parameters on a model, built from its config with no weights.

The model is built on the meta device (shapes, no storage, no random init), once per (model, task), and each method
is applied to a copy of it: the counts are those of a real build, in about a second even for bert-base. A method
that cannot apply to the model's family gets its one-line reason in the table instead of a count.
"""

from __future__ import annotations

import copy
import functools

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import schema
from ..config.compose import CONFIG_DIR, group_options, load_config
from ..errors import UserError
from .methods import apply_method
from .load import check_encoder, load_model, shipped_config
from ..data.tasks import TASKS


@functools.lru_cache(maxsize=4)
def _setup(overrides: tuple[str, ...]):
    """The composed config and a meta-device build per (model, task): composing and building once, not per method."""
    cfg = load_config(list(overrides))
    if not cfg.model.get("tiny") and not cfg.model.get("config_file"):  # a folder or hub id: an encoder, or one line
        check_encoder(cfg.model, shipped_config(cfg.model))
    head = TASKS[cfg.task.kind].HEAD
    with torch.device("meta"):
        return cfg, load_model(cfg.model, head, num_labels=len(cfg.task.get("labels") or [0, 1]), random_init=True)


def _real(cfg: DictConfig) -> torch.nn.Module:
    """A CPU build with random weights, for the few methods that cannot be built on the meta device."""
    return load_model(cfg.model, TASKS[cfg.task.kind].HEAD, num_labels=len(cfg.task.get("labels") or [0, 1]),
                      random_init=True)


def method_config(overrides: list[str]) -> DictConfig:
    """The method's config as Hydra composes it (a flat file + `method.KEY=VALUE` overrides), checked by a full
    composition only once per (model, task): composing per method was most of the command's time."""
    name = next((o.split("=", 1)[1] for o in overrides if o.startswith("method=")), None)
    if name is None or name == "peft":  # a peft config is written in Hydra's grammar and made canonical there
        return load_config(overrides).method
    if name not in group_options("method"):
        load_config(overrides)  # its UserError names the choices
    keys = [o.lstrip("+")[len("method."):] for o in overrides if o.lstrip("+").startswith("method.")]
    try:
        return OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "method" / f"{name}.yaml"), OmegaConf.from_dotlist(keys))
    except OmegaConfBaseException:  # the full composition says what is wrong, in one line
        return load_config(overrides).method


def count(overrides: list[str]) -> dict[str, int | str]:
    """Trainable and total parameter counts for one (model, method, task), no weights downloaded or built.
    A method that refuses the model raises its UserError."""
    cfg, base = _setup(tuple(o for o in overrides if not o.lstrip("+~").startswith("method")))
    method = method_config(overrides)
    model = copy.deepcopy(base)
    total = sum(p.numel() for p in model.parameters())
    try:
        with torch.device("meta"):  # the method's new parameters too: shapes only
            model = apply_method(model, method, cfg.model.name)
    except (RuntimeError, NotImplementedError):  # a method reading values at build time (BOFT, SHiRA's mask)
        model = apply_method(_real(cfg), method, cfg.model.name)  # a real build: seconds, not one
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"method": method.name, "trainable": trainable, "total": total, "trains": method.trains}


def row(overrides: list[str], method: str) -> dict[str, int | str]:
    """count(), or the method's refusal as the row's reason."""
    try:
        return count(overrides + [f"method={method}"])
    except UserError as e:
        why = str(e).split(": ", 1)[-1] if "cannot handle model" in str(e) else str(e)
        return {"method": method, "refused": why}


def params_table(overrides: list[str]) -> str:
    """A markdown table, one row per method config (or just `method=` if given)."""
    given = [o for o in overrides if o.startswith("method=")]
    rest = [o for o in overrides if not o.startswith("method=")]
    methods = [g.split("=", 1)[1] for g in given] or group_options("method")
    methods.sort(key=lambda m: (m != "full", m))  # the baseline first
    for m in methods:  # a bad method.KEY=VALUE is the command's error, not a refused row
        schema.check(OmegaConf.create({"method": method_config(rest + [f"method={m}"])}), part="method")
    rows = [row(rest, m) for m in methods]
    cfg, base = _setup(tuple(o for o in rest if not o.lstrip("+~").startswith("method")))
    total = sum(p.numel() for p in base.parameters())
    lines = [f"Trainable parameters on {cfg.model.name} ({base.config.model_type}) with a {cfg.task.name} head "
             "(from config, no weights)", "",
             "| method | trainable | % of total | what trains |", "|---|---:|---:|---|"]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['method']} | - | - | cannot apply: {r['refused']} |")
        else:
            lines.append(f"| {r['method']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.3f}% "
                         f"| {r['trains']} |")
    lines.append(f"\ntotal (base + head): {total:,}")
    return "\n".join(lines)
