"""Checkpoints that resume everywhere: the fp16 loss scale goes into the checkpoint and comes back, a checkpoint of
an older format is refused in one line, an fp16 run stopped by SIGTERM resumes to the tensors of the uninterrupted
run (the installed torch runs fp16 autocast on the CPU), and so does a 2-process DDP run (gloo)."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from peftbench.cli import main
from peftbench.engine import checkpoint
from peftbench.errors import UserError

ARGS = ["model=tiny", "task=rte", "method=lora", "max_steps=30", "epochs=10", "lr=1e-2", "tracking.mode=disabled",
        "batch_size=4", "eval_batch_size=8", "log_every=1", "checkpoint_every=null"]


def tiny_parts(scaler_enabled: bool = True):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    return model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=scaler_enabled)


def test_the_loss_scale_round_trips(tmp_path):
    model, optimizer, scheduler, scaler = tiny_parts()
    for grad in [float("inf"), 1.0, 1.0, 1.0]:  # one overflow (the scale halves), then 3 clean steps
        optimizer.zero_grad()
        scaler.scale(model(torch.full((1, 3), grad)).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
    want = scaler.state_dict()
    assert (want["scale"], want["_growth_tracker"]) == (32768.0, 3)  # not the defaults (65536, 0)
    checkpoint.save(tmp_path, model, optimizer, scheduler, scaler, checkpoint.TrainState(step=5, updates=4),
                    [checkpoint.rng_state()])
    model2, optimizer2, scheduler2, scaler2 = tiny_parts()
    state = checkpoint.load(tmp_path, model2, optimizer2, scheduler2, scaler2)
    assert scaler2.state_dict() == want and (state.step, state.updates) == (5, 4)
    assert torch.equal(model2.weight, model.weight)
    _, o, s, disabled = tiny_parts(scaler_enabled=False)  # fp32/bf16: the scaler's state is {} and loads as such
    checkpoint.save(tmp_path, model, o, s, disabled, checkpoint.TrainState(), [checkpoint.rng_state()])
    assert checkpoint.load(tmp_path, model, o, s, disabled) == checkpoint.TrainState()


def test_each_process_gets_its_own_rng_state_back(tmp_path):
    """Under DDP each process draws its own dropout masks (on CUDA their draws advance by the masks' sizes, which
    differ between shards): the main process saves every rank's state and each rank loads its own."""
    model, optimizer, scheduler, scaler = tiny_parts()
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(checkpoint.rng_state())
    checkpoint.save(tmp_path, model, optimizer, scheduler, scaler, checkpoint.TrainState(), states)
    for rank, seed in [(0, 1), (1, 2), (2, 1)]:  # a rank the file has no state for (more processes now): rank 0's
        torch.manual_seed(99)
        checkpoint.load(tmp_path, model, optimizer, scheduler, scaler, rank)
        got = torch.rand(3)
        torch.manual_seed(seed)
        assert torch.equal(got, torch.rand(3))


def test_a_checkpoint_of_the_older_format_is_refused_in_one_line(tmp_path):
    model, optimizer, scheduler, scaler = tiny_parts()
    torch.save({"trainable": {}, "optimizer": {}, "scheduler": {}, "rng": {}, "state": {"step": 3}},
               tmp_path / checkpoint.FILE)
    with pytest.raises(UserError, match=r"from another peftbench \(format 1, this one reads 2\): delete it, or run "
                                        r"with overwrite=true"):
        checkpoint.load(tmp_path, model, optimizer, scheduler, scaler)


class SigtermAt(logging.Handler):
    """The run sends itself SIGTERM when it logs step `at`: a real signal, at a known step, in this process."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(f"step {self.at}/"):
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_fp16_resume_keeps_the_loss_scale_and_ends_bit_identical(monkeypatch, tmp_path, glue_dir):
    # A scale that grows every 2 clean steps overflows and backs off over and over: the steps it skips depend on
    # the scale and its growth tracker, so a resume that restarted them would train other steps
    scaler = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(scaler, growth_interval=2))
    args = ["train", *ARGS, "precision=fp16", f"data_dir={glue_dir}"]
    assert main([*args, f"out={tmp_path / 'whole'}"]) == 0
    out = tmp_path / "stopped"
    stopper = SigtermAt(13)
    logging.getLogger("peftbench").addHandler(stopper)
    try:
        assert main([*args, f"out={out}"]) == 130
    finally:
        logging.getLogger("peftbench").removeHandler(stopper)
    saved = torch.load(out / checkpoint.FILE, weights_only=True)
    assert saved["state"]["step"] == 13 and saved["scaler"]["growth_interval"] == 2
    assert saved["scaler"]["scale"] < 65536.0 * 2 ** (13 // 2)  # it backed off (skipped a step) before the stop
    shutil.copytree(out, tmp_path / "control")
    assert main([*args, f"out={out}", "resume=true"]) == 0
    whole = (tmp_path / "whole/delta.safetensors").read_bytes()
    assert (out / "delta.safetensors").read_bytes() == whole
    # the control: the same resume with the loss scale restarted trains to other tensors
    monkeypatch.setattr(scaler, "load_state_dict", lambda self, state: None)
    assert main([*args, f"out={tmp_path / 'control'}", "resume=true"]) == 0
    assert (tmp_path / "control/delta.safetensors").read_bytes() != whole


def launch(out: Path, glue_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "peftbench.cli", "train", *ARGS, f"data_dir={glue_dir}", f"out={out}", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_two_process_run_stopped_by_sigterm_resumes_to_the_uninterrupted_tensors(tmp_path, glue_dir):
    """The launcher passes SIGTERM to both processes; they agree on the step to stop at, the main one saves the
    checkpoint from the unwrapped model (no DDP `module.` prefix), and a 2-process resume=true loads it into the
    DDP-wrapped model. (Dropout is on, but on the CPU both processes' RNGs advance alike, one draw per mask: that
    each gets its own state back is tested above.)"""
    whole = launch(tmp_path / "whole", glue_dir)
    assert whole.wait(timeout=600) == 0, whole.stderr.read()[-3000:]
    out = tmp_path / "stopped"
    proc = launch(out, glue_dir)
    deadline = time.time() + 300
    while "step 3/" not in ((out / "train.log").read_text() if (out / "train.log").exists() else ""):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    rec = json.loads((out / "result.json").read_text())
    assert rec["status"] == "failed" and "resume=true" in rec["error"], rec.get("error")
    step = torch.load(out / checkpoint.FILE, weights_only=True)["state"]["step"]
    assert 3 <= step < 30
    resumed = launch(out, glue_dir, "resume=true")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    assert f"resumed from checkpoint.pt at step {step}" in (out / "train.log").read_text()
    rec, ref = (json.loads((d / "result.json").read_text()) for d in (out, tmp_path / "whole"))
    assert rec["status"] == "completed" and rec["num_processes"] == 2 and rec["metrics"] == ref["metrics"]
    assert (out / "delta.safetensors").read_bytes() == (tmp_path / "whole/delta.safetensors").read_bytes()
