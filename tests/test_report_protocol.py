"""The report under the holdout protocol, from synthetic result.json records shaped like a committed one: final runs
only in the dev tables, the protocol in each caption, EVP (per data seed; random trials only), the procedure's
verdicts, seeds and why they stopped, optimism over fresh seeds, and the data seed as the unit of replication."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from scipy.stats import norm, t

from peftbench.record import write_json_atomic
from peftbench.reports import write_report
from peftbench.stats import STOP_REASONS

COMMITTED = Path(__file__).parents[1] / "results/glue_minilm/mrpc/full/lr5e-05/seed1/result.json"
TEMPLATE = json.loads(COMMITTED.read_text())  # a real record's shape; the tests change its fields
AUTO = {"seeds": "auto", "min_seeds": 3, "max_seeds": 5, "margin": 1.0, "alpha": 0.05}
HOLDOUT = {"spec": 0.1, "size": 367, "ids_sha256": "ab" * 32}
FULL = [85, 86, 84, 87, 85]  # full FT's final dev F1 at seeds 1-5
# Δ vs full per seed, picked so each verdict settles (margin 1, alpha 0.05, looks at 3..5 seeds). At the first look
# the spending share is w3 = a(3/5) / 0.05 = 0.2279 (a: Lan-DeMets O'Brien-Fleming), and 8 chains hold 0.05/8 each:
# a p-value clears it when p <= 0.00625 * 0.2279 = 0.00142 (df 2: t >= 18.6).
# lora: t(better) = 3 / (0.2/sqrt 3) = 26.0 -> better; dora: t(NI) = 1 / (0.05/sqrt 3) = 34.6, t(better) = 0 ->
# non-inferior; ia3: t(inferior) = 4 / (0.2/sqrt 3) = 34.6 -> inferior; bitfit: mean 0, sd 1.58 -> unsettled at 5.
DELTAS = {"lora": [3, 3.2, 2.8], "dora": [0.05, -0.05, 0.0], "ia3": [-5, -5.2, -4.8], "bitfit": [2, -2, 1, -1, 0]}
SELECT = {"full": [70, 80, 75, 85, 60], "lora": [50, 82, 81, 79, 83]}  # holdout F1 of trials t0..t4


def record(path: Path, method: str, seed: int, f1: float, lr: float, task: str = "mrpc", size=None, **fields) -> None:
    rec = copy.deepcopy(TEMPLATE)
    rec["run"] = {"task": task, "method": method, "model": "minilm_l6", "seed": seed, "train_size": size}
    rec["identity"] = str(path)
    rec["config"]["method"] = {"name": method, "trains": "x", "lr": lr}
    rec["config"]["data_dir"] = str(path / "no-data")
    rec["config"]["seed"] = seed
    if task != "mrpc":
        rec["config"]["task"] = {"name": task, "kind": "glue", "dir": "glue/RTE", "metric": "accuracy"}
        rec["primary_metric"] = "accuracy"
    rec["metrics"] = {rec["primary_metric"]: f1}
    rec["lr"] = lr
    rec.update(fields)
    path.mkdir(parents=True)
    write_json_atomic(path / "result.json", rec)


def protocol(phase: str, config: str, lr: float, **extra) -> dict:
    """As studies/grid.py writes them: select runs carry the holdout; final runs train on all of train (holdout null) and
    carry the select run's under protocol.picked_holdout."""
    final = phase == "final"
    return {"protocol": {"select": "holdout", "phase": phase, "config": config, "params": {"lr": lr}, "budget": 5,
                         "sampler": "random", "picked_holdout_score": None, **AUTO, **extra,
                         **({"picked_holdout": HOLDOUT} if final else {})},
            "holdout": None if final else HOLDOUT, "data_seed": 0}


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "holdout"
    picked = {"full": 1e-5, "lora": 3e-4, "dora": 2e-4, "ia3": 3e-3, "bitfit": 1e-3}
    for m, scores in SELECT.items():
        for k, score in enumerate(scores):
            record(root / "mrpc" / m / "select" / f"t{k}" / "seed1", m, 1, score, 1e-4 * (k + 1),
                   eval_split="holdout", **protocol("select", f"t{k}", 1e-4 * (k + 1)))
    for m, lr in picked.items():
        scores = FULL if m == "full" else [f + d for f, d in zip(FULL, DELTAS[m])]
        for seed, score in enumerate(scores, 1):
            record(root / "mrpc" / m / "final" / f"seed{seed}", m, seed, score, lr, eval_split="dev",
                   **protocol("final", "t0", lr))
    # The same configs under select=dev (old records: no protocol fields), scored on dev, 3 seeds per rate.
    grid = {("full", 1e-5): [84, 85, 86], ("full", 5e-5): [86, 87, 88], ("lora", 1e-4): [85, 85, 85],
            ("lora", 1e-3): [88, 89, 90]}
    for (m, lr), scores in grid.items():
        for seed, score in enumerate(scores, 1):
            record(tmp_path / "dev" / "mrpc" / m / f"lr{lr:g}" / f"seed{seed}", m, seed, score, lr)
    return tmp_path


def section(md: str, title: str) -> str:
    return md.split(title, 1)[1].split("\n## ", 1)[0]


def row(text: str, first: str) -> list[str]:
    return next([c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
                if line.startswith(f"| {first} "))


def test_dev_tables_use_final_runs_and_name_the_protocol(study):
    md = write_report([study], study / "rep").read_text()
    holdout = section(md, "## GLUE — minilm_l6, select=holdout")
    assert holdout.startswith("\n\n_Protocol: configs picked on a holdout of 367 train rows (data_seed 0), scored on "
                              "dev; budget: 5 random trials per method; seeds: auto (min 3, max 5; verdicts at a "
                              "margin of 1 points, alpha 0.05)._")
    # full's cell: its 5 final runs only (mean 85.4, sd sqrt(5.2 / 4) = 1.14); the 5 selection runs stay out.
    assert row(holdout, "full")[1] == "85.40 ± 1.14 (n=5)"
    assert row(holdout, "lora")[1] == "_**88.00 ± 1.20 (n=3)**_"
    dev = section(md, "## GLUE — minilm_l6\n")
    assert dev.startswith("\n_Protocol: rates picked on the reported dev set: optimistic (`select=dev`)._")
    assert row(dev, "full")[1] == "87.00 ± 1.00 (n=3) @ 5e-05"  # lora (89) is bold


def test_evp_table_by_hand(study):
    md = write_report([study], study / "rep").read_text()
    evp = section(md, "## Expected Validation Performance")
    # k=1: the mean and population sd of the 5 scores; full 60..85: 74 ± sqrt(370/5) = 8.60.
    # k=5 = N: P(best = i-th smallest) = (i^5 - (i-1)^5) / 5^5 = 1, 31, 211, 781, 2101 / 3125:
    # full (60*1 + 70*31 + 75*211 + 80*781 + 85*2101) / 3125 = 259120 / 3125 = 82.92, sd 3.33.
    assert row(evp, "mrpc (f1)")[:7] == ["mrpc (f1)", "full", "1", "5", "74.00 ± 8.60", "82.92 ± 3.33",
                                         "82.92 ± 3.33"]
    lora = [r for r in evp.splitlines() if r.startswith("| mrpc (f1) | lora ")][0]
    assert lora == "| mrpc (f1) | lora | 1 | 5 | 75.00 ± 12.57 | 82.56 ± 0.92 | 82.56 ± 0.92 |"
    png = (study / "rep" / "evp.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "(evp.png)" in md


def test_verdicts_by_hand(study):
    md = write_report([study], study / "rep").read_text()
    versus = section(md, "## GLUE — minilm_l6, select=holdout").split("### vs full fine-tuning")[1]
    w3 = 2 * norm.sf(norm.ppf(0.975) / math.sqrt(3 / 5)) / 0.05
    assert w3 == pytest.approx(0.2279, abs=1e-4)
    assert t.sf(26.0, 2) < 0.05 / 8 * w3 < t.sf(18.0, 2)
    half = t.ppf(0.975, 2) * 0.2 / math.sqrt(3)  # lora's and ia3's plain 95% interval: ± 0.50
    assert row(versus, "lora")[1] == f"+3.00 [{3 - half:+.2f}, {3 + half:+.2f}] (n=3) better"
    assert row(versus, "dora")[1] == "+0.00 [-0.12, +0.12] (n=3) non-inferior"
    assert row(versus, "ia3")[1] == "-5.00 [-5.50, -4.50] (n=3) inferior"
    assert row(versus, "bitfit")[1] == "+0.00 [-1.96, +1.96] (n=5) unsettled"
    assert ("- **mrpc**: unsettled at max_seeds, reported with its interval, not a tie: bitfit (+0.00 [-1.96, +1.96] "
            "(n=5)); better than full FT: lora (+3.00 [+2.50, +3.50] (n=3)); non-inferior to full FT (loses less than "
            "the margin): dora (+0.00 [-0.12, +0.12] (n=3)); inferior to full FT (loses more than the margin): ia3 "
            "(-5.00 [-5.50, -4.50] (n=3)).") in versus
    assert "#### How much do we lose (margin 1 points, alpha 0.05)" in versus


def test_seeds_used_and_why_they_stopped(study):
    md = write_report([study], study / "rep").read_text()
    seeds = section(md, "## Seeds per comparison")
    assert row(seeds, "mrpc")[1:] == ["full", "5", "—", "—", "the baseline: as many as its longest comparison"]
    got = {r[1]: r[2:] for r in (line.strip("|").split("|") for line in seeds.splitlines()
                                 if line.startswith("| mrpc |")) for r in [[c.strip() for c in r]]}
    assert got["lora"] == ["3", "3", "better", STOP_REASONS["better"] + " (look at 3 seeds)"]
    assert got["dora"] == ["3", "3", "non-inferior", STOP_REASONS["non-inferior"] + " (look at 3 seeds)"]
    assert got["ia3"] == ["3", "3", "inferior", STOP_REASONS["inferior"] + " (look at 3 seeds)"]
    assert got["bitfit"] == ["5", "5", "inconclusive", STOP_REASONS["max_seeds"] + " (look at 5 seeds)"]


def test_optimism_over_fresh_seeds(study):
    md = write_report([study], study / "rep").read_text()
    opt = section(md, "## Optimism of picking on dev")
    # full: seed 1 (the pick seed) picks 5e-5 (86 > 84); the holdout picked 1e-5, which the dev grid also ran: fresh
    # seeds 2, 3 give 87 - 85 and 88 - 86: +2.00, sd 0.
    assert row(opt, "mrpc")[1:] == ["full", "5e-05", "1e-05", "dev grid", "2", "+2.00 [+2.00, +2.00]"]
    # lora: seed 1 picks 1e-3 (88 > 85); the holdout's 3e-4 is not in the grid: its final runs at seeds 2, 3
    # (86 + 3.2, 84 + 2.8) against the grid's 89, 90: -0.2, +3.2 -> +1.50 ± 12.706 * 2.404 / sqrt 2.
    lora = [r for r in opt.splitlines() if r.startswith("| mrpc | lora ")][0]
    half = t.ppf(0.975, 1) * math.sqrt(((-0.2 - 1.5) ** 2 + (3.2 - 1.5) ** 2) / 1) / math.sqrt(2)
    assert lora == f"| mrpc | lora | 0.001 | 0.0003 | final runs | 2 | +1.50 [{1.5 - half:+.2f}, {1.5 + half:+.2f}] |"


def test_evp_is_not_drawn_for_a_grid_or_tpe(tmp_path):
    for k, lr in enumerate((1e-4, 1e-3)):
        record(tmp_path / "mrpc" / "full" / "select" / f"lr{lr:g}" / "seed0", "full", 0, 70.0 + k, lr,
               eval_split="holdout", **protocol("select", f"lr{lr:g}", lr, sampler="grid"))
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    evp = section(md, "## Expected Validation Performance")
    assert "Not drawn: the selection used the grid sampler" in evp and "| k=1 |" not in evp


def test_evp_is_computed_per_data_seed_then_averaged(tmp_path):
    # data seed 0: trials 60, 80 -> k=1: 70, k=2: (1*60 + 3*80)/4 = 75; data seed 1: 50, 50 -> 50, 50.
    # averaged: k=1 60.00, k=N=2 62.50 (pooling both holdouts' trials would give k=2 (3 draws of 4...) = 68.75).
    for ds, scores in ((0, [60, 80]), (1, [50, 50])):
        for k, v in enumerate(scores):
            record(tmp_path / "rte" / "full" / "500" / f"d{ds}" / "select" / f"t{k}" / "seed0", "full", 0, v, 1e-4,
                   task="rte", size=500, eval_split="holdout", **{**protocol("select", f"t{k}", 1e-4), "data_seed": ds})
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    evp = section(md, "## Expected Validation Performance")
    cells = row(evp, "rte, 500 rows (accuracy)")
    assert cells[1:4] == ["full", "2", "2"] and cells[4].startswith("60.00 ±") and cells[6].startswith("62.50 ±")


def test_pairs_on_seed_and_data_seed(tmp_path):
    # A sizes study with data_seeds [0, 1] and seeds [1, 2]: 4 pairs, not 2 (seed alone would collapse them).
    full = {(1, 0): 60, (2, 0): 62, (1, 1): 70, (2, 1): 72}
    lora = {(1, 0): 61, (2, 0): 63.5, (1, 1): 71, (2, 1): 73}  # Δ = 1, 1.5, 1, 1: mean 1.125, sd 0.25
    for m, scores in (("full", full), ("lora", lora)):
        for (seed, ds), v in scores.items():
            record(tmp_path / "rte" / m / "500" / f"d{ds}" / "final" / f"seed{seed}", m, seed, v, 1e-4, task="rte",
                   size=500, eval_split="dev", **{**protocol("final", "t0", 1e-4), "data_seed": ds})
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    # the data seed is the unit: per data seed the mean Δ over its seeds (1.25, 1.0), the interval across the two
    sd = math.sqrt(2 * 0.125 ** 2)
    half = t.ppf(0.975, 1) * sd / math.sqrt(2)
    # one look at n = 2 data seeds, 2 chains at 0.025: NI t = 2.125 / (sd / sqrt 2) = 17.0, p = 0.0187 -> rejected;
    # better t = 9.0, p = 0.0352 -> not: non-inferior
    assert t.sf(2.125 / (sd / math.sqrt(2)), 1) < 0.025 < t.sf(1.125 / (sd / math.sqrt(2)), 1)
    assert f"| lora | +1.12 [{1.125 - half:+.2f}, {1.125 + half:+.2f}] (n=2) non-inferior |" in md
    assert "paired by seed within data seed, averaged per data seed (the data seeds both ran)" in md
    # seeds=auto rounds run per data seed: 2 seeds < min_seeds 3, so the first look of either cell is still ahead.
    assert ("| rte, 500 rows, data_seed 1 | lora | 2 | 2 | — | unsettled: the next look needs 3 seeds; a resumed "
            "study runs them |" in md)


def test_no_verdict_against_a_baseline_that_learned_nothing(tmp_path):
    """MRPC's trivial F1 is 81.22 (every pair "equivalent"): full FT at 81.0 on average learned nothing, so a method 3 points
    above it is not called better (nor anything else): its interval is shown, flagged, with no verdict."""
    root = tmp_path / "holdout"
    for m, base in (("full", 81.0), ("lora", 84.0)):
        for seed, d in enumerate([0.0, 0.2, -0.2], 1):
            record(root / "mrpc" / m / "final" / f"seed{seed}", m, seed, base + d, 1e-4, eval_split="dev",
                   **protocol("final", "t0", 1e-4))
    md = write_report([root], tmp_path / "rep").read_text()
    versus = section(md, "## GLUE — minilm_l6, select=holdout").split("### vs full fine-tuning")[1]
    assert row(versus, "lora")[1] == "+3.00 [+3.00, +3.00] (n=3) no verdict ⚠"
    assert "- **mrpc**: no verdict: full FT did not clearly learn here ⚠: lora (+3.00 [+3.00, +3.00] (n=3))." in versus
    assert "better than full FT" not in versus


def test_no_verdict_where_full_fts_interval_reaches_the_trivial_score(tmp_path):
    """Full FT at 83.36, 81.36, 83.44 on MRPC (trivial 81.22): its mean 82.72 is 1.5 points above, but its 95% interval
    (82.72 ± 4.303 x 1.178 / sqrt 3 = ± 2.93) reaches down to 79.8, so seed noise could put it at the trivial score:
    no verdict. The same scores 3 points higher clear it, and LoRA, 3 points above those, is called better."""
    from scipy.stats import t as student

    for shift, verdict in ((0.0, False), (3.0, True)):
        root = tmp_path / f"h{shift}"
        for seed, v in enumerate([83.36, 81.36, 83.44], 1):
            for m, extra in (("full", 0.0), ("lora", 3.0)):
                record(root / "mrpc" / m / "final" / f"seed{seed}", m, seed, v + shift + extra + 0.01 * seed, 1e-4,
                       eval_split="dev", **protocol("final", "t0", 1e-4))
        md = write_report([root], tmp_path / f"rep{shift}").read_text()
        versus = section(md, "## GLUE — minilm_l6, select=holdout").split("### vs full fine-tuning")[1]
        scores = [v + shift + 0.01 * s for s, v in enumerate([83.36, 81.36, 83.44], 1)]
        mean = sum(scores) / 3
        sd = (sum((x - mean) ** 2 for x in scores) / 2) ** 0.5
        assert bool(mean - student.ppf(0.975, 2) * sd / 3 ** 0.5 > 81.22) is verdict
        assert ("no verdict" not in row(versus, "lora")[1]) is verdict, row(versus, "lora")
