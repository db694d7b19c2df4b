"""Studies on Hydra launchers: joblib (two runs at once), Ray (a local instance on loopback), submitit (local
executor, and the SLURM preset's config), all landing where `peftbench study` puts runs, equal to sequential runs."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from peftbench.cli import main
from peftbench.errors import UserError
from peftbench.studies.grid import load_study

TINY = ["model=tiny", "max_steps=3", "train_size=12", "tracking.mode=disabled", "eval_batch_size=32"]


def study_args(out, glue_dir, *extra):
    return ["study", "glue", "methods=[bitfit,lora]", "tasks=[rte]", f"data_dir={glue_dir}", f"out={out}", *TINY,
            *extra]


def record(folder):
    return json.loads((folder / "result.json").read_text())


def assert_same_as_sequential(tmp_path, glue_dir, launched, methods=("bitfit", "lora")):
    """The launched runs equal a plain sequential study: same metrics, same trained tensors (threads may differ)."""
    seq = tmp_path / "sequential"
    assert main(study_args(seq, glue_dir, f"methods=[{','.join(methods)}]")) == 0
    for m in methods:
        a, b = launched / "rte" / m / "seed42", seq / "rte" / m / "seed42"
        assert record(a)["status"] == "completed" and record(a)["metrics"] == record(b)["metrics"]
        da, db = load_file(a / "delta.safetensors"), load_file(b / "delta.safetensors")
        assert da.keys() == db.keys() and all(torch.allclose(da[k], db[k], atol=1e-6) for k in da)


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_joblib_runs_two_at_once_and_skips_them_after(tmp_path, glue_dir, capsys):
    out = tmp_path / "s"
    assert main(study_args(out, glue_dir, "launcher=joblib", "hydra.launcher.n_jobs=2")) == 0
    text = capsys.readouterr().out
    assert "launching 2 of 2 runs on joblib" in text and "2 ran, 0 skipped, 0 failed or missing" in text
    pids = {record(out / "rte" / m / "seed42")["pid"] for m in ("bitfit", "lora")}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes, not this one
    assert json.loads((out / "plan.json").read_text())["runs"][1]["out"] == str(out / "rte" / "lora" / "seed42")
    assert list(out.glob("launches/*/0/.hydra/overrides.yaml"))  # Hydra's own record of each job
    assert_same_as_sequential(tmp_path, glue_dir, out)
    assert main(study_args(out, glue_dir, "launcher=joblib")) == 0
    assert "all 2 runs completed; nothing to launch" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "r")]) == 0  # the report reads launched runs unchanged
    assert "| bitfit |" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_parallel_runs_two_processes_at_once_equal_to_sequential(tmp_path, glue_dir, capsys):
    out = tmp_path / "p"
    assert main(study_args(out, glue_dir, "parallel=2")) == 0
    text = capsys.readouterr().out
    assert "running 2 runs, 2 at a time" in text and "2 ran, 0 skipped, 0 failed or missing" in text
    # each run's own summary line comes through, its folder named within the study's as a sequential study names it
    assert re.search(r"^\[1/2\] rte/bitfit/seed42: accuracy", text, re.M)
    assert f"logs in {out / 'launches'}" in text
    pids = {record(out / "rte" / m / "seed42")["pid"] for m in ("bitfit", "lora")}
    assert len(pids) == 2 and os.getpid() not in pids
    assert_same_as_sequential(tmp_path, glue_dir, out)
    assert main(study_args(out, glue_dir, "parallel=2")) == 0  # again: nothing left to run
    assert "all 2 runs completed; nothing to launch" in capsys.readouterr().out


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_ray_on_a_local_instance(tmp_path, glue_dir, monkeypatch, capsys, ray_cluster):
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a single-node (loopback) setup
    out = tmp_path / "s"
    assert main(study_args(out, glue_dir, "launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}",
                           "hydra.launcher.ray.remote.num_gpus=0")) == 0
    assert "2 ran, 0 skipped, 0 failed or missing" in capsys.readouterr().out
    assert_same_as_sequential(tmp_path, glue_dir, out)


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_submitit_local_run_and_the_slurm_preset(tmp_path, glue_dir, capsys):
    out = tmp_path / "s"
    assert main(study_args(out, glue_dir, "methods=[bitfit]", "launcher=submitit_local",
                           "hydra.launcher.timeout_min=10")) == 0
    assert "1 ran, 0 skipped" in capsys.readouterr().out
    assert list(out.glob("launches/*/.submitit/*/*_log.out"))  # submitit ran it as its own job
    assert_same_as_sequential(tmp_path, glue_dir, out, methods=("bitfit",))
    # SLURM itself is not here: check what the preset would submit
    shown = subprocess.run([sys.executable, "-m", "peftbench.studies.launch", "--cfg", "hydra", "hydra/launcher=slurm_gpu",
                            "plan=p.json", "job=0", "hydra.launcher.partition=gpu"],
                           capture_output=True, text=True, check=True).stdout
    for line in ["_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                 "partition: gpu", "gpus_per_node: 1", "max_num_timeout: 3", "name: peftbench"]:
        assert line in shown


@pytest.mark.parametrize("args,message", [
    (["launcher=nope"], "unknown launcher 'nope': pick one of basic, joblib, ray,"),
    (["hydra.launcher.n_jobs=2"], "hydra.launcher.n_jobs=2: hydra.* settings configure a launcher"),
    (["launcher=ray", "hydra.launcher.ray.remote.num_gpus=1"],
     "Could not override 'hydra.launcher.ray.remote.num_gpus'. (`python -m peftbench.studies.launch --cfg hydra"),
])
def test_bad_launcher_input(args, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_study("glue", args)


def test_a_launcher_preset_of_ones_own(tmp_path):
    (tmp_path / "hydra" / "launcher").mkdir(parents=True)
    (tmp_path / "hydra" / "launcher" / "mine.yaml").write_text("defaults:\n  - joblib\n\nn_jobs: 3\n")
    study = load_study("glue", ["launcher=mine", f"hydra.searchpath=[file://{tmp_path}]"])
    assert study.launcher == "mine" and study.launch == [f"hydra.searchpath=[file://{tmp_path}]"]
    with pytest.raises(UserError, match="Could not find 'hydra/launcher/other'"):
        load_study("glue", ["launcher=other", f"hydra.searchpath=[file://{tmp_path}]"])


def test_a_missing_plugin_is_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("hydra_plugins") else real(name, *a))
    with pytest.raises(UserError, match=r'launcher \'slurm_gpu\' needs the hydra-submitit-launcher plugin: pip'):
        load_study("glue", ["launcher=slurm_gpu"])


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_failed_launched_run_is_reported(tmp_path, glue_dir, capsys):
    dev = glue_dir / "glue" / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text(encoding="utf-8").replace("\tentailment\n", "\tmaybe\n", 1), encoding="utf-8")
    out = tmp_path / "s"
    assert main(study_args(out, glue_dir, "methods=[bitfit]", "launcher=basic")) == 1
    text = capsys.readouterr().out
    assert "0 ran, 0 skipped, 1 failed or missing" in text and f"not completed: {out}/rte/bitfit/seed42" in text
    assert record(out / "rte" / "bitfit" / "seed42")["status"] == "failed"


@pytest.mark.parametrize("visible,n,want", [
    (None, 2, [("0", "0"), ("1", "0")]),                   # as many runs as GPUs: each its own
    (None, 3, [("0", "1"), ("1", "0"), ("0", "1")]),       # one more: GPU 0 holds two runs, each says 1 other
    ("5,7", 4, [("5", "1"), ("7", "1"), ("5", "1"), ("7", "1")]),  # the GPUs this process was given, by their ids
])
def test_parallel_slots_spread_over_the_gpus(monkeypatch, visible, n, want):
    from peftbench.record import SHARED_ENV
    from peftbench.studies.launch import gpu_slots

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert [(e["CUDA_VISIBLE_DEVICES"], e[SHARED_ENV]) for e in gpu_slots(n)] == want
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_slots(n) == [{}] * n  # no GPU: nothing set, runs record device_shared_with null


def test_parallel_jobs_take_free_gpu_slots(monkeypatch, tmp_path, capsys):
    """parallel=2 on two (faked) GPUs: 5 jobs, never two at once on one GPU, every one told it had its GPU alone."""
    import threading
    import time
    import types

    from peftbench.record import SHARED_ENV
    from peftbench.studies import launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    lock, busy, seen, others_done = threading.Lock(), set(), [], threading.Semaphore(0)

    def start(cmd, stdout, env, **kw):  # the Supervisor's start: a finished "process" per job
        gpu = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            assert gpu not in busy, f"GPU {gpu} given to two jobs at once"
            busy.add(gpu)
            seen.append((cmd[4], gpu, env[SHARED_ENV]))
        if cmd[4] == "job=0":  # job 0 holds its GPU until the 4 others have come and gone
            for _ in range(4):
                assert others_done.acquire(timeout=60)
        time.sleep(0.01)
        with lock:
            busy.discard(gpu)
        if cmd[4] != "job=0":
            others_done.release()
        stdout.write(f"[{cmd[4]}] done\n")
        return types.SimpleNamespace(wait=lambda: 0)

    def wait(done):
        while not done():
            time.sleep(0.01)

    supervisor = types.SimpleNamespace(start=start, wait=wait)
    assert launch.run_parallel(tmp_path / "plan.json", list(range(5)), 2, tmp_path / "sweep", supervisor) == 0
    assert sorted(job for job, _, _ in seen) == [f"job={i}" for i in range(5)]
    assert {shared for _, _, shared in seen} == {"0"}
    [first] = [gpu for job, gpu, _ in seen if job == "job=0"]
    assert {gpu for job, gpu, _ in seen if job != "job=0"} == {"0", "1"} - {first}  # job 0's GPU stayed its own
    assert "GPUs 0,1, 1 runs at most on each" in capsys.readouterr().out


def test_a_run_records_whether_it_shared_its_gpu(monkeypatch):
    from peftbench import record
    from peftbench.config.compose import load_config

    monkeypatch.setattr(record, "machine", lambda runtime=None: {})
    cfg = load_config(["model=tiny", "task=rte"])
    monkeypatch.setenv(record.SHARED_ENV, "2")
    assert record.new_record(cfg, {"device": "cuda", "precision": "fp16"})["device_shared_with"] == 2
    assert record.new_record(cfg, {"device": "cpu", "precision": "fp32"})["device_shared_with"] is None  # not a GPU
    monkeypatch.delenv(record.SHARED_ENV)
    assert record.new_record(cfg, {"device": "cuda", "precision": "fp16"})["device_shared_with"] is None  # no pool
