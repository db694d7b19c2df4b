"""What a study's runs look like before any trains: one run's folder and overrides (`run_spec`), a run folder's task
part, a task's pool of training examples, and the dry-run listing with its time estimate. grid.py and protocol.py (its
select=holdout rounds) both use them."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ..config.compose import load_yaml
from ..errors import UserError
from .runner import completed


def task_folder(task: str) -> str:
    """A run folder's task part: the task's name, also for a task file (its `name`, else its stem), never a path."""
    if not task.endswith((".yaml", ".yml")):
        return task
    try:
        name = load_yaml(Path(task).expanduser(), "task file").get("name")
    except (UserError, AttributeError):
        name = None  # an unreadable file: load_config names the problem when the run is composed
    return str(name or Path(task).stem).replace("/", "_")


def run_spec(study: DictConfig, task: str, method: str, seed: int, parts: list[str], overrides: list[str]
             ) -> tuple[Path, list[str]]:
    """One planned run: its folder <out>/<task>/<method>/<parts...>/seed<seed> and its overrides for `load_config`.

    The W&B group first and the study's `run` next, so a tracking.group= of the user's wins and the planner's own keys
    (task, method, seed, `overrides`) win over `run`."""
    out = Path(study.out)
    folder = out.joinpath(task_folder(str(task)), str(method), *parts, f"seed{seed}")
    return folder, [f"tracking.group={out.name}", *study.run, f"task={task}", f"method={method}", f"seed={seed}",
                    *overrides, f"out={folder}"]


def pool_size(cfg: DictConfig) -> int | None:
    """Training examples available to `cfg`'s task: the task module's `pool_size(cfg)`, GLUE's train.tsv rows, or None."""
    from ..data.tasks import TASKS

    module = TASKS[cfg.task.kind]
    if hasattr(module, "pool_size"):
        return module.pool_size(cfg)
    if cfg.data_dir is None and not cfg.task.get("data_dir"):
        return None  # the data would come from the hub: counting it would download it
    if cfg.task.kind == "glue":
        return len(module.read_split(cfg, "train")[1])
    if cfg.task.kind == "squad":  # questions with a usable answer span: the pool squad.load draws train_size from
        return sum(1 for e in module.read_split(cfg, "train")[0] if e["spans"])
    return None


def print_plan(configs: list[tuple[Path, DictConfig]], out: Path, here: bool = True) -> None:
    """Every planned run and what a real invocation would do with it (`here`: the runs train on this machine, so
    its device and precision decide which are completed); nothing is written."""
    from ..data.batches import total_steps
    from ..engine.runtime import duration, run_seconds

    todo, seconds, unknown, pools = 0, 0.0, 0, {}
    for i, (folder, cfg) in enumerate(configs, 1):
        done = completed(folder, cfg, here)
        todo += not done
        print(f"[{i}/{len(configs)}] {folder.relative_to(out)}: {'completed' if done else 'to run'}")
        if not done:  # the measured run-time model (runtime.py): steps x seconds per step on a 2-core CPU
            key = (cfg.task.name, str(cfg.data_dir), str(cfg.task.get("data_dir")), str(cfg.task.get("train")))
            if cfg.train_size is None and key not in pools:
                try:
                    pools[key] = pool_size(cfg)
                except (UserError, OSError):
                    pools[key] = None
            rows = cfg.train_size or pools.get(key)
            est = run_seconds(cfg, total_steps(cfg, rows)) if rows else None
            seconds, unknown = seconds + (est or 0.0), unknown + (est is None)
    print(f"{len(configs)} runs, {todo} to run, {len(configs) - todo} completed -> {out}")
    if todo > unknown:
        print(f"estimated time: about {duration(seconds)} of training for {todo - unknown} of the runs to go on a "
              "2-core CPU (fp32; src/peftbench/engine/runtime.py, measured by bench/run_time.py; eval not counted)"
              + (f"; {unknown} runs without an estimate (data from the hub or a model it cannot read)" if unknown
                 else "") + ". A GPU takes a small fraction of it.")
