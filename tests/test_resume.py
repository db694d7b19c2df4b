"""Crash safety: SIGKILL mid-run then resume=true ends with the metrics of the uninterrupted run; SIGTERM checkpoints."""

from __future__ import annotations

import pytest

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from peftbench.cli import main

ARGS = ["model=tiny", "task=rte", "method=lora", "max_steps=40", "epochs=10", "lr=1e-2", "checkpoint_every=4", "tracking.mode=disabled",
        "batch_size=4", "eval_batch_size=8"]


def start(out: Path, glue_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "peftbench.cli", "train", *ARGS, f"data_dir={glue_dir}", f"out={out}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def wait_for_checkpoint(proc: subprocess.Popen, path: Path) -> None:
    deadline = time.time() + 120
    while not path.exists():
        assert proc.poll() is None, f"run ended before its first checkpoint: {proc.stderr.read()}"
        assert time.time() < deadline
        time.sleep(0.01)


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_sigkill_then_resume_matches_the_uninterrupted_run(tmp_path, glue_dir):
    assert main(["train", *ARGS, f"data_dir={glue_dir}", f"out={tmp_path / 'whole'}"]) == 0
    whole = json.loads((tmp_path / "whole/result.json").read_text())

    out = tmp_path / "killed"
    proc = start(out, glue_dir)
    wait_for_checkpoint(proc, out / "checkpoint.pt")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((out / "result.json").read_text())["status"] == "running"  # never looks complete
    assert main(["train", *ARGS, f"data_dir={glue_dir}", f"out={out}", "resume=true"]) == 0
    resumed = json.loads((out / "result.json").read_text())
    assert "resumed from checkpoint.pt" in (out / "train.log").read_text()
    assert resumed["status"] == "completed" and resumed["metrics"] == whole["metrics"]
    assert resumed["train_flops"] == whole["train_flops"]
    # the strongest check: every trained tensor is bit-identical
    assert (out / "delta.safetensors").read_bytes() == (tmp_path / "whole/delta.safetensors").read_bytes()
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_sigterm_saves_a_checkpoint_and_marks_the_run(tmp_path, glue_dir):
    out = tmp_path / "term"
    proc = start(out, glue_dir, "max_steps=400", "checkpoint_every=null", "log_every=1")
    while "step 2/" not in ((out / "train.log").read_text() if (out / "train.log").exists() else ""):
        assert proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    rec = json.loads((out / "result.json").read_text())
    assert rec["status"] == "failed" and "resume=true" in rec["error"]
    assert (out / "checkpoint.pt").exists()
