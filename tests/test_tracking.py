"""The W&B mirror: an offline run (no account, no network) named after the run, in its study's group, with metrics."""

from __future__ import annotations

import pytest

import json
import time

from peftbench.cli import main
from peftbench.studies.grid import load_study, plan


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_offline_wandb_run_mirrors_the_record(tmp_path, glue_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")  # the suite disables W&B; this test is about it
    out = tmp_path / "run"
    assert main(["train", "model=tiny", "task=rte", "method=bitfit", "train_size=12", "max_steps=2",
                 f"data_dir={glue_dir}", "tracking.mode=offline", "tracking.group=g7", f"out={out}"]) == 0
    [log] = out.glob("wandb/offline-run-*/run-*.wandb")  # W&B's own log of the run, synced later by `wandb sync`
    wanted = [b"rte-bitfit-n12-s42", b"g7", b"metrics/accuracy"]
    for _ in range(30):  # W&B's service process writes this log; give it a moment to land on disk
        missing = [w for w in wanted if w not in log.read_bytes()]
        if not missing:
            break
        time.sleep(1)
    assert not missing, f"{missing} not in {log} ({log.stat().st_size} bytes)"
    assert json.loads((out / "result.json").read_text())["config"]["tracking"]["group"] == "g7"


def test_a_study_groups_its_runs_unless_told_otherwise(tmp_path):
    assert all(o[0] == "tracking.group=mystudy" for _, o in plan(load_study("glue", [f"out={tmp_path}/mystudy"])))
    _, over = plan(load_study("glue", [f"out={tmp_path}/s", "tracking.group=mine"]))[0]
    assert over.index("tracking.group=mine") > over.index("tracking.group=s")  # later overrides win in Hydra
