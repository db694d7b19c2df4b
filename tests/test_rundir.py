"""A run folder belongs to one run: completed and running runs are never replaced silently, a stale lock is named and
taken over, resume=true refuses a checkpoint of another config and names the keys that differ."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peftbench.engine import checkpoint
from peftbench.cli import main
from peftbench.engine.rundir import LOCK

ARGS = ["model=tiny", "task=rte", "method=bitfit", "max_steps=4", "lr=1e-2", "tracking.mode=disabled", "batch_size=4",
        "eval_batch_size=32"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train(glue_dir, out, *extra) -> int:
    return main(["train", *ARGS, f"data_dir={glue_dir}", f"out={out}", *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("peftbench: error: "), err
    return err


@pytest.fixture
def done(tmp_path, glue_dir, capsys):
    out = tmp_path / "run"
    assert train(glue_dir, out) == 0
    capsys.readouterr()
    return out


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_completed_run_is_kept_unless_overwrite(done, glue_dir, capsys):
    before = snapshot(done)
    assert train(glue_dir, done, "seed=7") == 2
    assert "holds a completed run (rte bitfit tiny seed 42" in one_error_line(capsys) and snapshot(done) == before
    assert train(glue_dir, done, "resume=true") == 2
    assert "nothing to resume" in one_error_line(capsys) and snapshot(done) == before
    assert train(glue_dir, done, "seed=7", "overwrite=true") == 0
    rec = json.loads((done / "result.json").read_text())
    assert rec["status"] == "completed" and rec["run"]["seed"] == 7 and not (done / LOCK).exists()


def test_a_live_lock_refuses_and_a_stale_one_is_named_and_taken_over(tmp_path, glue_dir, capsys):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"host": platform.node(), "pid": sleeper.pid, "started_at": "then"}))
        before = snapshot(out)
        assert train(glue_dir, out) == 2
        assert f"in use by a running run: pid {sleeper.pid} on host {platform.node()}" in one_error_line(capsys)
        assert snapshot(out) == before
    finally:
        sleeper.kill()
        sleeper.wait()
    assert train(glue_dir, out) == 0  # the pid is gone now: a crash's leftover
    assert f"{out / LOCK} was left by pid {sleeper.pid}" in capsys.readouterr().err
    assert json.loads((out / "result.json").read_text())["status"] == "completed" and not (out / LOCK).exists()
    (out / LOCK).write_text(json.dumps({"host": "node-17", "pid": 4242, "started_at": "then"}))
    assert train(glue_dir, out, "overwrite=true") == 2  # overwrite never beats a lock it cannot check
    assert "pid 4242 on host node-17" in (err := one_error_line(capsys)) and f"delete {out / LOCK}" in err


def interrupted(out: Path, glue_dir, monkeypatch, *extra) -> None:
    """A run stopped after its first step with a real checkpoint, as SIGTERM leaves it."""
    enter = checkpoint.StopFlag.__enter__

    def signalled(self):
        enter(self)
        self.signal = signal.SIGTERM
        return self

    with monkeypatch.context() as m:
        m.setattr(checkpoint.StopFlag, "__enter__", signalled)
        assert train(glue_dir, out, *extra) == 130
    assert (out / checkpoint.FILE).is_file() and not (out / LOCK).exists()


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_resume_refuses_another_config_and_names_the_keys(tmp_path, glue_dir, monkeypatch, capsys):
    out = tmp_path / "run"
    interrupted(out, glue_dir, monkeypatch)
    capsys.readouterr()
    before = snapshot(out)
    assert train(glue_dir, out, "resume=true", "lr=1e-1", "weight_decay=0.02") == 2
    err = one_error_line(capsys)
    assert "checkpoint in" in err and "lr: 0.01 -> 0.1" in err and "weight_decay: 0.01 -> 0.02" in err
    assert snapshot(out) == before
    assert train(glue_dir, out) == 2  # neither resume nor overwrite: the paused run is kept
    assert "unfinished run with a checkpoint" in one_error_line(capsys) and snapshot(out) == before
    # keys outside the identity may change on resume
    assert train(glue_dir, out, "resume=true", "grad_accum=2", "eval_every=2", "log_every=1") == 0
    assert "resumed from checkpoint.pt at step 1" in (out / "train.log").read_text()
    assert json.loads((out / "result.json").read_text())["status"] == "completed"


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_overwrite_clears_the_old_runs_files_first(tmp_path, glue_dir, monkeypatch, capsys):
    out = tmp_path / "run"
    interrupted(out, glue_dir, monkeypatch)
    (out / "traceback.txt").write_text("old")  # as if an older run had failed and left one
    assert train(glue_dir, out, "overwrite=true", "seed=3") == 0
    assert not (out / "traceback.txt").exists() and not (out / checkpoint.FILE).exists()
    assert json.loads((out / "result.json").read_text())["run"]["seed"] == 3


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_two_runs_into_one_folder_at_once(tmp_path, glue_dir, capsys):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "peftbench.cli", "train", *ARGS, "max_steps=100000", "epochs=10000",
           "checkpoint_every=null", f"data_dir={glue_dir}", f"out={out}"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.time() + 120
        # a loop line ("step 20/..."), not the header's "N steps": the SIGTERM handler is installed by then
        while not re.search(r"step \d+/", (out / "train.log").read_text() if (out / "train.log").exists() else ""):
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline
            time.sleep(0.05)
        assert train(glue_dir, out, "overwrite=true") == 2
        assert f"in use by a running run: pid {first.pid}" in one_error_line(capsys)
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 130
    rec = json.loads((out / "result.json").read_text())
    assert rec["pid"] == first.pid and rec["status"] == "failed" and "resume=true" in rec["error"]
    assert not (out / LOCK).exists()


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_study_leaves_a_folder_in_use_alone_and_goes_on(tmp_path, glue_dir, capsys):
    out = tmp_path / "s"
    busy = out / "rte/bitfit/seed42"
    busy.mkdir(parents=True)
    (busy / LOCK).write_text(json.dumps({"host": platform.node(), "pid": os.getpid(), "started_at": "now"}))
    args = ["study", "glue", "methods=[bitfit,lora]", "tasks=[rte]", f"data_dir={glue_dir}", f"out={out}", *ARGS[3:],
            "model=tiny"]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "rte/bitfit/seed42: FAILED" in printed and "in use by a running run" in printed
    assert "1 ran, 0 skipped, 1 failed" in printed
    assert sorted(p.name for p in busy.iterdir()) == [LOCK]  # no traceback.txt, no record: not this study's folder
