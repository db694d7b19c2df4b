"""`trials=N`: N configurations per method drawn by Optuna from the method's declared space (configs/spaces.yaml,
overridden per key by a study's `space:`).

Specs are text, "loguniform(a,b)", "uniform(a,b)", "int(a,b)" or "choice(a,b,...)", parsed into Optuna's
distributions. `sampler=random` (the default) draws with a seeded RandomSampler: trials are i.i.d. and the same N
draws come back on every invocation, so a study resumes to the same configurations. `sampler=tpe` draws with a seeded
TPESampler, which learns from the scores: trial k is asked only after trials 0..k-1 completed, and a resumed study
replays them (ask, tell the recorded holdout score) so it asks the same trial k again.

`store` mirrors the trial runs into Optuna's own RDB storage, an SQLite file in the study folder (OUT/optuna.db): one
Optuna study per task/method (and size, data seed), one trial per trial run, its value the run's primary metric
(the holdout score under select=holdout), so `optuna-dashboard sqlite:///OUT/optuna.db` shows them. It is rewritten
from the result.json files after every round: those stay the source of truth, and the draws above never read it.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from ..config.compose import CONFIG_DIR
from ..errors import UserError

SPEC = re.compile(r"^\s*(loguniform|uniform|int|choice)\s*\((.*)\)\s*$")
SPEC_HELP = "write loguniform(a,b), uniform(a,b), int(a,b) or choice(a,b,...)"
SAMPLERS = ("random", "tpe")
# run keys a space may draw (numbers the loop reads); a method.* key (method.r, ...) is checked when the run composes
RUN_KEYS = ("lr", "epochs", "warmup_ratio", "weight_decay", "batch_size", "max_grad_norm")
STORE = "optuna.db"  # Optuna's RDB storage in the study folder (`store`)
TRIAL = re.compile(r"t(\d+)")


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


def _dotted(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """space.lora.method.r=... on the command line nests; a space's keys are dotted run keys (method.r)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def space(method: str, overrides: Any = None) -> dict[str, Any]:
    """The method's space as {run key: distribution}: the default table's, with the study's `space.<method>` keys over
    it (a key set to null drops it)."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "spaces.yaml"))
    specs = dict(defaults.get(method) or {})
    mine = (overrides or {}).get(method) if overrides else None
    for key, spec in _dotted(OmegaConf.to_container(mine) if OmegaConf.is_config(mine) else dict(mine or {})).items():
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


def storage_url(out: str | Path) -> str:
    """The study folder's Optuna storage, as optuna.load_study and optuna-dashboard take it."""
    return f"sqlite:///{(Path(out) / STORE).resolve()}"


def _param(text: str, dist: Any) -> Any:
    """A drawn value back from its override text (f"{key}={override_value(v)}", as the plan writes it)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    from ..config.compose import override_value

    if isinstance(dist, CategoricalDistribution):
        return next(c for c in dist.choices if override_value(c) == text or str(c) == text)
    return int(text) if isinstance(dist, IntDistribution) else float(text)


def store(out: Path, study: DictConfig, runs: list[tuple[Path, list[str], DictConfig]]) -> Path | None:
    """Write the trial runs among `runs` (folder .../t<k>/seed<s>, its overrides, its config) into OUT/optuna.db,
    replacing what it held: completed runs as COMPLETE trials with their primary metric, failed ones as FAIL, the
    others not yet. Params are the drawn values as the run's overrides give them (a peft config keeps only the fields
    off their defaults, so its config may not show them); user attrs name the run (folder, seed, identity)."""
    if not study.trials:
        return None
    import optuna

    from ..engine.device import runtimes
    from ..record import identities, read_record

    groups: dict[str, list[tuple[int, int, Path, list[str], DictConfig]]] = defaultdict(list)
    for folder, over, cfg in runs:
        parts = Path(folder).relative_to(out).parts
        k = next((i for i, p in enumerate(parts) if TRIAL.fullmatch(p)), None)
        if k is not None:
            name = "/".join(p for p in parts[:k] if p != "select")  # task/method[/size/dN]
            groups[name].append((int(parts[k][1:]), int(cfg.seed), Path(folder), over, cfg))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(storage_url(out))
    for name, trials in sorted(groups.items()):
        dists = space(name.split("/")[1], study.space)
        if name in optuna.get_all_study_names(storage):
            optuna.delete_study(study_name=name, storage=storage)
        mirror = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        for k, seed, folder, over, cfg in sorted(trials, key=lambda r: r[:2]):
            rec = read_record(folder / "result.json")
            mine = identities(cfg, runtimes(cfg, here=False))  # the mirror holds runs done on any machine
            if rec is None or rec.get("identity") not in mine or rec.get("status") not in ("completed", "failed"):
                continue
            value = rec.get("metrics", {}).get(rec.get("primary_metric"))
            done = rec["status"] == "completed" and isinstance(value, (int, float))
            given = dict(o.split("=", 1) for o in over if "=" in o)
            mirror.set_user_attr("metric", rec.get("primary_metric"))
            mirror.add_trial(optuna.trial.create_trial(
                params={key: _param(given[key], dist) for key, dist in dists.items()}, distributions=dists,
                value=float(value) if done else None,
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.FAIL,
                user_attrs={"trial": k, "seed": seed, "folder": str(folder), "identity": rec["identity"],
                            "eval_split": rec.get("eval_split", "dev")}))
    return Path(out) / STORE
