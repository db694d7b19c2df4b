"""One run on two CPU processes (accelerate launch, gloo): same training as one process, eval rows counted once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from safetensors.torch import load_file

from peftbench.cli import main

# dropout off, so 1 and 2 processes differ only in the order of the gradient all-reduce; the tiny model learns this
# fixture (the label hangs on "sat" vs "flew") to 100% in one process, so matching it means the 2-process run learned
ARGS = ["model=tiny", "task=rte", "method=full", "lr=1e-2", "epochs=25", "batch_size=8", "tracking.mode=disabled",
        "+model.tiny.hidden_dropout_prob=0.0", "+model.tiny.attention_probs_dropout_prob=0.0"]


def test_two_processes_train_like_one_and_count_eval_once(tmp_path, glue_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *ARGS, f"data_dir={glue_dir}", f"out={one}"]) == 0
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "peftbench.cli", "train", *ARGS, f"data_dir={glue_dir}", f"out={two}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[:3000]
    assert proc.stdout.count("completed:") == 1  # only the main process reports and writes
    a, b = (json.loads((d / "result.json").read_text()) for d in (one, two))
    assert b["num_processes"] == 2 and a["num_processes"] == 1
    assert b["eval_examples"] == a["eval_examples"] == 24 and b["train_steps"] == a["train_steps"]
    assert a["metrics"]["accuracy"] == 100.0 and b["metrics"] == a["metrics"]
    assert load_file(two / "delta.safetensors").keys() == load_file(one / "delta.safetensors").keys()


def test_batch_that_does_not_divide_over_processes_is_refused(monkeypatch, tmp_path, glue_dir, capsys):
    from accelerate import Accelerator

    monkeypatch.setattr(Accelerator, "num_processes", property(lambda self: 3))
    code = main(["train", *ARGS, f"data_dir={glue_dir}", f"out={tmp_path / 'x'}"])
    assert code == 2 and "batch_size=8 does not divide over 3 processes" in capsys.readouterr().err
