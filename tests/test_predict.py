"""Integration: a short MiniLM BitFit run on the real SST-2 learns; its tiny delta predicts and re-scores exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cut_glue

from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.models.load import resolve_path
from peftbench.engine.train import train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "sst2-bitfit"
    data = cut_glue(shared_data, out.parent / "data", "SST-2", 300)  # scored twice (train, evaluate): 300 dev rows
    rec = train(load_config(["model=minilm_l6", "method=bitfit", "task=sst2", f"data_dir={data}",
                             "train_size=3000", "epochs=1", "lr=5e-3", f"out={out}", "tracking.mode=disabled"]))
    assert rec["status"] == "completed"
    return out


def test_the_run_learned_and_its_delta_is_tiny(run_dir):
    rec = json.loads((run_dir / "result.json").read_text())
    assert rec["metrics"]["accuracy"] > 70  # the 300 rows' majority class is 51.7%
    folder = Path(resolve_path(load_config(["model=minilm_l6"]).model))
    base = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert rec["delta_bytes"] == (run_dir / "delta.safetensors").stat().st_size < 0.01 * base


def test_predict_prints_the_sentiment(run_dir, capsys):
    assert main(["predict", str(run_dir), "--text", "a gorgeous, witty film", "--text", "a dull, lifeless mess"]) == 0
    pos, neg = capsys.readouterr().out.splitlines()
    assert pos.startswith("positive\t") and pos.endswith("\ta gorgeous, witty film")
    assert neg.startswith("negative\t")


def test_evaluate_reproduces_the_dev_accuracy_exactly(run_dir, capsys):
    assert main(["evaluate", str(run_dir)]) == 0
    recorded = json.loads((run_dir / "result.json").read_text())["metrics"]
    assert capsys.readouterr().out.strip() == (
        f"sst2 bitfit minilm_l6 on 300 dev examples: {recorded} (same as recorded)")
