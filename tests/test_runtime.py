"""runtime.py: the measured run-time model behind `study --dry-run`'s estimate, and the note for a run that trains
many times below the measured rate."""

from __future__ import annotations

from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.engine.runtime import S_PER_STEP, duration, run_seconds, slow_note, step_seconds


def test_bert_base_steps_take_the_measured_seconds_and_minilm_its_share():
    cfg = load_config(["model=bert_base", "task=sst2", "method=lora", "batch_size=16"])
    assert step_seconds(cfg) == S_PER_STEP["sst2"]["lora"] == 0.69
    assert abs(run_seconds(load_config(["model=bert_base", "task=rte", "method=full", "batch_size=32"]), 10) - 76.8) < 1e-9
    mini = load_config(["model=minilm_l6", "task=sst2", "method=full", "batch_size=16"])
    # MiniLM: 6 layers of hidden 384, FFN 1536 against 12 of 768, 3072: an eighth of the matmuls per token
    assert abs(step_seconds(mini) - 1.11 / 8) < 1e-9
    assert [duration(s) for s in (42, 600, 9000)] == ["42 s", "10 min", "2.5 h"]


def test_a_run_ten_times_below_the_rate_says_so_and_names_omp_num_threads():
    note = slow_note(2.65e12, 500, "fp32", 2)  # 5.3e9 FLOP/s against 5.3e10 measured with 2 threads
    assert "10x below" in note and "other processes may be using the cores" in note and "OMP_NUM_THREADS" in note
    assert slow_note(2.65e12, 100, "fp32", 2) is None  # 5x below: not yet
    assert slow_note(2.65e12, 100, "bf16", 2) is not None  # 7.9x below bf16 is held against its own (higher) rate


def test_dry_run_prints_the_estimate(glue_dir, tmp_path, capsys):
    assert main(["study", "glue", "model=minilm_l6", f"data_dir={glue_dir}", "tasks=[sst2]", "methods=[full,lora]",
                 "epochs=100", f"out={tmp_path / 's'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # the fixture's 24 SST-2 rows at batch 16: 2 steps an epoch, 200 in all; MiniLM's step an eighth of bert-base's
    # 1.11 s (full) and 0.69 s (lora): 200 x (1.11 + 0.69) / 8 = 45 s
    assert "estimated time: about 45 s of training for 2 of the runs to go" in out


def test_a_slow_run_says_it_once(glue_dir, tmp_path, capsys, monkeypatch):
    from peftbench.engine import runtime

    # a CPU that measured a billion times faster than this one: every run is "slow", and says so once
    monkeypatch.setattr(runtime, "FLOPS_PER_S_PER_THREAD", {"fp32": 1e18, "bf16": 1e18})
    monkeypatch.setattr(runtime, "CHECK_AFTER_S", 0.0)
    monkeypatch.setattr(runtime, "REAL_STEP_FLOPS", 0)
    assert main(["train", "model=tiny", "task=sst2", "method=bitfit", f"data_dir={glue_dir}", "max_steps=4",
                 "batch_size=8", "tracking.mode=disabled", f"out={tmp_path / 'run'}"]) == 0
    err = capsys.readouterr().err
    assert err.count("peftbench: note:") == 1 and "other processes may be using the cores" in err
    assert "OMP_NUM_THREADS" in err
