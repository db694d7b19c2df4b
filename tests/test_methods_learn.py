"""Integration: on the real MiniLM and SST-2 (1,000 rows, one epoch of batches of 8: 125 steps), every method
beyond the reference study's five -- the hand-written ones (prefix, both adapters, LN tuning) and those through
peft ((IA)^3, DoRA, VeRA, LoRA on every linear layer) -- learns: well above the majority class on the first 400
dev rows.

Each rate is one the method learns at in this short budget (README, "Does it learn?"); the configs' defaults are
the papers' rates for full-length training. About 15 CPU seconds per method.
"""

from __future__ import annotations

import pytest
from conftest import cut_glue

from peftbench.reports.baselines import baseline
from peftbench.config.compose import load_config
from peftbench.engine.train import train

pytestmark = pytest.mark.integration

RATES = {"prefix": "1e-2", "adapter_pfeiffer": "2e-3", "adapter_houlsby": "1e-3", "ln_tuning": "1e-2", "ia3": "2e-2",
         "dora": "2e-3", "vera": "2e-2", "lora_all": "1e-3"}


@pytest.mark.parametrize("method", list(RATES))
def test_newer_methods_learn_sst2(shared_data, tmp_path, method):
    data = cut_glue(shared_data, tmp_path / "data", "SST-2", 400)
    rec = train(load_config(["model=minilm_l6", f"method={method}", "task=sst2", f"data_dir={data}",
                             "train_size=1000", "batch_size=8", "epochs=1", f"lr={RATES[method]}",
                             f"out={tmp_path / method}", "tracking.mode=disabled", "forgetting=false"]))
    assert rec["status"] == "completed" and rec["train_steps"] == 125
    majority = baseline(rec)  # the 400 rows' positive share
    assert rec["eval_examples"] == 400 and 50 < majority < 53
    assert rec["metrics"]["accuracy"] >= majority + 10, rec["metrics"]  # here 67.50 (prefix) to 78.25 (dora)
    assert rec["trainable_percent"] < 1.5  # lora_all: 1.46% of MiniLM; the others under 1%
