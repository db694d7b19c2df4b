"""Stop means stop: SIGTERM or Ctrl-C on `peftbench study` lets the training runs checkpoint and ends the study, its
launcher and every worker, with a non-zero exit and one line saying how to resume; a second Ctrl-C ends it at once.
Each case starts a real study in a subprocess (tiny model, runs long enough to be caught training), signals it once a
run trains, and checks that nothing of the study outlives it and that no result appears afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest


# runs that train until told to stop (max_steps far beyond what the test waits), one loss line per step
LONG = ["model=tiny", "max_steps=100000", "epochs=100000", "train_size=12", "batch_size=4", "log_every=1",
        "checkpoint_every=null", "tracking.mode=disabled", "eval_batch_size=32"]


@pytest.fixture
def mark():
    """A mark for the study's processes; whatever still carries it when the test ends (a failed test) is killed."""
    value = uuid.uuid4().hex
    yield value
    for p in marked(value):
        p.kill()


def start(out: Path, glue_dir: Path, mark: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "peftbench.cli", "study", "glue", "methods=[bitfit]", "tasks=[rte]",
           "seeds=[1,2,3]", f"data_dir={glue_dir}", f"out={out}", *LONG, *extra]
    # the mark travels in the environment of every process the study starts (a loky worker too): found by it after
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PEFTBENCH_TEST_MARK": mark, "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1",
                                 "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})  # Ray: a single-node (loopback) setup


def training(out: Path) -> list[Path]:
    """The run folders whose train.log shows a second step."""
    return [log.parent for log in out.glob("**/train.log") if "step 2/" in log.read_text(errors="replace")]


def wait_training(proc: subprocess.Popen, out: Path, limit: float = 120) -> list[Path]:
    end = time.monotonic() + limit
    while not (found := training(out)):
        assert proc.poll() is None, f"the study ended before a run trained: {proc.communicate()}"
        assert time.monotonic() < end, "no run trained in time"
        time.sleep(0.1)
    return found


def marked(mark: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("PEFTBENCH_TEST_MARK") == mark:
                found.append(p)
        except psutil.Error:
            pass
    return found


def results(out: Path) -> list[str]:
    return sorted(str(p) for p in out.glob("**/result.json")
                  if json.loads(p.read_text()).get("status") == "completed")


def files(out: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in out.glob("**/*") if p.is_file()}


def stop_and_check(proc: subprocess.Popen, out: Path, mark: str, *signals: int, limit: float = 60,
                   wait: float = 120) -> str:
    """Send `signals` to the study (the first once a run trains); it must exit non-zero within `limit` seconds with
    the resume line, leave no process behind, no lock held, and no result written afterwards. Returns its stderr."""
    caught = wait_training(proc, out, wait)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.3)
    outs, err = proc.communicate(timeout=limit)
    assert proc.returncode == 128 + signals[0], err
    last = err.strip().splitlines()[-1]
    assert last.startswith("peftbench: study glue stopped") and "to resume, run the same command again: " \
        "peftbench study glue 'methods=[bitfit]' 'tasks=[rte]'" in last, err
    assert not marked(mark), "a process of the study outlived it"
    for lock in out.glob("**/run.lock"):  # a lock is released, or stale once stopped at once (the next run takes it)
        assert len(signals) > 1 and not psutil.pid_exists(json.loads(lock.read_text())["pid"]), "a run holds its folder"
    before = files(out)
    time.sleep(1.5)  # a tiny run still training would log a step (log_every=1) every few milliseconds
    assert files(out) == before and not results(out)  # nothing trains on: no file changes, no run completes
    assert len(list(out.glob("**/result.json"))) <= 2  # two at a time at most: the third run never started
    if len(signals) == 1:  # a run that trained at the signal saved its checkpoint and says how it ended
        for folder in caught:
            rec = json.loads((folder / "result.json").read_text())
            assert rec["status"] == "failed" and rec["error"].startswith("Interrupted: stopped by signal"), rec
            assert (folder / "checkpoint.pt").is_file()
    return err


@pytest.mark.parametrize("extra,sig", [([], signal.SIGTERM), (["parallel=2"], signal.SIGTERM),
                                       (["launcher=joblib", "hydra.launcher.n_jobs=2"], signal.SIGTERM),
                                       ([], signal.SIGINT), (["parallel=2"], signal.SIGHUP)],
                         ids=["no-launcher", "parallel", "joblib", "no-launcher-ctrl-c", "parallel-hangup"])
@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_signal_stops_the_study_and_everything_it_started(tmp_path, glue_dir, mark, extra, sig):
    out = tmp_path / "s"
    err = stop_and_check(start(out, glue_dir, mark, *extra), out, mark, sig)
    assert f"stopped by {signal.Signals(sig).name}: runs that were training saved a checkpoint" in err


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_second_ctrl_c_stops_at_once(tmp_path, glue_dir, mark):
    out = tmp_path / "s"
    err = stop_and_check(start(out, glue_dir, mark, "parallel=2"), out, mark, signal.SIGINT, signal.SIGINT, limit=15)
    assert "stopped at once by a second signal" in err


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_ray_on_a_local_instance(tmp_path, glue_dir, mark, ray_cluster):
    out = tmp_path / "s"
    proc = start(out, glue_dir, mark, "launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}",
                 "hydra.launcher.ray.remote.num_gpus=0")
    stop_and_check(proc, out, mark, signal.SIGTERM, wait=300)  # Ray's workers start slowly here


def test_a_signal_outside_the_loop_is_kept_and_a_second_stops_at_once():
    from peftbench.engine import signals as sig

    before = signal.getsignal(signal.SIGTERM)
    with sig.watch():
        os.kill(os.getpid(), signal.SIGTERM)  # while a run loads: kept, not fatal
        assert sig.requested() == signal.SIGTERM
        with sig.StopFlag() as flag:
            assert flag.signal == signal.SIGTERM  # so the loop checkpoints at its first step
            with pytest.raises(sig.AtOnce, match="a second SIGINT: stopped at once"):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is before and sig.requested() is None  # as the process was before
    with sig.watch():
        assert sig.requested() is None  # a new block starts with no request


def test_a_stopping_study_starts_no_new_run(capsys):
    from omegaconf import OmegaConf

    from peftbench.engine import signals as sig
    from peftbench.studies.runner import run_one

    with sig.watch():
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(sig.Interrupted, match="stopped by SIGTERM"):
            run_one(Path("nowhere"), OmegaConf.create({}), "[2/9] rte/lora/seed1")
    assert capsys.readouterr().out == "[2/9] rte/lora/seed1: not started, the study is stopping\n"


def test_only_this_launchs_live_lock_holders_are_signalled(tmp_path):
    from peftbench.engine.rundir import LOCK
    from peftbench.studies.stop import Supervisor

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        supervisor = Supervisor(tmp_path / "plan.stop", [tmp_path / "a", tmp_path / "b"])
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            (tmp_path / name / LOCK).write_text(json.dumps({"host": os.uname().nodename, "pid": other.pid}))
        assert supervisor._holders() == [other.pid, other.pid]
        old = time.time() - 3600
        os.utime(tmp_path / "b" / LOCK, (old, old))  # a lock from before the launch: someone else's, or stale
        (tmp_path / "a" / LOCK).write_text(json.dumps({"host": "elsewhere", "pid": other.pid}))  # another host's
        assert supervisor._holders() == []
    finally:
        other.kill()
        other.wait()
