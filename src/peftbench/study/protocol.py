"""`select=holdout` studies (docs/protocol.md): every configuration is scored on a holdout carved out of train, the
picked one is trained again with fresh seeds on all of train and scored on dev, the report's test set.

The plan is a function of the study and the completed result.json files alone, so a study (or a launcher round)
re-plans after every round and a resumed study re-plans identically:
  select phase  <out>/<task>/<method>[/<size>/d<data_seed>]/select/<cfg>/seed0   one run per configuration
  final phase   <out>/<task>/<method>[/<size>/d<data_seed>]/final/seed<s>         once the method's selection is done
Configurations: the method's grid (`lrs`, <cfg> = lr<rate>), `trials` draws (search.py, <cfg> = t<k>), or its own
rate. The picked one has the best holdout primary metric (ties: the first in grid or trial order).
Selection runs use seed SELECT_SEED; final seeds are the study's `seeds` (never SELECT_SEED) or, with `seeds=auto`,
1, 2, ... in rounds: each method starts with min_seeds; while stats.seed_decision says go on for its paired
deltas against full (by seed, within one task/size/data_seed), it gets one more seed, which full runs too.
`check(study)` validates the protocol's study keys (one line per bad value); `run(...)` runs such a study in rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config.compose import CONFIG_DIR, load_config, override_value
from ..errors import UserError
from ..record import read_record
from .runner import trains_here, twin

SELECT_SEED = 0  # the one training seed of every selection run; final seeds are distinct from it
BASELINE = "full"


@dataclass
class Plan:
    runs: list[tuple[Path, list[str]]] = field(default_factory=list)
    waiting: int = 0                                   # (task, method, cell)s whose final runs wait on selection
    stops: dict[str, str] = field(default_factory=dict)  # "task/method[/size/dN]" -> the line saying why it stopped


_configs: dict[tuple[str, ...], DictConfig] = {}


def compose(over: list[str]) -> DictConfig:
    """load_config, cached per invocation: a study re-plans after every round and composes each run once."""
    key = tuple(over)
    if key not in _configs:
        _configs[key] = load_config(over)
    return _configs[key]


def score(folder: Path, over: list[str], here: bool = True) -> float | None:
    """The primary metric of the completed run of exactly this config in `folder`, else None (here: runner.twin's)."""
    rec = read_record(folder / "result.json")
    if not rec or rec.get("status") != "completed" or not twin(rec, folder, compose(over), here):
        return None
    value = rec.get("metrics", {}).get(rec.get("primary_metric"))
    return float(value) if isinstance(value, (int, float)) else None


def _as_list(value: Any) -> list:
    return list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]


def candidates(study: DictConfig, method: str, scored) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The method's configurations as (folder name, params) in order, and the sampler's name. `scored(name, params)`
    gives a completed config's holdout score (TPE's replay)."""
    from . import search
    from .search import lr_folder, lr_grid

    if study.trials:
        dists = search.space(method, study.space)
        sampler = str(study.sampler)
        params = search.draws(method, dists, int(study.trials), sampler, lambda k, p: scored(f"t{k}", p))
        return [(f"t{k}", p) for k, p in enumerate(params)], sampler
    grid = lr_grid(study, method) or [float(OmegaConf.load(CONFIG_DIR / "method" / f"{method}.yaml").lr)]
    return [(lr_folder(lr), {"lr": lr}) for lr in grid], "grid"


def budget(study: DictConfig, method: str) -> int:
    from .search import lr_grid

    return int(study.trials) if study.trials else len(lr_grid(study, method) or [None])


def plan(study: DictConfig, pools: dict[str, int | None] | None = None) -> Plan:
    """The runs of a select=holdout study that can be named now (completed ones included: the runner skips them)."""
    from ..stats import STOP_REASONS, seed_decision
    from .planning import task_folder

    pools, out, result = pools or {}, Path(study.out), Plan()
    here = trains_here(study)
    auto = str(study.seeds) == "auto"
    data_seeds = _as_list(study.data_seeds) if study.data_seeds is not None else [study.data_seed or 0]
    shared = {"select": "holdout", "seeds": "auto" if auto else "fixed", "min_seeds": int(study.min_seeds),
              "max_seeds": int(study.max_seeds), "ci_target": float(study.ci_target)}
    final_seeds = list(range(1, int(study.max_seeds) + 1)) if auto else [int(s) for s in _as_list(study.seeds)]
    methods = [str(m) for m in _as_list(study.methods)]
    for task in _as_list(study.tasks):
        pool = pools.get(task)
        sizes = [None] if study.sizes is None else [s for s in _as_list(study.sizes)
                                                    if s == "all" or pool is None or s <= pool]
        for size in sizes:
            for ds in data_seeds:
                cell = [] if size is None and study.data_seeds is None else [str(size)] * (size is not None) + [f"d{ds}"]
                base = [f"task={task}"]
                data = [f"data_seed={ds}"] + ([f"train_size={'null' if size == 'all' else size}"] if size else [])
                finals: dict[str, tuple[list[str], dict, Path]] = {}  # method -> (param overrides, protocol, folder)
                for method in methods:
                    root = out.joinpath(task_folder(str(task)), method, *cell)

                    def select_run(name: str, params: dict[str, Any]) -> tuple[Path, list[str]]:
                        folder = root / "select" / name / f"seed{SELECT_SEED}"
                        proto = {**shared, "phase": "select", "config": name, "params": params,
                                 "budget": budget(study, method), "sampler": sampler_name,
                                 "picked_holdout_score": None}
                        over = [f"tracking.group={out.name}", *study.run, *base, f"method={method}",
                                f"seed={SELECT_SEED}", *data, f"holdout={study.holdout!r}", "eval_split=holdout",
                                *(f"{k}={override_value(v)}" for k, v in params.items()),
                                f"protocol={override_value(proto)}", f"out={folder}"]
                        return folder, over

                    sampler_name = "tpe" if study.trials and study.sampler == "tpe" else \
                        ("random" if study.trials else "grid")
                    configs, _ = candidates(study, method, lambda n, p: score(*select_run(n, p), here))
                    scores = []
                    for name, params in configs:
                        folder, over = select_run(name, params)
                        result.runs.append((folder, over))
                        scores.append(score(folder, over, here))
                    if len(configs) < budget(study, method) or any(s is None for s in scores):
                        result.waiting += 1
                        continue
                    best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # ties: the first
                    name, params = configs[best]
                    picked = read_record(select_run(name, params)[0] / "result.json") or {}
                    proto = {**shared, "phase": "final", "config": name, "params": params,
                             "budget": budget(study, method), "sampler": sampler_name,
                             "picked_holdout_score": scores[best], "picked_holdout": picked.get("holdout")}
                    finals[method] = ([f"{k}={override_value(v)}" for k, v in params.items()], proto, root)

                def final_run(method: str, seed: int) -> tuple[Path, list[str]]:
                    params, proto, root = finals[method]
                    folder = root / "final" / f"seed{seed}"
                    return folder, [f"tracking.group={out.name}", *study.run, *base, f"method={method}", f"seed={seed}",
                                    *data, *params, f"protocol={override_value(proto)}", f"out={folder}"]

                counts = {m: len(final_seeds) for m in finals}
                if auto:
                    for m in finals:
                        if m == BASELINE:
                            continue
                        n = int(study.min_seeds)
                        while True:
                            seeds = final_seeds[:n]
                            mine = [score(*final_run(m, s), here) for s in seeds]
                            theirs = [score(*final_run(BASELINE, s), here) for s in seeds] if BASELINE in finals else [None]
                            if any(v is None for v in mine + theirs):
                                break
                            why = seed_decision([a - b for a, b in zip(mine, theirs)], int(study.min_seeds),
                                                int(study.max_seeds), float(study.ci_target))
                            if why:
                                where = "/".join([str(task), m, *cell])
                                result.stops[where] = f"{where}: stops after {n} seeds: {STOP_REASONS[why]}"
                                break
                            n += 1
                        counts[m] = n
                    if BASELINE in finals:
                        counts[BASELINE] = max([int(study.min_seeds)] + [c for m, c in counts.items() if m != BASELINE])
                for m in finals:
                    result.runs += [final_run(m, s) for s in final_seeds[:counts[m]]]
    return result


def _count(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def check(study: DictConfig) -> None:
    """select, holdout, data_seed(s), trials, space, sampler, seeds=auto and its bounds: one line per bad value."""
    from . import search
    from ..config.compose import group_options

    if study.select not in ("dev", "holdout"):
        raise UserError(f"select={study.select!r} is unknown: use select=holdout (tune on a slice of train, report on "
                        "dev) or select=dev (tune and report on dev, as papers do)")
    h = study.holdout
    if isinstance(h, bool) or not isinstance(h, (int, float)) or h <= 0 or (isinstance(h, float) and not h.is_integer()
                                                                           and h >= 1):
        raise UserError(f"holdout={h!r}: give a fraction of train in (0,1), e.g. holdout=0.1, or a row count, e.g. "
                        "holdout=500")
    if study.data_seed is not None and not _count(study.data_seed, 0):
        raise UserError(f"data_seed={study.data_seed!r} is not a whole number >= 0: write e.g. data_seed=0")
    if study.data_seeds is not None:
        values = _as_list(study.data_seeds)
        if not values or not all(_count(v, 0) for v in values) or len(set(values)) != len(values):
            raise UserError(f"data_seeds={values!r}: give distinct whole numbers >= 0, e.g. data_seeds=[0,1,2]")
        if study.sizes is None and study.select == "dev":
            raise UserError("data_seeds repeats the subsample of each size: add sizes=[...] (or select=holdout, where "
                            "it also repeats the holdout)")
        if study.data_seed is not None:
            raise UserError("data_seed and data_seeds both given: data_seeds=[...] lists every data seed; drop one")
    if study.trials is not None:
        if not _count(study.trials, 1):
            raise UserError(f"trials={study.trials!r} is not a whole number >= 1: write e.g. trials=8")
        if study.lrs is not None:
            raise UserError("trials and lrs both given: trials draws each method's configurations from its space, lrs "
                            "is a grid; drop one")
        drawn = set()
        for method in _as_list(study.methods):
            drawn |= set(search.space(str(method), study.space))  # parses every spec: a bad one is one line
        clash = [o.split("=", 1)[0] for o in study.run if o.split("=", 1)[0].lstrip("+~") in drawn]
        if clash:
            raise UserError(f"{clash[0]} is given to every run and drawn by trials: drop it, or drop it from the space "
                            f"(space.METHOD.{clash[0]}=null)")
    if not OmegaConf.is_dict(study.space) and study.space is not None:
        raise UserError(f"space={study.space!r} is not a mapping: write space.lora.lr=\"loguniform(1e-5,1e-2)\"")
    unknown = [str(m) for m in (study.space or {}) if str(m) not in group_options("method")]
    if unknown:
        raise UserError(f"space: unknown method {unknown}; give spaces for {', '.join(group_options('method'))}")
    if study.space and not study.trials:
        raise UserError("space is given but trials is not: add trials=N to draw N configurations from it")
    if study.sampler not in search.SAMPLERS:
        raise UserError(f"sampler={study.sampler!r} is unknown: use sampler=random (i.i.d. trials) or sampler=tpe")
    if study.sampler == "tpe" and (study.select != "holdout" or not study.trials):
        raise UserError("sampler=tpe learns from the holdout scores of earlier trials: add select=holdout and trials=N "
                        "(or use sampler=random)")
    auto = str(study.seeds) == "auto"
    if not _count(study.min_seeds, 2):
        raise UserError(f"min_seeds={study.min_seeds!r} is not a whole number >= 2 (a paired interval needs 2 seeds)")
    if not _count(study.max_seeds, int(study.min_seeds)):
        raise UserError(f"max_seeds={study.max_seeds!r} is not a whole number >= min_seeds ({study.min_seeds})")
    c = study.ci_target
    if isinstance(c, bool) or not isinstance(c, (int, float)) or c <= 0:
        raise UserError(f"ci_target={c!r} is not a number > 0: the half-width in points, e.g. ci_target=1.0")
    if auto and study.select != "holdout":
        raise UserError("seeds=auto adds final seeds after a selection phase: add select=holdout")
    if auto and "full" not in [str(m) for m in _as_list(study.methods)]:
        raise UserError("seeds=auto compares every method with full: add full to methods")
    if study.select == "holdout":
        if not auto and SELECT_SEED in _as_list(study.seeds):
            raise UserError(f"seeds: {SELECT_SEED} is the selection runs' seed under select=holdout; final seeds "
                            "must differ from it: write e.g. seeds=[1,2,3]")
        if any(o.split("=", 1)[0].lstrip("+~") in ("holdout", "eval_split", "data_seed") for o in study.run):
            raise UserError("holdout, eval_split and data_seed are set per run by a select=holdout study: give them as "
                            "study keys (holdout=0.1 data_seed=0), not in run")


def run(study: DictConfig, name: str, pools: dict[str, int | None], dry_run: bool) -> int:
    """A select=holdout study in rounds: plan what can be named now, run (or launch) what is not completed, re-plan
    from the new result.json files, until a round adds nothing; a run that failed is not tried twice in one call."""
    from ..engine import preflight
    from . import runner, search
    from .planning import print_plan

    out = Path(study.out)
    local = runner.trains_here(study)
    runner.check_versions(out)
    tried: set[Path] = set()
    said: set[str] = set()
    t_study, code, checked = time.perf_counter(), 0, set()

    def source(cfg: DictConfig) -> tuple:
        return (str(cfg.model), str(cfg.task), cfg.data_dir, cfg.train_size, cfg.eval_split, cfg.device,
                cfg.precision, cfg.batch_size, cfg.grad_accum)
    while True:
        now = plan(study, pools)
        configs = [(folder, compose(over)) for folder, over in now.runs]
        # every problem at once, before the round trains; one config per (model, data, split) source: rounds add
        # seeds and rates, which the preflight does not look at (each check loads the model's config files)
        new = {source(cfg): cfg for _, cfg in configs if source(cfg) not in checked}
        if new:
            preflight.check(list(new.values()), out, local)
            checked |= set(new)
        for key in sorted(set(now.stops) - said):
            print(now.stops[key], flush=True)
            said.add(key)
        if dry_run:
            print_plan(configs, out, local)
            if now.waiting:
                print(f"final phase: decided by the selection above ({now.waiting} task/method cells wait on it); "
                      "re-run without --dry-run to train it")
            return 0
        out.mkdir(parents=True, exist_ok=True)
        # trials=N: the Optuna mirror of the records so far (OUT/optuna.db)
        search.store(out, study, [(f, over, cfg) for (f, over), (_, cfg) in zip(now.runs, configs)])
        todo = [i for i, (folder, cfg) in enumerate(configs) if folder not in tried and not runner.completed(folder, cfg, local)]
        if not todo:
            break
        OmegaConf.save(study, out / f"study-{Path(name).stem}.yaml")
        tried |= {configs[i][0] for i in todo}
        if study.launcher or study.parallel > 1:  # one submission per round
            from .launch import launch_study

            code |= launch_study(study, name, [configs[i] for i in todo], [now.runs[i] for i in todo])
            continue
        for j, i in enumerate(todo, 1):
            folder, cfg = configs[i]
            runner.run_one(folder, cfg, f"[{j}/{len(todo)}] {folder.relative_to(out)}")
    done = [folder for folder, cfg in configs if runner.completed(folder, cfg, local)]
    ran, failed = len(set(done) & tried), len(configs) - len(done)
    print(f"study {Path(name).stem}: {ran} ran, {len(done) - ran} already completed, {failed} failed or "
          f"waiting in {time.perf_counter() - t_study:.0f} s -> {out}")
    return 1 if failed or code else 0
