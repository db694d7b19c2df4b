"""Studies on Hydra launchers: joblib (local processes), Ray (a cluster), submitit (SLURM), or any other.

`peftbench study NAME launcher=L hydra.launcher.KEY=V ...` plans the runs as usual, writes OUT/plan.json (every
run's folder and overrides) and hands the runs still to do to Hydra:

    python -m peftbench.studies.launch --multirun hydra/launcher=L plan=OUT/plan.json job=3,4,7 hydra.sweep.dir=...

This module is that Hydra app: each job trains one run of the plan through `runner.run_one`, so a launched run is
the same as a sequential one (same folder, skip and resume rules, result.json) and `peftbench report` reads it
unchanged. Hydra's own per-job log and config go to OUT/launches/<time>/<job>/.

`parallel=N` (no launcher) runs the same app as N processes at a time on this machine, each run in a process of its
own with its own memory figures. On a machine with GPUs, worker slot s (of N) trains on GPU s % count
(CUDA_VISIBLE_DEVICES): N up to the GPU count gives every run its own GPU; more, and runs share (small models leave
most of one idle), and each run's result.json says with how many others (`device_shared_with`), so the report does
not read its times as a solo speed.

SIGTERM or Ctrl-C on the study stops the launcher, its workers and their runs together (stop.py); a job that starts
after OUT/plan.stop was written trains nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ..config.compose import CONFIG_DIR, compose_config, load_config
from ..engine import signals
from ..errors import UserError
from ..record import SHARED_ENV
from .runner import completed, run_one, trains_here
from .stop import Supervisor

# launcher name -> the Hydra plugin it needs (`pip install "peftbench[launchers]"` brings all three)
PLUGINS = {"basic": None, "joblib": "hydra_plugins.hydra_joblib_launcher",
           "ray": "hydra_plugins.hydra_ray_launcher",
           "submitit_local": "hydra_plugins.hydra_submitit_launcher",
           "submitit_slurm": "hydra_plugins.hydra_submitit_launcher"}
# our presets (configs/hydra/launcher/) -> the launcher each extends
PRESETS = {p.stem: str(OmegaConf.load(p).defaults[0]) for p in (CONFIG_DIR / "hydra" / "launcher").glob("*.yaml")}


def check_launcher(name: str, settings: list[str]) -> None:
    """One line if `name` is not a launcher we know, its plugin is not installed, or a hydra.* setting is wrong."""
    own = any(o.lstrip("+").startswith("hydra.searchpath=") for o in settings)  # a user's hydra/launcher/NAME.yaml
    if name not in PLUGINS and name not in PRESETS and not own:
        raise UserError(f"unknown launcher '{name}': pick one of {', '.join([*PLUGINS, *PRESETS])}, or add "
                        "hydra.searchpath=[file:///DIR] where DIR/hydra/launcher/NAME.yaml is yours")
    plugin = PLUGINS.get(PRESETS.get(name, name))
    if plugin and importlib.util.find_spec(plugin) is None:
        package = plugin.split(".")[1].replace("_", "-")
        raise UserError(f"launcher '{name}' needs the {package} plugin: pip install \"peftbench[launchers]\"")
    compose_config("launch", ["plan=x", "job=0", f"hydra/launcher={name}", *settings],
                   f"`python -m peftbench.studies.launch --cfg hydra hydra/launcher={name} plan=x job=0` lists the keys; "
                   "add a new one with +hydra.KEY=VALUE", hydra_node=True)


def write_plan(out: Path, name: str, runs: list[tuple[Path, list[str]]]) -> Path:
    """OUT/plan.json: where the study was started (runs resolve relative paths from there), its folder and every run."""
    path = out / "plan.json"
    entries = [{"out": str(folder), "overrides": over} for folder, over in runs]
    path.write_text(json.dumps({"study": name, "cwd": os.getcwd(), "root": str(out), "runs": entries}, indent=1))
    return path.resolve()


def launch_study(study: DictConfig, name: str, configs: list[tuple[Path, DictConfig]],
                 runs: list[tuple[Path, list[str]]]) -> int:
    """Send the runs without a completed twin to the study's launcher, wait, and sum up from their result.json."""
    out, here = Path(study.out), trains_here(study)
    todo = []
    for i, (folder, cfg) in enumerate(configs):
        if completed(folder, cfg, here):
            print(f"[{i + 1}/{len(configs)}] {folder.relative_to(out)}: skipped, completed", flush=True)
        else:
            todo.append(i)
    if not todo:
        print(f"study {Path(name).stem}: all {len(configs)} runs completed; nothing to launch -> {out}")
        return 0
    plan = write_plan(out, name, runs)
    logs = out / "launches" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")  # as printed: relative, as `out` is
    sweep_dir = logs.resolve()
    t0 = time.perf_counter()
    with Supervisor(stop_file(plan), [configs[i][0] for i in todo]) as supervisor:
        if study.launcher:
            cmd = [sys.executable, "-m", "peftbench.studies.launch", "--multirun", f"hydra/launcher={study.launcher}",
                   f"plan={plan}", f"job={','.join(map(str, todo))}", f"hydra.sweep.dir={sweep_dir}", *study.launch]
            print(f"launching {len(todo)} of {len(configs)} runs on {study.launcher}:\n  {shlex.join(cmd)}", flush=True)
            proc = supervisor.start(cmd)
            supervisor.wait(lambda: proc.poll() is not None)
            code = proc.returncode
        else:
            code = run_parallel(plan, todo, int(study.parallel), logs, supervisor)
    if supervisor.stopping:
        raise signals.Interrupted("stopped")  # run_study's last line says how to resume
    done = [i for i in todo if completed(*configs[i], here)]
    missing = [str(configs[i][0]) for i in todo if i not in done]
    print(f"study {Path(name).stem}: {len(done)} ran, {len(configs) - len(todo)} skipped, {len(missing)} failed or "
          f"missing in {time.perf_counter() - t0:.0f} s -> {out} (Hydra logs: {logs})")
    if missing:
        print("not completed: " + ", ".join(missing))
    if code:
        print(f"the launcher exited with {code}: its error is above; job logs are in {logs}")
    return 1 if missing or code else 0


def stop_file(plan: Path) -> Path:
    """OUT/plan.stop: written when the study is told to stop; a job that starts after it trains nothing."""
    return plan.with_suffix(".stop")


def gpu_slots(n: int) -> list[dict[str, str]]:
    """The environment of each of n worker slots: slot s on GPU s % count of the GPUs this process sees, and how many
    other slots that GPU has (SHARED_ENV, which the run records); n empty ones on a machine without a GPU."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        return [{} for _ in range(n)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # torch's index i is the i-th of these
    ids = [x.strip() for x in visible.split(",")][:count] if visible else [str(i) for i in range(count)]
    return [{"CUDA_VISIBLE_DEVICES": ids[s % count], SHARED_ENV: str(len(range(s % count, n, count)) - 1)}
            for s in range(n)]


def run_parallel(plan: Path, todo: list[int], n: int, logs: Path, supervisor: Supervisor) -> int:
    """Plan entries `todo`, n processes at a time on this machine, each logging to logs/<job>.log (printed as given);
    each prints its one summary line when done.

    Every process gets cores/n CPU threads (unless OMP_NUM_THREADS is set), so n runs do not oversubscribe the CPU,
    and a GPU of its own while there are as many (gpu_slots): a job takes a free slot and gives it back when done.
    """
    sweep_dir = logs.resolve()  # what the jobs are told: absolute, as a launcher is told its sweep folder
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    slots = gpu_slots(min(n, len(todo)))
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    for s in range(len(slots)):
        free.put(s)
    gpus = sorted({e["CUDA_VISIBLE_DEVICES"] for e in slots if e})
    print(f"running {len(todo)} runs, {n} at a time (OMP_NUM_THREADS={env['OMP_NUM_THREADS']}"
          + (f"; GPUs {','.join(gpus)}, {-(-len(slots) // len(gpus))} runs at most on each" if gpus else "")
          + f"); logs in {logs}", flush=True)

    def one(job: int) -> int:
        log = sweep_dir / f"{job}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "peftbench.studies.launch", f"plan={plan}", f"job={job}",
               f"hydra.run.dir={sweep_dir / str(job)}"]
        slot = free.get()
        try:
            with open(log, "w") as f:
                proc = supervisor.start(cmd, stdout=f, stderr=subprocess.STDOUT,
                                        env={**env, **slots[slot], "TQDM_DISABLE": "1"})
                if proc is None:  # the study is stopping
                    return 0
                code = proc.wait()
        finally:
            free.put(slot)
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.startswith("[")]
        print(lines[-1] if lines else f"[job {job}] exited with {code}: see {log}", flush=True)
        return code

    with ThreadPoolExecutor(n) as pool:
        jobs = [pool.submit(one, job) for job in todo]
        supervisor.wait(lambda: all(j.done() for j in jobs))  # here, not in pool.map: signals reach the main thread
    return max((j.result() for j in jobs), default=0)


@hydra.main(config_path="../configs", config_name="launch", version_base=None)
def main(cfg: DictConfig) -> str:
    """One Hydra job: run number `cfg.job` of the plan; returns 'ran', 'skipped', 'failed' or 'stopped'."""
    plan = json.loads(Path(cfg.plan).read_text())
    os.chdir(plan["cwd"])  # relative paths in the overrides (data_dir=..., out=...) mean what they meant there
    run = plan["runs"][cfg.job]
    folder = Path(run["out"])
    # as a sequential study prints it: the folder within the study's
    label = f"[{cfg.job + 1}/{len(plan['runs'])}] {folder.relative_to(plan['root']) if 'root' in plan else folder}"
    with signals.watch():  # a stop signal now ends this job's run at its next step, with a checkpoint
        if stop_file(Path(cfg.plan)).exists():
            print(f"{label}: not started, the study is stopping", flush=True)
            return "stopped"
        try:
            run_cfg = load_config(run["overrides"])
        except UserError as e:  # the plan was checked when written; this is a changed package or data folder
            print(f"{label}: FAILED: {e}", flush=True)
            return "failed"
        try:
            return run_one(folder, run_cfg, label)
        except KeyboardInterrupt:  # run_one said so; the launcher goes on to its next job, which stops at once
            return "stopped"


if __name__ == "__main__":
    main()
