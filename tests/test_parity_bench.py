"""bench/parity.py's --report: tables from the jobs already on disk, paired by seed, any number of seeds per cell."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def parity():
    sys.path.insert(0, str(BENCH))  # parity.py imports bench_common from beside itself
    spec = importlib.util.spec_from_file_location("parity", BENCH / "parity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    yield mod
    sys.path.remove(str(BENCH))


def write_jobs(out: Path, method: str, runner: str, accs: list[float], steps: int = 125) -> None:
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    for seed, acc in enumerate(accs, start=1):
        rec = {"accuracy": acc, "f1": 0.0, "train_time_s": 1.0, "steps": steps}
        (out / "jobs" / f"sst2-{method}-{runner}-s{seed}.json").write_text(json.dumps(rec))


def test_report_pairs_by_seed_with_each_methods_own_number_of_seeds(parity, tmp_path):
    write_jobs(tmp_path, "full", "pb_grouped", [80.0, 81.0, 82.0])
    write_jobs(tmp_path, "full", "trainer_grouped", [79.0, 81.0, 80.0])   # Δ = 1, 0, 2: mean 1, sd 1
    write_jobs(tmp_path, "bitfit", "pb_grouped", [70.0, 72.0, 74.0, 76.0, 78.0])
    write_jobs(tmp_path, "bitfit", "trainer_grouped", [71.0, 72.0, 75.0, 76.0])  # Δ = −1, 0, −1, 0; s5 unpaired
    (tmp_path / "jobs" / "sst2-full-pb_grouped-s1.log").write_text("not a job")
    (tmp_path / "jobs" / "rte-full-pb_grouped-s1.json").write_text(json.dumps({"accuracy": 1.0, "steps": 1}))
    parity.main(["--report", "--methods", "full", "bitfit", "--runners", "pb_grouped", "trainer_grouped",
                 "--out", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["setup"]["seeds_per_cell"] == {"full/pb_grouped": 3, "full/trainer_grouped": 3,
                                              "bitfit/pb_grouped": 5, "bitfit/trainer_grouped": 4}
    full, bitfit = res["comparisons"]
    assert (full["method"], full["a"], full["b"], full["n"]) == ("full", "pb_grouped", "trainer_grouped", 3)
    assert full["delta"] == pytest.approx(1.0)
    assert full["half"] == pytest.approx(4.302653 * 1.0 / 3**0.5, rel=1e-6)  # t(2) x sd / sqrt(n)
    assert not full["meets_target"]  # ±2.48 is wider than ±1
    assert (bitfit["n"], bitfit["delta"], bitfit["verdict"]) == (4, -0.5, "not distinguishable")
    assert bitfit["half"] == pytest.approx(3.182446 * (1 / 3) ** 0.5 / 2, rel=1e-6)  # sd = sqrt(1/3), t(3)
    assert bitfit["meets_target"]  # ±0.92, and it contains 0
    assert "| bitfit | 74.00 ± 3.16 (n=5) | 73.50 ± 2.38 (n=4) |" in (tmp_path / "results.md").read_text()


def test_report_counts_runs_that_learned_nothing_and_tests_the_counts(parity, tmp_path):
    # SST-2 dev: 444 of 872 positive, so the majority class scores 50.92 and a run must reach 51.92 to have learned
    write_jobs(tmp_path, "lora", "pb_grouped", [80.0, 81.0, 80.0, 79.0])
    write_jobs(tmp_path, "lora", "trainer_grouped", [50.92, 51.9, 79.0, 51.95])  # 51.95 clears 51.92: it learned
    parity.main(["--report", "--methods", "lora", "--runners", "pb_grouped", "trainer_grouped", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["setup"]["trivial_score"] == pytest.approx(100 * 444 / 872, abs=1e-4)
    (c,) = res["comparisons"]
    assert c["learned_nothing"] == [0, 2]
    # Fisher, table [[0, 4], [2, 2]]: P(0 of the 2 in A) = C(4,2)/C(8,2) = 6/28, as likely as 2 of 2: p = 12/28
    assert c["fisher_p"] == pytest.approx(12 / 28)
    md = (tmp_path / "results.md").read_text()
    assert "(n=4, 2 ⚠) |" in md and "| 0 / 2 (p 0.43) |" in md


def test_report_refuses_jobs_of_another_size(parity, tmp_path, capsys):
    write_jobs(tmp_path, "lora", "pb_grouped", [80.0, 81.0], steps=13)  # 200 rows, not the default 2,000
    with pytest.raises(SystemExit) as exc:
        parity.main(["--report", "--methods", "lora", "--runners", "pb_grouped", "--out", str(tmp_path)])
    assert "13 steps, not the 125 of --rows 2000 --epochs 1" in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        parity.main(["--report", "--methods", "full", "--runners", "pb_grouped", "--out", str(tmp_path)])
    assert "no sst2 job" in str(exc.value)


def test_stsb_is_judged_on_pearson_against_a_constant_predictions_zero(parity, tmp_path):
    (tmp_path / "jobs").mkdir()
    for runner, scores in {"pb_plain": [60.0, 0.5, 62.0], "trainer": [61.0, 59.0, 61.0]}.items():
        for seed, score in enumerate(scores, start=1):  # accuracy is absent: a regression has none
            rec = {"pearson": score, "spearman": score, "score": score, "metric": "pearson", "steps": 125}
            (tmp_path / "jobs" / f"stsb-full-{runner}-s{seed}.json").write_text(json.dumps(rec))
    parity.main(["--report", "--task", "stsb", "--methods", "full", "--runners", "pb_plain", "trainer",
                 "--out", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    assert (res["setup"]["metric"], res["setup"]["trivial_score"]) == ("pearson", 0.0)
    (c,) = res["comparisons"]
    assert c["learned_nothing"] == [1, 0] and c["delta"] == pytest.approx((-1 - 58.5 + 1) / 3)
    md = (tmp_path / "results.md").read_text()
    assert "| method | pb_plain pearson | trainer pearson |" in md and "dev pearson (x100)" in md


def test_trainer_side_is_scored_by_sklearn_and_scipy_on_hand_computed_cases(parity):
    import numpy as np
    from parity_jobs import trainer_metrics

    # preds 1,1,0,0 against labels 1,0,0,0: TP 1, FP 1, TN 2, FN 0 -> MCC = (1*2 - 1*0) / sqrt(2*1*3*2) = 1/sqrt(3)
    logits = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    got = trainer_metrics(logits, np.array([1, 0, 0, 0]), regression=False)
    assert got == {"accuracy": 75.0, "f1": pytest.approx(200 / 3, abs=1e-4), "mcc": pytest.approx(100 / 3**0.5, abs=1e-4)}
    # outputs 1,2,3 against 1,3,2: deviations (-1,0,1) and (-1,1,0), sum of products 1 over sqrt(2 x 2) -> r = 0.5
    got = trainer_metrics(np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 3.0, 2.0]), regression=True)
    assert got == {"pearson": pytest.approx(50.0), "spearman": pytest.approx(50.0)}
