"""`peftbench quickstart`: the study preset (five methods on SST-2, MiniLM, each at its own rate) and the command that
runs it and writes the report; here on the tiny model and the fixture data, so it takes seconds."""

from __future__ import annotations

import pytest

import json
import re

from peftbench.cli import main
from peftbench.studies.grid import load_study, plan

METHODS = ["full", "bitfit", "bitfit_subset", "lora", "prompt"]
RATES = {"full": 1e-4, "bitfit": 5e-3, "bitfit_subset": 5e-3, "lora": 2e-3, "prompt": 1e-2}


def test_the_preset_is_the_five_methods_on_sst2_minilm():
    runs = plan(load_study("quickstart", ["out=q"]))
    assert [f.as_posix() for f, _ in runs] == [f"q/sst2/{m}/lr{RATES[m]:g}/seed42" for m in METHODS]
    for _, over in runs:
        assert {"model=minilm_l6", "train_size=3000", "epochs=1", "task=sst2", "threads=1"} <= set(over)
    assert load_study("quickstart").parallel == 2  # two one-thread runs at once: a 2-core machine's both cores


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_quickstart_trains_five_methods_and_writes_the_report(tmp_path, glue_dir, capsys):
    out = tmp_path / "qs"
    args = ["quickstart", "model=tiny", f"data_dir={glue_dir}", f"out={out}", "train_size=12", "max_steps=2",
            "eval_batch_size=32", "parallel=1"]  # in this process: a tiny run takes less than a process's start
    assert main(args) == 0
    printed = capsys.readouterr().out
    for m in METHODS:
        rec = json.loads((out / "sst2" / m / f"lr{RATES[m]:g}" / "seed42" / "result.json").read_text())
        assert rec["status"] == "completed" and rec["lr"] == RATES[m] and rec["run"]["model"] == "tiny"
        # each run's line judges it against SST-2's majority class (the fixture's dev set is 12/12)
        assert re.search(rf"sst2/{m}/\S+: accuracy \d+\.\d\d \(majority class 50\.00: (learned nothing|\+\d+\.\d\d)\)",
                         printed), m
    report = out / "report"
    text = (report / "report.md").read_text()
    assert all(f"| {m} |" in text for m in METHODS) and "5 completed runs" in text
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert "parameter_efficiency.png" in pngs and "part1_results.png" in pngs
    assert (report / "explorer.html").stat().st_size > 10_000
    assert f"report:   {report / 'report.md'}" in printed and f"explorer: {report / 'explorer.html'}" in printed
    before = (out / "sst2" / "lora" / "lr0.002" / "seed42" / "result.json").read_text()
    assert main(args) == 0  # again: every run is skipped, the report is rewritten
    assert "0 ran, 5 skipped, 0 failed" in capsys.readouterr().out
    assert (out / "sst2" / "lora" / "lr0.002" / "seed42" / "result.json").read_text() == before
