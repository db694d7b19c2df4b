"""`select=holdout` studies (docs/protocol.md): every configuration is scored on a holdout carved out of train, the
picked one is trained again with fresh seeds (on the selection's rows, or all of train: `final_rows`) and scored on
dev, the report's test set.

The plan is a function of the study and the completed result.json files alone, so a study (or a launcher round)
re-plans after every round and a resumed study re-plans identically:
  select phase  <out>/<task>/<method>[/<size>/d<data_seed>]/select/<cfg>/seed0   one run per configuration
  final phase   <out>/<task>/<method>[/<size>/d<data_seed>]/final/seed<s>         once the method's selection is done
Configurations: the method's grid (`lrs`, <cfg> = lr<rate>), `trials` draws (search.py, <cfg> = t<k>), or its own
rate. The picked one has the best holdout primary metric (ties: the first in grid or trial order).
Selection runs use seed SELECT_SEED; final seeds are the study's `seeds` (never SELECT_SEED) or, with `seeds=auto`,
1, 2, ... in rounds: each method starts with min_seeds; while `stats.decide` (the verdicts' group-sequential
procedure) leaves its comparison with full unsettled (paired by seed, within one task/size/data_seed), it gets one
more seed, which full runs too. A diverged run is data: it scores as the trivial prediction.
`run(...)` runs such a study in rounds; protocol_keys.py checks its study keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config.compose import CONFIG_DIR, load_config, override_value
from ..record import SCORED, read_record
from .planning import run_spec
from .protocol_keys import SELECT_SEED, as_list
from .runner import trains_here, twin

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
    if not rec or rec.get("status") not in SCORED:  # a diverged run is data: the trivial prediction's score
        return None
    if not twin(rec, folder, compose(over), here):
        return None
    value = rec.get("metrics", {}).get(rec.get("primary_metric"))
    return float(value) if isinstance(value, (int, float)) else None


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


@dataclass
class Cell:
    """One task x size x data seed of a study: what its runs share."""
    task: str
    parts: list[str]  # the run folder's [<size>, d<data_seed>] levels, or none
    data: list[str]   # data_seed= and train_size= overrides
    where: str        # "task[/size/dN]", for the lines the study prints


def cells(study: DictConfig, pools: dict[str, int | None]) -> list[Cell]:
    """Every task x size x data seed of the study, in order."""
    data_seeds = as_list(study.data_seeds) if study.data_seeds is not None else [study.data_seed or 0]
    out = []
    for task in as_list(study.tasks):
        pool = pools.get(task)
        sizes = [None] if study.sizes is None else [s for s in as_list(study.sizes)
                                                    if s == "all" or pool is None or s <= pool]
        for size, ds in ((size, ds) for size in sizes for ds in data_seeds):
            parts = [] if size is None and study.data_seeds is None else [str(size)] * (size is not None) + [f"d{ds}"]
            data = [f"data_seed={ds}"] + ([f"train_size={'null' if size == 'all' else size}"] if size else [])
            out.append(Cell(str(task), parts, data, "/".join([str(task), *parts])))
    return out


def protocol_fields(study: DictConfig, method: str, phase: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The `protocol` field of a run's record (record.py): the study's keys and this run's phase and configuration."""
    sampler = ("tpe" if study.sampler == "tpe" else "random") if study.trials else "grid"
    return {"select": "holdout", "seeds": "auto" if str(study.seeds) == "auto" else "fixed",
            "min_seeds": int(study.min_seeds), "max_seeds": int(study.max_seeds), "margin": float(study.margin),
            "alpha": float(study.alpha), "final_rows": str(study.final_rows), "phase": phase, "config": name,
            "params": params, "budget": budget(study, method), "sampler": sampler, "picked_holdout_score": None}


def select_spec(study: DictConfig, cell: Cell, method: str, name: str, params: dict[str, Any]
                ) -> tuple[Path, list[str]]:
    """The selection run of one configuration: seed SELECT_SEED, scored on the holdout."""
    proto = protocol_fields(study, method, "select", name, params)
    return run_spec(study, cell.task, method, SELECT_SEED, [*cell.parts, "select", name],
                    [*cell.data, f"holdout={study.holdout!r}", "eval_split=holdout",
                     *(f"{k}={override_value(v)}" for k, v in params.items()), f"protocol={override_value(proto)}"])


def final_spec(study: DictConfig, cell: Cell, method: str, pick: dict[str, Any], seed: int) -> tuple[Path, list[str]]:
    """A final run of the picked configuration: scored on dev, trained on the selection's rows (final_rows=selection:
    the holdout is carved out again, so train_size draws the same rows) or on all of train (final_rows=all)."""
    rows = [f"holdout={study.holdout!r}"] if study.final_rows == "selection" else []
    return run_spec(study, cell.task, method, seed, [*cell.parts, "final"],
                    [*cell.data, *rows, *(f"{k}={override_value(v)}" for k, v in pick["params"].items()),
                     f"protocol={override_value(pick['protocol'])}"])


def selection(study: DictConfig, cell: Cell, method: str, result: Plan) -> dict[str, Any] | None:
    """Plan the method's selection runs in `result`; its pick ({params, protocol}) once every one scored, else None.
    A diverged selection run scores as the trivial prediction (its record's metrics say so)."""
    here = trains_here(study)
    configs, _ = candidates(study, method, lambda n, p: score(*select_spec(study, cell, method, n, p), here))
    specs = [select_spec(study, cell, method, name, params) for name, params in configs]
    result.runs += specs
    scores = [score(*spec, here) for spec in specs]
    if len(configs) < budget(study, method) or any(s is None for s in scores):
        result.waiting += 1
        return None
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # ties: the first
    name, params = configs[best]
    picked = read_record(specs[best][0] / "result.json") or {}
    proto = {**protocol_fields(study, method, "final", name, params), "picked_holdout_score": scores[best],
             "picked_holdout": picked.get("holdout")}
    return {"params": params, "protocol": proto}


def seed_counts(study: DictConfig, cell: Cell, picks: dict[str, dict], result: Plan) -> dict[str, int]:
    """How many final seeds each picked method runs: the study's seed list, or under seeds=auto what `stats.decide`
    says from the completed pairs with full FT (full: as many as its longest comparison)."""
    from ..stats import STOP_REASONS, decide

    if str(study.seeds) != "auto":
        return {m: len(as_list(study.seeds)) for m in picks}
    lo, hi = int(study.min_seeds), int(study.max_seeds)
    counts = {m: lo for m in picks}
    if BASELINE not in picks:
        return counts
    scores = {m: paired_scores(study, cell, m, picks[m], hi) for m in picks}
    deltas = {m: [a - b for a, b in zip(scores[m], scores[BASELINE])] for m in picks if m != BASELINE}
    for m, d in decide(deltas, float(study.margin), float(study.alpha), lo, hi).items():
        counts[m] = d["n"]
        if d["reason"]:
            where = f"{cell.task}/{m}" + "".join(f"/{p}" for p in cell.parts)
            result.stops[where] = f"{where}: stops after {d['n']} seeds: {STOP_REASONS[d['reason']]}"
    counts[BASELINE] = max([lo] + [c for m, c in counts.items() if m != BASELINE])
    return counts


def paired_scores(study: DictConfig, cell: Cell, method: str, pick: dict, most: int) -> list[float]:
    """The method's final scores for seeds 1, 2, ... up to the first one not completed."""
    out = []
    for seed in range(1, most + 1):
        value = score(*final_spec(study, cell, method, pick, seed), trains_here(study))
        if value is None:
            break
        out.append(value)
    return out


def plan(study: DictConfig, pools: dict[str, int | None] | None = None) -> Plan:
    """The runs of a select=holdout study that can be named now (completed ones included: the runner skips them)."""
    result = Plan()
    seeds = list(range(1, int(study.max_seeds) + 1)) if str(study.seeds) == "auto" else \
        [int(s) for s in as_list(study.seeds)]
    for cell in cells(study, pools or {}):
        picks = {}
        for method in (str(m) for m in as_list(study.methods)):
            pick = selection(study, cell, method, result)
            if pick is not None:
                picks[method] = pick
        for method, n in seed_counts(study, cell, picks, result).items():
            result.runs += [final_spec(study, cell, method, picks[method], s) for s in seeds[:n]]
    return result


def run(study: DictConfig, name: str, pools: dict[str, int | None], dry_run: bool) -> int:
    """A select=holdout study in rounds: plan what can be named now, run (or launch) what is not completed, re-plan
    from the new result.json files, until a round adds nothing; a run that failed is not tried twice in one call."""
    from ..engine import preflight
    from . import runner, search
    from .planning import print_plan

    out = Path(study.out)
    local = trains_here(study)
    runner.check_versions(out)  # a record of an older identity would never be skipped: one line, before anything runs
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
        todo = [i for i, (folder, cfg) in enumerate(configs)
                if folder not in tried and not runner.completed(folder, cfg, local)]
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
