"""Report from hand-written result.json fixtures: averages, mean ± std, Δ, winner, tie rule, crossover, flags, PNGs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from peftbench.cli import main
from peftbench.record import write_json_atomic
from peftbench.reports import baseline, collect, write_report
from peftbench.stats import bootstrap_crossing, compare, crossings, paired, t95

TASK = {"sst2": ("accuracy", "glue/SST-2", 872), "mrpc": ("f1", "glue/MRPC", 408), "rte": ("accuracy", "glue/RTE", 277)}
PERCENT = {"full": 100.0, "bitfit": 0.095, "lora": 0.27, "prompt": 0.015}
# GLUE primary metric per (method, task): one value per seed (42, 43).
GLUE = {"full": {"sst2": [90, 92], "mrpc": [88, 90], "rte": [66, 68]},
        "bitfit": {"sst2": [89, 89], "mrpc": [85, 87], "rte": [60, 62]},
        "lora": {"sst2": [93, 91], "mrpc": [86, 87], "rte": [58, 60]},
        "prompt": {"sst2": [88], "mrpc": [81.5], "rte": [57]}}  # MRPC 81.5 < all-positive F1 81.22 + 1: flagged
# SQuAD F1 per train size (None = all 7,793), one seed; EM = F1 - 10.
SQUAD = {"full": {500: 45.5, 1000: 54.1, 2000: 63.0, 3000: 67.8, None: 80.0},
         "bitfit": {500: 55.3, 1000: 59.3, 2000: 62.3, 3000: 63.2, None: 70.0}}


def record(root: Path, task: str, method: str, seed: int, metrics: dict, size=None, status="completed", **extra) -> None:
    metric, folder, n_eval = TASK.get(task, ("f1", None, 10570))
    out = root / task / method / str(size or "all") / f"seed{seed}"
    out.mkdir(parents=True)
    kind = "squad" if task == "squad" else "glue"
    rec = {"schema": 1, "status": status, "error": "RuntimeError: boom" if status == "failed" else None,
           "run": {"task": task, "method": method, "model": "minilm_l6", "seed": seed, "train_size": size},
           "identity": f"{task}-{method}-{seed}-{size}",
           "config": {"task": {"name": task, "kind": kind, "dir": folder}, "method": {"name": method, "trains": "x"},
                      "data_dir": str(root / "no-data"), "seed": seed},
           "metrics": metrics, "primary_metric": metric, "trainable_params": int(PERCENT[method] * 1000),
           "total_params": 100_000, "trainable_percent": PERCENT[method], "train_examples": size or 7793,
           "eval_examples": n_eval, "peak_memory_bytes": 2**30, "memory_gradients_bytes": 2**20,
           "memory_optimizer_bytes": 2**21, "train_flops": 3e12, "train_time_s": 10.0, "delta_bytes": 4096,
           "device": "cpu", "finished_at": "2026-01-01T00:00:00+00:00", **extra}
    write_json_atomic(out / "result.json", rec)


@pytest.fixture
def studies(tmp_path: Path) -> Path:
    for method, tasks in GLUE.items():
        for task, values in tasks.items():
            for seed, v in zip((42, 43), values):
                record(tmp_path / "glue", task, method, seed, {"accuracy": v, "f1": v} if task != "mrpc" else {"f1": v})
    for method, by_size in SQUAD.items():
        for size, f1 in by_size.items():
            record(tmp_path / "scaling", "squad", method, 42, {"f1": f1, "exact_match": f1 - 10}, size=size)
    record(tmp_path / "glue", "rte", "lora", 44, {}, status="failed")
    return tmp_path


def rows(md: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()
            if line.startswith(f"| {first_cell} ")]


def test_report_numbers_from_fixture_records(studies, tmp_path):
    assert main(["report", str(studies / "glue"), str(studies / "scaling"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    # GLUE: mean ± sample std (n), average of task means, per-seed average's std; bold best, italics best PEFT.
    glue = {r[0]: r[1:] for m in GLUE for r in rows(md, m) if len(r) == 6}
    assert glue["full"] == ["91.00 ± 1.41 (n=2)", "**89.00 ± 1.41 (n=2)**", "**67.00 ± 1.41 (n=2)**",
                            "**82.33 ± 1.41 (n=2)**", "100%"]
    # bitfit's per-seed averages are 78.0 and 79.33: std 0.94.
    assert glue["bitfit"] == ["89.00 ± 0.00 (n=2)", "86.00 ± 1.41 (n=2)", "_61.00 ± 1.41 (n=2)_",
                              "78.67 ± 0.94 (n=2)", "0.095%"]
    assert glue["lora"] == ["_**92.00 ± 1.41 (n=2)**_", "_86.50 ± 0.71 (n=2)_", "59.00 ± 1.41 (n=2)",
                            "_79.17 ± 0.24 (n=2)_", "0.27%"]
    assert glue["prompt"] == ["88.00 (n=1)", "81.50 (n=1) ⚠", "57.00 (n=1)", "75.50 (n=1)", "0.015%"]
    assert re.search(r"`.*mrpc/prompt/all/seed42`: f1 81.50 vs baseline 81.22", md)
    # SQuAD: Δ = bitfit − full, winner with the one-seed tie rule (|Δ| < 1), EM columns.
    table = {r[0]: r[1:] for s in ("500", "1,000", "2,000", "3,000", "all (7,793)") for r in rows(md, s) if len(r) == 7}
    assert table["500"] == ["45.50 (n=1)", "55.30 (n=1)", "+9.80", "**bitfit**", "35.50 (n=1)", "45.30 (n=1)"]
    assert table["2,000"][2:4] == ["-0.70", "tie"]
    assert table["3,000"][2:4] == ["-4.60", "**full**"]
    assert table["all (7,793)"][2:4] == ["-10.00", "**full**"]
    # Crossover between 1,000 (Δ +5.2) and 2,000 (Δ −0.7), linear on log(size): 1000 * 2^(5.2/5.9) = 1,842.
    assert f"cross at **{1000 * 2 ** (5.2 / 5.9):,.0f}**" in md and "1,842" in md
    # Regimes and the rule come from the winners: ≤1,000 bitfit, 2,000 tie, ≥3,000 full.
    assert "| ≤ 1,000 | bitfit | +5.2 to +9.8 | 500, 1,000 |" in md
    assert "| 2,000 | tie | -0.7 | 2,000 |" in md
    assert "| ≥ 3,000 | full | -10.0 to -4.6 | 3,000, all (7,793) |" in md
    assert "- ≤ 1,000 examples: use **bitfit**" in md and "- ≥ 3,000 examples: use **full**" in md
    assert re.search(r"rte/lora/all/seed44`: failed — RuntimeError: boom", md)
    for png in ("parameter_efficiency", "part1_results", "flops_comparison", "part2_results"):
        data = (tmp_path / "rep" / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"({png}.png)" in md


def test_costs_give_step_time_and_peak_memory_against_full(tmp_path):
    for method, seconds, peak in (("full", 20.0, 2**31), ("bitfit", 13.0, 3 * 2**29)):
        for seed in (1, 2):
            record(tmp_path, "mrpc", method, seed, {"f1": 85.0}, train_time_s=seconds + seed - 1, train_steps=100,
                   peak_memory_bytes=peak)
    record(tmp_path, "rte", "bitfit", 1, {"accuracy": 60.0}, train_time_s=5.0)  # no full FT, no step count: "—"
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 0
    costs = {(r[0], r[1]): r[2:] for m in ("full", "bitfit") for r in rows((tmp_path / "rep" / "report.md").read_text(), m)
             if len(r) == 10}
    # full: 20.5 s / 100 steps = 205 ms, 2,048 MiB; bitfit: 135 ms (0.66x), 1,536 MiB (0.75x)
    assert costs[("full", "mrpc")][:1] + costs[("full", "mrpc")][4:6] == ["2,048", "205", "1.00x"]
    assert costs[("bitfit", "mrpc")][:2] == ["1,536", "0.75x"] and costs[("bitfit", "mrpc")][4:6] == ["135", "0.66x"]
    assert costs[("bitfit", "rte")][1] == "—" and costs[("bitfit", "rte")][4:6] == ["—", "—"]


def test_no_crossover_and_duplicates(tmp_path):
    for size, (f, b) in {500: (50, 40), 1000: (60, 45)}.items():
        record(tmp_path, "squad", "full", 42, {"f1": f, "exact_match": f}, size=size)
        record(tmp_path, "squad", "bitfit", 42, {"f1": b, "exact_match": b}, size=size)
    md = write_report([tmp_path, tmp_path / "squad"], tmp_path / "rep").read_text()  # the same files twice
    assert "No crossover in range (500–1,000): full has the higher F1 at every measured size." in md
    assert len(collect([tmp_path, tmp_path / "squad"])) == 4


def test_tie_rule_and_interval():
    assert compare([60.0], [60.9])["winner"] == "tie" and compare([60.0], [61.2])["winner"] == "other"
    # 2 seeds each, s = 1.414: se = 1.414, Welch df = 2, t = 4.303 -> half-width 6.09: Δ = 3 is a tie.
    c = compare([60, 62], [63, 65])
    assert c["winner"] == "tie" and c["half"] == pytest.approx(4.303 * math.sqrt(2), abs=1e-3)
    # 3 seeds each, s = 0.2: se = 0.1633, df = 4, t = 2.776 -> half-width 0.453: Δ = 3 is a win.
    c = compare([60, 60.2, 59.8], [63, 63.2, 62.8])
    assert c["winner"] == "other" and c["half"] == pytest.approx(2.776 * 0.2 * math.sqrt(2 / 3), abs=1e-3)
    assert compare([70, 71], [60, 62])["winner"] == "tie"  # Welch df 1.47 -> 1: t = 12.7, half-width 14.2
    assert compare([70, 70.5, 71], [60, 61, 62])["winner"] == "base"  # df 2.94 -> 2: half-width 2.78


def test_crossings_and_bootstrap():
    assert crossings([500, 1000, 2000], [2, 1, -1]) == [pytest.approx(1000 * 2**0.5)]
    assert crossings([500, 1000], [3, 1]) == []
    assert crossings([500, 1000, 2000], [1, 0, -1]) == [1000.0]
    lo, hi, share = bootstrap_crossing([500, 1000, 2000], [[50, 52], [55, 57], [60, 62]], [[55, 57], [57, 58], [58, 59]])
    point = crossings([500, 1000, 2000], [6, 1.5, -2.5])[0]
    assert lo <= point <= hi and 0 < share <= 1
    assert bootstrap_crossing([500, 1000], [[1], [2]], [[2], [1]]) is None


def test_baseline_from_the_runs_dev_file(tmp_path, glue_dir):
    # The fixture MRPC dev set is 16 positives of 24: all-positive F1 = 2p/(1+p) = 80.0; RTE 12/24: accuracy 50.0.
    rec = {"primary_metric": "f1", "eval_examples": 24, "config": {"data_dir": str(glue_dir), "task": {
        "name": "mrpc", "kind": "glue", "dir": "glue/MRPC", "text_fields": ["#1 String", "#2 String"],
        "label_field": "Quality", "labels": ["0", "1"]}}}
    assert baseline(rec) == pytest.approx(80.0)
    rec["primary_metric"] = "accuracy"
    assert baseline(rec) == pytest.approx(100 * 16 / 24)
    # No dev file: the official dev counts, only when the eval set has their size (MRPC 279/408 -> 81.22).
    rec["config"]["data_dir"] = str(tmp_path / "none")
    rec["primary_metric"] = "f1"
    assert baseline(rec) is None
    rec["eval_examples"] = 408
    assert baseline(rec) == pytest.approx(100 * 2 * 279 / 408 / (1 + 279 / 408))


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("peftbench: error: report:") for e in err)


def test_paired_interval_by_hand():
    # Seeds 1-4 shared (seed 5 only on one side): d = 1, 3, 0, 2; mean 1.5; sample variance
    # (0.25 + 2.25 + 2.25 + 0.25) / 3 = 5/3; se = sqrt(5/3) / 2 = 0.6455; t(0.975, df 3) = 3.1824 -> half 2.0543.
    p = paired({1: 80, 2: 82, 3: 79, 4: 85}, {1: 81, 2: 85, 3: 79, 4: 87, 5: 90})
    assert p["n"] == 4 and p["delta"] == pytest.approx(1.5)
    assert p["half"] == pytest.approx(3.1824 * math.sqrt(5 / 3) / 2, rel=1e-4)
    assert p["half"] == pytest.approx(2.0543, abs=1e-4)
    assert (p["low"], p["high"]) == (pytest.approx(-0.5543, abs=1e-4), pytest.approx(3.5543, abs=1e-4))
    assert p["verdict"] == "not distinguishable"  # the interval covers 0
    # d = 2, 3, 2.5: mean 2.5, sd 0.5, se 0.2887, t(df 2) = 4.303 -> half 1.2422: [1.258, 3.742], above 0.
    p = paired({1: 60, 2: 60, 3: 60}, {1: 62, 2: 63, 3: 62.5})
    assert p["half"] == pytest.approx(4.3027 * 0.5 / math.sqrt(3), rel=1e-4) and p["verdict"] == "higher"
    assert paired({1: 60, 2: 61}, {1: 55, 2: 55.5})["verdict"] == "lower"  # d = -5, -5.5: half 12.706*0.25 = 3.18
    one = paired({1: 60}, {1: 70})
    assert one["half"] is None and one["verdict"] == "not distinguishable"  # one pair: no interval, no claim
    assert paired({1: 60}, {2: 60}) is None


def test_t_critical_values_past_the_old_table():
    # Standard t tables: t(0.975) = 2.0423 at df 30, 2.0003 at df 60, 1.9840 at df 100; a Welch df of 2.7 -> df 2.
    # The old table stopped at df 30 and jumped to 1.96, which made a 60-seed interval 2% too narrow.
    assert [round(t95(d), 4) for d in (30, 60, 100, 2.7)] == [2.0423, 2.0003, 1.9840, 4.3027]


def test_best_rate_per_task_incomplete_rates_ties_and_the_seed_rate(tmp_path, monkeypatch):
    # (method, lr) -> MRPC F1 per seed 1, 2, 3; full's own rate is 2e-5, bitfit's 5e-4 (as in their configs).
    grid = {("full", 2e-5): [84, 86, 85], ("full", 1e-4): [88, 90, 89],
            ("bitfit", 5e-4): [81.22, 81.22, 81.22],  # the all-positive baseline: learned nothing
            ("bitfit", 1e-3): [86, 88, 87],   # mean 87 ...
            ("bitfit", 5e-3): [88, 87],       # ... mean 87.5, but 2 runs (seed 3 not run): only 3-run rates compete
            ("lora", 1e-4): [88, 86, 90],     # mean 88 ...
            ("lora", 1e-3): [87, 89, 88]}     # ... mean 88, 3 runs each: the tie goes to the lower rate 1e-4
    own = {"full": 2e-5, "bitfit": 5e-4, "lora": 2e-4}
    for (method, lr), values in grid.items():
        for seed, v in enumerate(values, 1):
            record(tmp_path / f"lr{lr:g}", "mrpc", method, seed, {"f1": v}, lr=lr, identity=f"{method}-{lr}-{seed}",
                   config={"task": {"name": "mrpc", "kind": "glue", "dir": "glue/MRPC"}, "data_dir": "none",
                           "method": {"name": method, "trains": "x", "lr": own[method]}, "seed": seed})
    seen = {}
    monkeypatch.setattr("peftbench.reports.figures.part1_results", lambda *a, **k: seen.update(baselines=a[5]))
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    glue = {r[0]: r[1] for m in own for r in rows(md, m) if len(r) == 4}
    assert glue == {"full": "**89.00 ± 1.00 (n=3) @ 0.0001**", "bitfit": "87.00 ± 1.00 (n=3) @ 0.001",
                    "lora": "_88.00 ± 2.00 (n=3) @ 0.0001_"}
    # The whole grid, the picked rate in bold, the reference study's rate marked.
    assert "| full | 2e-05 (ref) | 85.00 ± 1.00 (n=3) |" in md and "| full | 0.0001 | **89.00 ± 1.00 (n=3)** |" in md
    assert "| bitfit | 0.005 | 87.50 ± 0.71 (n=2) |" in md and "| lora | 0.001 | 88.00 ± 1.00 (n=3) |" in md
    # Beside the tuned result, the reference rate: bitfit at 5e-4 learned nothing; lora's own 2e-4 was not in the grid.
    assert "| bitfit | mrpc | 0.0005 | 81.22 ± 0.00 (n=3) ⚠ | 0.001 | 87.00 ± 1.00 (n=3) |" in md
    assert "| lora | mrpc | 0.0002 | not run | 0.0001 | 88.00 ± 2.00 (n=3) |" in md
    # vs full FT, paired by seed at the best rates: bitfit d = -2, -2, -2 (sd 0): [-2, -2], below;
    # lora d = 0, -4, +1: mean -1, sd sqrt(7), half 4.303 * sqrt(7/3) = 6.573: not distinguishable.
    assert "| bitfit | -2.00 [-2.00, -2.00] (n=3) |" in md
    h = 4.303 * math.sqrt(7 / 3)
    assert f"| lora | -1.00 [{-1 - h:+.2f}, {-1 + h:+.2f}] (n=3) |" in md
    assert (f"- **mrpc**: below full FT: bitfit (-2.00 [-2.00, -2.00]); not distinguishable from full FT (the interval "
            f"covers 0): lora (-1.00 [{-1 - h:+.2f}, {-1 + h:+.2f}]).") in md
    # The figure gets the majority baseline: MRPC dev's all-positive F1, 2 * 279/408 / (1 + 279/408) = 81.22.
    assert seen["baselines"] == {"mrpc": pytest.approx(100 * 558 / 687)}


def test_scaling_pairs_by_seed_when_both_methods_ran_the_same_seeds(tmp_path):
    # Seeds 1-3 at one size: F1 varies a lot by seed (50, 60, 70) but bitfit is 2-2.5 above full at every seed.
    # Paired: d = 2, 2, 2.5, mean 2.17, sd 0.289, half 4.303 * 0.289 / sqrt(3) = 0.717: bitfit wins.
    # Welch (unpaired) would call it a tie: both sds are ~10, half-width ~23.
    for seed, (f, b) in enumerate([(50, 52), (60, 62), (70, 72.5)], 1):
        record(tmp_path, "squad", "full", seed, {"f1": f, "exact_match": f}, size=500)
        record(tmp_path, "squad", "bitfit", seed, {"f1": b, "exact_match": b}, size=500)
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    half = 4.303 * math.sqrt(((2 - 13 / 6) ** 2 * 2 + (2.5 - 13 / 6) ** 2) / 2) / math.sqrt(3)
    assert rows(md, "500")[0][3:5] == [f"+2.17 (±{half:.2f})", "**bitfit**"] and f"{half:.2f}" == "0.72"
    assert compare([50, 60, 70], [52, 62, 72.5])["winner"] == "tie"


def test_scaling_report_states_the_schedule_the_runs_trained(tmp_path):
    # Two sizes, one seed each; the settings come from each result.json, so a reduced schedule is said in the report.
    # 500 questions -> 561 windows, 150 steps of 16: 150 x 16 / 561 = 4.28 passes; seed 2 got 547 windows (4.39).
    sched = {"schedule": "steps", "steps": {"min_steps": 150, "epochs_equiv": 2, "cap": 500}, "batch_size": 16,
             "warmup_ratio": 0.1}
    for method, lr in (("full", 1e-4), ("bitfit", 5e-3)):
        for size, seed, windows, steps in ((500, 1, 561, 150), (500, 2, 547, 150), (4000, 1, 4400, 500)):
            record(tmp_path, "squad", method, seed, {"f1": 20.0, "exact_match": 10.0}, size=size, train_steps=steps,
                   train_windows=windows, lr=lr, precision="bf16", eval_examples=1000)
            path = tmp_path / "squad" / method / str(size) / f"seed{seed}" / "result.json"
            rec = json.loads(path.read_text())
            rec["config"].update(sched)
            rec["config"]["task"].update(max_length=256, doc_stride=64)
            write_json_atomic(path, rec)
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    assert "| 500 | 547–561 | 150 | 150 | 4.3–4.4 |" in md
    assert "| 4,000 | 4,400 | 500 | 500 | 1.8 |" in md  # 500 x 16 / 4,400 = 1.82
    assert ("Schedule `steps`: steps = min(500, max(150, ceil(windows / 16 × 2))), batch 16, warmup 0.1 of the steps. "
            "Windows of 256 tokens (stride 64); eval on 1,000 questions; precision bf16; learning rate full 0.0001; "
            "bitfit 0.005.") in md


def test_scaling_report_with_one_method_so_far(tmp_path):
    # A study half-way through (full FT done, BitFit not started) still reports: no Δ, no crossover, no crash.
    record(tmp_path, "squad", "full", 1, {"f1": 17.0, "exact_match": 9.0}, size=500)
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    assert rows(md, "500")[0] == ["500", "17.00 (n=1)", "—", "—", "9.00 (n=1)"] and "### Crossover" not in md


def test_report_of_one_study_reads_only_the_runs_it_plans(tmp_path, capsys):
    # Two studies share one folder: this one plans mrpc x {full, bitfit} x seeds 1-2 at one rate each; the folder
    # also holds a bitfit run at a rate the study does not plan (another study's), which must not be read.
    res = tmp_path / "res"
    study = tmp_path / "two.yaml"
    study.write_text(f"methods: [full, bitfit]\ntasks: [mrpc]\nseeds: [1, 2]\nsizes: null\n"
                     f"lrs: {{full: [1e-4], bitfit: [1e-3]}}\nout: {res}\nrun: []\nparallel: 1\n")
    values = {("full", "lr0.0001"): [88, 90], ("bitfit", "lr0.001"): [85, 87], ("bitfit", "lr0.03"): [50, 50]}
    for (method, lr), vals in values.items():
        for seed, v in zip((1, 2), vals):
            record(tmp_path / lr, "mrpc", method, seed, {"f1": v}, lr=float(lr[2:]), identity=f"{method}-{lr}-{seed}")
            src = tmp_path / lr / "mrpc" / method / "all" / f"seed{seed}" / "result.json"
            (res / "mrpc" / method / lr / f"seed{seed}").mkdir(parents=True)
            src.rename(res / "mrpc" / method / lr / f"seed{seed}" / "result.json")
    assert main(["report", "--study", str(study), "--out", str(tmp_path / "one")]) == 0
    md = (tmp_path / "one" / "report.md").read_text()
    assert f"4 completed runs, 0 failed or unfinished, read from the runs of study `{study}` in `{res}` " \
           "(4 of its 4 planned runs found)." in md
    assert "lr0.03" not in md and "0.03" not in md  # the unplanned rate's runs were not read
    assert main(["report", str(res), "--out", str(tmp_path / "all")]) == 0  # the folder: all 6
    assert "6 completed runs" in (tmp_path / "all" / "report.md").read_text()
    capsys.readouterr()
    assert main(["report", "--out", str(tmp_path / "x")]) == 2
    assert main(["report", "--study", str(study), str(res), str(res)]) == 2
    assert main(["report", "--study", str(study), str(tmp_path / "empty"), "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("peftbench: error: report") for e in err)
    assert "none of its 4 planned runs has a result.json" in err[2] and not (tmp_path / "none").exists()


def test_learning_curves_from_the_runs_eval_history(tmp_path):
    # Two seeds of prompt on MRPC, scored at steps 10 and 20 (eval_every) and at the end (step 30, 3 epochs).
    for seed, (at10, at20, final) in ((1, (81.0, 83.0, 84.0)), (2, (82.0, 85.0, 86.0))):
        record(tmp_path, "mrpc", "prompt", seed, {"f1": final}, lr=0.03, train_steps=30, epochs_run=3.0,
               identity=f"prompt-{seed}", history=[{"step": 10, "f1": at10}, {"step": 20, "f1": at20}])
    record(tmp_path, "mrpc", "full", 1, {"f1": 88.0})  # no history: no curve
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    curves = md.split("## Learning curves")[1].split("## Learned nothing")[0]
    assert "**mrpc / prompt**, lr 0.03: f1, baseline 81.22" in curves and "mrpc / full" not in curves
    # step 10: both seeds under 81.22 + 1 (flagged 2); then 84 ± 1.41 and the final 85 ± 1.41, neither flagged
    assert rows(curves, "10") == [["10", "1.0", "81.50 ± 0.71 (n=2)", "2"]]
    assert rows(curves, "20") == [["20", "2.0", "84.00 ± 1.41 (n=2)", ""]]
    assert rows(curves, "30") == [["30", "3.0", "85.00 ± 1.41 (n=2)", ""]]


def test_mrpc_reports_accuracy_beside_f1_with_its_own_baseline(tmp_path):
    # MRPC dev: 279 of 408 positive, so majority accuracy 68.38 and all-positive F1 81.22 (KNOWN_DEV; eval 408).
    # prompt trails the F1 baseline (81.0 < 82.22) on seed 1 yet beats majority accuracy by 1 on both seeds;
    # bitfit's seed 2 sits at the majority class in both metrics.
    runs = {"full": [(88.0, 80.0), (90.0, 84.0)], "bitfit": [(84.0, 76.0), (81.22, 68.38)],
            "prompt": [(81.0, 70.0), (83.0, 71.0)]}
    for method, per_seed in runs.items():
        for seed, (f1, acc) in enumerate(per_seed, 1):
            record(tmp_path, "mrpc", method, seed, {"f1": f1, "accuracy": acc})
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    secondary = md.split("### Secondary metric")[1].split("\n#")[0]
    assert "| method | mrpc (accuracy) |" in secondary
    assert {r[0]: r[1] for m in runs for r in rows(secondary, m)} == {
        "full": "82.00 ± 2.83 (n=2)", "bitfit": "72.19 ± 5.39 (n=2) ⚠", "prompt": "70.50 ± 0.71 (n=2)"}
    assert "(mrpc accuracy 68.38)" in secondary
    # The primary table still flags prompt by F1.
    assert "| prompt | 82.00 ± 1.41 (n=2) ⚠ |" in md


def test_no_secondary_table_without_a_secondary_metric(studies, tmp_path):
    md = write_report([studies / "glue"], tmp_path / "rep").read_text()  # the fixture's MRPC runs carry F1 only
    assert "Secondary metric" not in md


def test_cost_tables_mark_times_of_runs_that_shared_a_gpu(tmp_path):
    """A run whose GPU other runs of its study shared (device_shared_with > 0): its times, and ratios to them, carry
    the mark and the table says why; a run alone on its GPU (0) or a record without the field does not."""
    for method, seed, shared in [("full", 42, 0), ("full", 43, None), ("lora", 42, 1), ("lora", 43, 0),
                                 ("bitfit", 42, None)]:
        record(tmp_path / "glue", "rte", method, seed, {"accuracy": 70.0}, device="cuda:0", device_shared_with=shared,
               train_steps=100)
    assert main(["report", str(tmp_path / "glue"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    costs = {r[0]: r[1:] for r in (rows(md, m)[-1] for m in ("full", "lora", "bitfit")) if len(r) == 10}
    assert costs["lora"][5:8] == ["100 †", "1.00x †", "10.0 †"]  # step (ms), vs full, train time (s)
    assert costs["full"][5:8] == ["100", "1.00x", "10.0"] and costs["bitfit"][5:8] == ["100", "1.00x", "10.0"]
    assert "†: a run in the cell (or in full's, for a ratio) shared its GPU with other runs of the study" in md
    # full shared, bitfit alone: only bitfit's ratio to full's time is marked
    record(tmp_path / "b", "rte", "full", 42, {"accuracy": 70.0}, device="cuda:0", device_shared_with=2, train_steps=100)
    record(tmp_path / "b", "rte", "bitfit", 42, {"accuracy": 70.0}, device="cuda:0", device_shared_with=0,
           train_steps=100)
    assert main(["report", str(tmp_path / "b"), "--out", str(tmp_path / "rep2")]) == 0
    assert rows((tmp_path / "rep2" / "report.md").read_text(), "bitfit")[-1][6:9] == ["100", "1.00x †", "10.0"]
    record(tmp_path / "alone", "rte", "full", 42, {"accuracy": 70.0}, device="cuda:0", device_shared_with=0)
    assert main(["report", str(tmp_path / "alone"), "--out", str(tmp_path / "rep3")]) == 0
    assert "†" not in (tmp_path / "rep3" / "report.md").read_text()
