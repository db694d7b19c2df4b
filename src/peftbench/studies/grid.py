"""`peftbench study NAME key=value ...`: a grid of runs (methods x tasks x sizes x seeds), run in order, resumable.

A study is a config in configs/study/ (or a .yaml path). Its own keys are methods (a list, or `all`: every method
config), tasks, seeds, sizes, out and run (overrides it gives every run), and optionally lrs: learning-rate grids,
one list for every method (`lrs=[1e-4,1e-3]`) or one per method (`lrs: {full: [...], lora: [...]}`,
`lrs.lora=[...]`); a method without a grid runs at its own rate. Any other key=value on the command line goes to
every run as it is.
`plan()` turns a study into a plain list of (run folder, overrides), so a launcher can take the same list.
A run whose result.json is completed with the same `record.identity` is skipped; an unfinished one with the same
identity and a checkpoint resumes from it; a failed run does not stop the study, which then exits 1.
With `launcher=joblib|ray|submitit_slurm|...` the same runs go to a Hydra launcher instead (launch.py); `hydra.*`
overrides on the command line configure it (e.g. hydra.launcher.n_jobs=4).
`select=holdout` (with trials, space, sampler, seeds=auto, data_seed(s), holdout, margin, alpha) is the selection
protocol: its runs depend on completed ones, so protocol.py plans and runs it in rounds (docs/protocol.md).
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from itertools import product
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config.compose import CONFIG_DIR, group_options, load_config, load_yaml
from ..engine import preflight, signals
from . import protocol, protocol_keys, search
from .planning import pool_size, print_plan, run_spec, task_folder  # noqa: F401
from .search import lr_folder, lr_grid  # noqa: F401  (grids are a budget of their own size)
from ..errors import UserError
from .runner import check_versions, completed, run_one, trains_here  # noqa: F401  (launch.py's jobs use run_one too)
from .stop import stopped

STUDY_KEYS = ("methods", "tasks", "seeds", "sizes", "out", "run")
OPTIONAL_KEYS = {"launcher": None, "launch": [], "lrs": None, "parallel": 1}  # launch: hydra.* overrides for the launcher
# the holdout protocol's keys (docs/protocol.md); data_seed null: 0 under select=holdout, else the training seed
PROTOCOL_KEYS = {"select": "dev", "holdout": 0.1, "data_seed": None, "data_seeds": None, "trials": None, "space": {},
                 "sampler": "random", "min_seeds": 3, "max_seeds": 10, "margin": 1.0, "alpha": 0.05,
                 "final_rows": "selection"}
PER_RUN = {"task": "tasks=[...]", "method": "methods=[...]", "seed": "seeds=[...]"}


def study_file(name: str) -> Path:
    """A study preset's file (configs/study/NAME.yaml), or NAME itself when it is a .yaml path."""
    return Path(name) if name.endswith((".yaml", ".yml")) else CONFIG_DIR / "study" / f"{name}.yaml"


def load_study(name: str, overrides: list[str] | None = None, base: dict | None = None) -> DictConfig:
    """The study config: the named file (or `base`, a study given whole: the Python API's keywords), study keys from
    `overrides`, the other overrides appended to `run`."""
    path = study_file(name)
    if base is None and not path.is_file():
        raise UserError(f"unknown study '{name}': pick one of {', '.join(group_options('study'))} or give a .yaml file")
    study = OmegaConf.create(base if base is not None else load_yaml(path, "study file"))
    missing = [k for k in STUDY_KEYS if k not in study]
    if missing:
        raise UserError(f"{path}: missing study key(s) {missing}")
    for key, default in {**OPTIONAL_KEYS, **PROTOCOL_KEYS}.items():
        study.setdefault(key, default)
    passthrough, launch = [], [str(x) for x in study.launch]
    for o in overrides or []:
        if "=" not in o:
            raise UserError(f"argument '{o}' is not key=value: write e.g. methods=[full,bitfit] seeds=[42,43]")
        key = o.split("=", 1)[0]
        if key.lstrip("+~").startswith(("hydra.", "hydra/")):
            launch.append(o)
        elif key.split(".")[0] in (*STUDY_KEYS, "launcher", "lrs", "parallel", *PROTOCOL_KEYS, "ci_target"):
            try:
                value = OmegaConf.from_dotlist([o])
                if key in ("lrs", "space", "data_seeds", "seeds"):  # a whole value replaces the preset's
                    study[key] = value[key]
                else:
                    study.merge_with(value)
            except OmegaConfBaseException as e:
                hint = "; lrs=[...] already gave every method one grid: drop it, or " \
                    "put per-method grids in the study file" if key.startswith("lrs.") else ""
                raise UserError(f"study: cannot parse '{o}': {str(e).splitlines()[0]}{hint}") from None
        elif key.lstrip("+~") in PER_RUN:
            raise UserError(f"'{o}': a study sets {key} per run; write {PER_RUN[key.lstrip('+~')]} instead")
        else:
            passthrough.append(o)
    if not OmegaConf.is_list(study.methods) and str(study.methods) == "all":  # every method config, baseline first
        study.methods = sorted(group_options("method"), key=lambda m: (m != "full", m))
    study.run = [str(x) for x in (study.run or [])] + passthrough
    study.launch = launch
    _check(study)
    return study


def _as_list(study: DictConfig, key: str) -> list:
    value = study[key]
    return list(value) if OmegaConf.is_list(value) else [value]


def _check(study: DictConfig) -> None:
    empty = [k for k in ("methods", "tasks", "seeds", "sizes") if OmegaConf.is_list(study[k]) and not len(study[k])]
    if empty:  # a study of zero runs would exit 0 having done nothing
        raise UserError(f"{empty[0]}=[] is empty, so the study plans no runs: give at least one, e.g. "
                        + {"methods": "methods=[lora]", "tasks": "tasks=[rte]", "seeds": "seeds=[42]",
                           "sizes": "sizes=[1000,all] (or sizes=null: the whole training set)"}[empty[0]])
    for key, group in (("methods", "method"), ("tasks", "task")):
        values = _as_list(study, key)
        unknown = [str(v) for v in values if str(v) not in group_options(group)
                   and not (group == "task" and str(v).endswith((".yaml", ".yml")))]  # a task file: load_config checks it
        if unknown or not values:
            raise UserError(f"{key}={values}: unknown {group} {unknown}; pick from {', '.join(group_options(group))}")
    for s in ([] if str(study.seeds) == "auto" else _as_list(study, "seeds")):
        if isinstance(s, bool) or not isinstance(s, int):
            raise UserError(f"seeds: {s!r} is not an integer; write e.g. seeds=[42,43,44] (or seeds=auto)")
    if study.sizes is not None:
        for s in _as_list(study, "sizes"):
            if s != "all" and (isinstance(s, bool) or not isinstance(s, int) or s <= 0):
                raise UserError(f"sizes: {s!r} is not a positive integer or 'all'; write e.g. sizes=[500,1000,all]")
        if any(o.split("=", 1)[0].lstrip("+~") == "train_size" for o in study.run):
            raise UserError("train_size and sizes both given: a study with sizes sets train_size per run; drop one")
    _check_lrs(study)
    protocol_keys.check(study)
    if not study.out:
        raise UserError("out is empty: give the study folder, e.g. out=studies/glue")
    if isinstance(study.parallel, bool) or not isinstance(study.parallel, int) or study.parallel < 1:
        raise UserError(f"parallel={study.parallel!r}: give the number of runs to train at once, e.g. parallel=2")
    if study.parallel > 1 and study.launcher:
        raise UserError(f"parallel={study.parallel} and launcher={study.launcher} both given: the launcher decides how "
                        "many runs go at once (e.g. hydra.launcher.n_jobs); drop one")
    if study.launch and not study.launcher:
        raise UserError(f"{study.launch[0]}: hydra.* settings configure a launcher; add launcher=joblib (or ray, "
                        "submitit_slurm, ...) or drop them")
    if study.launcher:
        from .launch import check_launcher

        check_launcher(str(study.launcher), list(study.launch))


def _check_lrs(study: DictConfig) -> None:
    if study.lrs is None:
        return
    if any(o.split("=", 1)[0].lstrip("+~") == "lr" for o in study.run):
        raise UserError("lr and lrs both given: a study with lrs sets lr per run; drop one (lrs=[X] for one rate)")
    grids = dict(study.lrs) if OmegaConf.is_dict(study.lrs) else {None: study.lrs}
    unknown = [str(m) for m in grids if m is not None and str(m) not in group_options("method")]
    if unknown:
        raise UserError(f"lrs: unknown method {unknown}; give grids for {', '.join(group_options('method'))}")
    for method, grid in grids.items():
        values = list(grid) if OmegaConf.is_list(grid) else [grid]
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0]
        if bad or not values:
            where = f"lrs.{method}" if method is not None else "lrs"
            raise UserError(f"{where}: {bad or values} is not a list of positive rates; write e.g. lrs=[1e-4,3e-4,1e-3]")


def configurations(study: DictConfig, method: str) -> list[tuple[str | None, list[str]]]:
    """The method's configurations under select=dev as (folder name, overrides): its lrs grid (lr<rate>), its trials
    (t<k>, search.py's draws), or [(None, [])]: its own rate, no folder level."""
    from ..config.compose import override_value

    if study.trials:
        from . import search

        draws = search.draws(method, search.space(method, study.space), int(study.trials), str(study.sampler))
        return [(f"t{k}", [f"{key}={override_value(v)}" for key, v in p.items()]) for k, p in enumerate(draws)]
    grid = lr_grid(study, method)
    return [(None, [])] if grid is None else [(lr_folder(lr), [f"lr={lr!r}"]) for lr in grid]


def plan(study: DictConfig, pools: dict[str, int | None] | None = None) -> list[tuple[Path, list[str]]]:
    """Every run of the study as (run folder, overrides for `load_config`): tasks, methods, sizes, rates, seeds.

    Folders are <out>/<task>/<method>[/<size>][/d<data_seed>][/lr<rate> | /t<trial>]/seed<seed> (d<data_seed> with
    data_seeds only). A select=holdout study's runs depend on its completed ones: see protocol.plan.

    `pools` maps a task to its number of training examples; sizes above it are left out (and 'all' kept).
    """
    if study.select == "holdout":
        return protocol.plan(study, pools).runs
    pools = pools or {}
    runs = []
    data_seeds = [None] if study.data_seeds is None else _as_list(study, "data_seeds")
    for task in _as_list(study, "tasks"):
        pool = pools.get(task)
        sizes = [s for s in ([None] if study.sizes is None else _as_list(study, "sizes"))
                 if s in (None, "all") or pool is None or s <= pool]
        for method, size, ds in product(_as_list(study, "methods"), sizes, data_seeds):
            parts = [str(size)] * (size is not None) + [f"d{ds}"] * (ds is not None)
            data = [f"train_size={'null' if size == 'all' else size}"] * (size is not None)
            if ds is not None or study.data_seed is not None:
                data.append(f"data_seed={ds if ds is not None else study.data_seed}")
            for (name, params), seed in product(configurations(study, str(method)), _as_list(study, "seeds")):
                runs.append(run_spec(study, task, method, seed, parts + [name] * (name is not None), data + params))
    return runs


def first_seed(study: DictConfig) -> int:
    return 1 if str(study.seeds) == "auto" else int(_as_list(study, "seeds")[0])


def pool_sizes(study: DictConfig) -> dict[str, int | None]:
    """Pool size per task, printing a note for every size dropped because it is above the pool."""
    if study.sizes is None:
        return {}
    pools = {}
    for task in _as_list(study, "tasks"):
        cfg = load_config(list(study.run) + [f"task={task}", f"method={_as_list(study, 'methods')[0]}",
                                             f"seed={first_seed(study)}"])
        pools[task] = pool_size(cfg)
        above = [s for s in _as_list(study, "sizes") if s != "all" and pools[task] is not None and s > pools[task]]
        if above:
            print(f"note: {task} has {pools[task]:,} training examples; sizes {above} dropped ('all' = {pools[task]:,})")
    return pools


def run_study(name: str, overrides: list[str] | None = None, dry_run: bool = False, base: dict | None = None,
              command: str | None = None) -> int:
    """Run every planned run that has no completed twin; print a line per run and a summary; 1 if any failed.

    SIGTERM or Ctrl-C: the runs that train save a checkpoint, no run starts, and `errors.Stopped` says to run
    `command` (default: this study's `peftbench study` line) again to resume; a second signal stops at once (stop.py).
    """
    command = command or shlex.join(["peftbench", "study", name, *(overrides or [])])
    with signals.watch():
        try:
            return _run_study(name, overrides, dry_run, base)
        except KeyboardInterrupt as e:
            raise stopped(Path(name).stem, command, e) from None


def _run_study(name: str, overrides: list[str] | None, dry_run: bool, base: dict | None) -> int:
    study = load_study(name, overrides, base)
    try:
        pools = pool_sizes(study)
    except UserError:
        pools = {}  # unreadable data: the preflight below names it, with every other problem
    if study.select == "holdout":
        return protocol.run(study, name, pools, dry_run)
    runs = plan(study, pools)
    if not runs:  # every size above the data: exit 0 having done nothing would read as success
        raise UserError(f"study {Path(name).stem} plans no runs: every size in sizes={list(study.sizes)} is above its "
                        "task's training examples; give smaller sizes or 'all'")
    # Compose every config first: a bad key fails here, in one line, before hours of training.
    configs = [(folder, load_config(over)) for folder, over in runs]
    out = Path(study.out)
    local = trains_here(study)
    check_versions(out)  # a record of an older identity would never be skipped: one line, before anything runs
    preflight.check([cfg for _, cfg in configs], out, local)  # models, data, folder: every problem at once, before run 1
    if dry_run:
        print_plan(configs, out, local)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(study, out / f"study-{Path(name).stem}.yaml")
    if study.launcher or study.parallel > 1:
        from .launch import launch_study

        code = launch_study(study, name, configs, runs)
        search.store(out, study, [(f, over, cfg) for (f, over), (_, cfg) in zip(runs, configs)])
        return code
    counts: Counter[str] = Counter()
    t_study = time.perf_counter()
    for i, (folder, cfg) in enumerate(configs, 1):
        counts[run_one(folder, cfg, f"[{i}/{len(configs)}] {folder.relative_to(out)}")] += 1
    # trials=N: the Optuna mirror of the records (OUT/optuna.db)
    search.store(out, study, [(f, over, cfg) for (f, over), (_, cfg) in zip(runs, configs)])
    print(f"study {Path(name).stem}: {counts['ran']} ran, {counts['skipped']} skipped, {counts['failed']} failed "
          f"in {time.perf_counter() - t_study:.0f} s -> {out}")
    return 1 if counts["failed"] else 0
