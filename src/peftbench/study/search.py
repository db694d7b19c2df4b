"""`trials=N`: N configurations per method drawn by Optuna from the method's declared space (configs/spaces.yaml,
overridden per key by a study's `space:`).

Specs are text, "loguniform(a,b)", "uniform(a,b)", "int(a,b)" or "choice(a,b,...)", parsed into Optuna's
distributions. `sampler=random` (the default) draws with a seeded RandomSampler: trials are i.i.d. and the same N
draws come back on every invocation, so a study resumes to the same configurations. `sampler=tpe` draws with a seeded
TPESampler, which learns from the scores: trial k is asked only after trials 0..k-1 completed, and a resumed study
replays them (ask, tell the recorded holdout score) so it asks the same trial k again.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from ..config.compose import CONFIG_DIR
from ..errors import UserError

SPEC = re.compile(r"^\s*(loguniform|uniform|int|choice)\s*\((.*)\)\s*$")
SPEC_HELP = "write loguniform(a,b), uniform(a,b), int(a,b) or choice(a,b,...)"
SAMPLERS = ("random", "tpe")
# run keys a space may draw (numbers the loop reads); a method.* key (method.r, ...) is checked when the run composes
RUN_KEYS = ("lr", "epochs", "warmup_ratio", "weight_decay", "batch_size", "max_grad_norm")


def _number(text: str, where: str) -> float | int:
    try:
        return int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else float(text)
    except ValueError:
        raise UserError(f"{where}: {text.strip()!r} is not a number; {SPEC_HELP}") from None


def parse(spec: Any, where: str):
    """An Optuna distribution for one spec; a UserError line naming `where` (space.lora.lr) for a bad one."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    m = SPEC.match(str(spec)) if isinstance(spec, str) else None
    if not m:
        raise UserError(f"{where}={spec!r} is not a space; {SPEC_HELP}")
    kind, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
    if kind == "choice":
        if not args or any(a == "" for a in args):
            raise UserError(f"{where}={spec!r}: choice needs values, e.g. choice(8,16,32)")
        values = []
        for a in args:
            try:
                values.append(_number(a, where))
            except UserError:
                values.append(a.strip("'\""))
        return CategoricalDistribution(values)
    if len(args) != 2:
        raise UserError(f"{where}={spec!r}: {kind} takes two bounds (low, high); {SPEC_HELP}")
    low, high = (_number(a, where) for a in args)
    if not low < high:
        raise UserError(f"{where}={spec!r}: the low bound must be below the high one")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"{where}={spec!r}: loguniform needs a low bound above 0")
    if kind == "int":
        if not (isinstance(low, int) and isinstance(high, int)):
            raise UserError(f"{where}={spec!r}: int takes whole-number bounds, e.g. int(2,5)")
        return IntDistribution(low, high)
    return FloatDistribution(float(low), float(high), log=kind == "loguniform")


def space(method: str, overrides: Any = None) -> dict[str, Any]:
    """The method's space as {run key: distribution}: the default table's, with the study's `space.<method>` keys over
    it (a key set to null drops it)."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "spaces.yaml"))
    specs = dict(defaults.get(method) or {})
    mine = (overrides or {}).get(method) if overrides else None
    for key, spec in (OmegaConf.to_container(mine) if OmegaConf.is_config(mine) else dict(mine or {})).items():
        if spec is None:
            specs.pop(key, None)
        else:
            specs[key] = spec
    if not specs:
        raise UserError(f"space.{method} is empty: give it a key to draw, e.g. space.{method}.lr=\"loguniform(1e-5,1e-2)\"")
    out = {}
    for key, spec in specs.items():
        if key not in RUN_KEYS and not key.startswith("method."):
            raise UserError(f"space.{method}.{key}: unknown key; a space draws {', '.join(RUN_KEYS)} or a method.* key")
        out[key] = parse(spec, f"space.{method}.{key}")
    return out


def sampler_seed(method: str) -> int:
    """A fixed seed per method: every task and invocation draws the same configurations for it."""
    return zlib.crc32(method.encode())


def draws(method: str, dists: dict[str, Any], n: int, sampler: str = "random",
          score: Callable[[int, dict[str, Any]], float | None] | None = None) -> list[dict[str, Any]]:
    """Up to n configurations, in trial order. random: all n at once. tpe: trial k is drawn after telling trials
    0..k-1 their `score(k, params)` (the recorded holdout score); a trial without a score yet ends the list there."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = sampler_seed(method)
    chosen = optuna.samplers.RandomSampler(seed=seed) if sampler == "random" else optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=chosen)
    out = []
    for k in range(n):
        trial = study.ask(dists)
        params = {key: trial.params[key] for key in dists}
        out.append(params)
        if sampler == "random":
            continue
        value = score(k, params) if score else None
        if value is None:
            break  # TPE's next draw depends on this trial's score: it waits for the run
        study.tell(trial, value)
    return out


def lr_grid(study: DictConfig, method: str) -> list[float] | None:
    """The method's learning rates in the study, ascending; its own rate when `lrs` has no grid for it; None: no axis."""
    if study.lrs is None:
        return None
    if OmegaConf.is_dict(study.lrs):
        grid = study.lrs.get(method)
        if grid is None:
            grid = OmegaConf.load(CONFIG_DIR / "method" / f"{method}.yaml").lr
    else:
        grid = study.lrs
    values = list(grid) if OmegaConf.is_list(grid) else [grid]
    return sorted({float(v) for v in values})


def lr_folder(lr: float) -> str:
    return f"lr{lr:g}"
