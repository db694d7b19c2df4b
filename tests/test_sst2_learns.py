"""Integration: with the real MiniLM model and the real SST-2 files, a few CPU minutes of LoRA reach >= 80% dev accuracy.

(The BitFit run of tests/test_predict.py shares the data and asserts its own bar; see the README for both numbers.)
"""

from __future__ import annotations

import pytest

from peftbench.config.compose import load_config
from peftbench.engine.train import train

pytestmark = pytest.mark.integration


def test_lora_learns_sst2(shared_data, tmp_path):
    # 3,000 rows, one epoch (188 steps): the reference 2e-4 leaves this small model at the majority class (50.9%)
    rec = train(load_config(["model=minilm_l6", "method=lora", "task=sst2", f"data_dir={shared_data}",
                             "train_size=3000", "epochs=1", "lr=2e-3", f"out={tmp_path / 'lora'}",
                             "tracking.mode=disabled"]))
    assert rec["status"] == "completed" and rec["train_steps"] == 188
    assert rec["metrics"]["accuracy"] >= 80.0
    assert rec["trainable_params"] == 74_498 and rec["trainable_percent"] < 1
