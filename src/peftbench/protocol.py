"""`select=holdout` studies (docs/protocol.md): every configuration is scored on a holdout carved out of train, the
picked one is trained again with fresh seeds on all of train and scored on dev, the report's test set.

The plan is a function of the study and the completed result.json files alone, so a study (or a launcher round)
re-plans after every round and a resumed study re-plans identically:
  select phase  <out>/<task>/<method>[/<size>/d<data_seed>]/select/<cfg>/seed0   one run per configuration
  final phase   <out>/<task>/<method>[/<size>/d<data_seed>]/final/seed<s>         once the method's selection is done
Configurations: the method's grid (`lrs`, <cfg> = lr<rate>), `trials` draws (search.py, <cfg> = t<k>), or its own
rate. The picked one has the best holdout primary metric (ties: the first in grid or trial order).
Selection runs use seed SELECT_SEED; final seeds are the study's `seeds` (never SELECT_SEED) or, with `seeds=auto`,
1, 2, ... in rounds: each method starts with min_seeds; while report.stats.seed_decision says go on for its paired
deltas against full (by seed, within one task/size/data_seed), it gets one more seed, which full runs too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import CONFIG_DIR, load_config, override_value
from .record import identities, read_record

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


def score(folder: Path, over: list[str]) -> float | None:
    """The primary metric of the completed run of exactly this config in `folder`, else None."""
    rec = read_record(folder / "result.json")
    if not rec or rec.get("status") != "completed":
        return None
    if rec.get("identity") not in identities(compose(over)):
        return None
    value = rec.get("metrics", {}).get(rec.get("primary_metric"))
    return float(value) if isinstance(value, (int, float)) else None


def _as_list(value: Any) -> list:
    return list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]


def candidates(study: DictConfig, method: str, scored) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The method's configurations as (folder name, params) in order, and the sampler's name. `scored(name, params)`
    gives a completed config's holdout score (TPE's replay)."""
    from .study import lr_folder, lr_grid
    from . import search

    if study.trials:
        dists = search.space(method, study.space)
        sampler = str(study.sampler)
        params = search.draws(method, dists, int(study.trials), sampler, lambda k, p: scored(f"t{k}", p))
        return [(f"t{k}", p) for k, p in enumerate(params)], sampler
    grid = lr_grid(study, method) or [float(OmegaConf.load(CONFIG_DIR / "method" / f"{method}.yaml").lr)]
    return [(lr_folder(lr), {"lr": lr}) for lr in grid], "grid"


def budget(study: DictConfig, method: str) -> int:
    from .study import lr_grid

    return int(study.trials) if study.trials else len(lr_grid(study, method) or [None])


def plan(study: DictConfig, pools: dict[str, int | None] | None = None) -> Plan:
    """The runs of a select=holdout study that can be named now (completed ones included: the runner skips them)."""
    from .report.stats import STOP_REASONS, seed_decision
    from .study import task_folder

    pools, out, result = pools or {}, Path(study.out), Plan()
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
                    configs, _ = candidates(study, method, lambda n, p: score(*select_run(n, p)))
                    scores = []
                    for name, params in configs:
                        folder, over = select_run(name, params)
                        result.runs.append((folder, over))
                        scores.append(score(folder, over))
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
                            mine = [score(*final_run(m, s)) for s in seeds]
                            theirs = [score(*final_run(BASELINE, s)) for s in seeds] if BASELINE in finals else [None]
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
