"""The report under the holdout protocol, from synthetic result.json records shaped like a committed one: final runs
only in the dev tables, the protocol in each caption, EVP, Holm-adjusted verdicts, seeds and why they stopped,
optimism, and pairing on (seed, data_seed)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from scipy.stats import t

from peftbench.record import write_json_atomic
from peftbench.report import write_report
from peftbench.stats import STOP_REASONS

COMMITTED = Path(__file__).parents[1] / "results/glue_minilm/mrpc/full/lr5e-05/seed1/result.json"
TEMPLATE = json.loads(COMMITTED.read_text())  # a real record's shape; the tests change its fields
AUTO = {"seeds": "auto", "min_seeds": 3, "max_seeds": 5, "ci_target": 1.0}
HOLDOUT = {"spec": 0.1, "size": 367, "ids_sha256": "ab" * 32}
FULL = [85, 86, 84, 87, 85]  # full FT's final dev F1 at seeds 1-5
# Δ vs full per seed, picked so each stopping rule fires: lora and dora exclude 0 at n = 3 (raw p 0.0091, 0.0351),
# ia3's half-width 0.52 <= ci_target 1 at n = 3, bitfit's stays 1.96 > 1 up to max_seeds 5.
DELTAS = {"lora": [3, 3.5, 2.5], "dora": [1, 2, 1.5], "ia3": [0.2, -0.2, 0.1], "bitfit": [2, -2, 1, -1, 0]}
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
    """As study/grid.py writes them: select runs carry the holdout; final runs train on all of train (holdout null) and
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
                              "dev; budget: 5 random trials per method; seeds: auto (min 3, max 5, ci_target 1.0 "
                              "points)._")
    # full's cell: its 5 final runs only (mean 85.4, sd sqrt(5.2 / 4) = 1.14); the 5 selection runs stay out.
    assert row(holdout, "full")[1] == "85.40 ± 1.14 (n=5)"
    assert row(holdout, "lora")[1] == "_**88.00 ± 1.50 (n=3)**_"
    dev = section(md, "## GLUE — minilm_l6\n")
    assert dev.startswith("\n_Protocol: rates picked on the reported dev set: optimistic (`select=dev`)._")
    assert row(dev, "full")[1] == "87.00 ± 1.00 (n=3) @ 5e-05"  # lora (89) is bold


def test_evp_table_by_hand(study):
    md = write_report([study], study / "rep").read_text()
    evp = section(md, "## Expected Validation Performance")
    # k=1: the mean and population sd of the 5 scores; full 60..85: 74 ± sqrt(370/5) = 8.60.
    # k=5 = N: P(best = i-th smallest) = (i^5 - (i-1)^5) / 5^5 = 1, 31, 211, 781, 2101 / 3125:
    # full (60*1 + 70*31 + 75*211 + 80*781 + 85*2101) / 3125 = 259120 / 3125 = 82.92, sd 3.33.
    assert row(evp, "mrpc (f1)")[:6] == ["mrpc (f1)", "full", "5", "74.00 ± 8.60", "82.92 ± 3.33", "82.92 ± 3.33"]
    lora = [r for r in evp.splitlines() if r.startswith("| mrpc (f1) | lora ")][0]
    assert lora == "| mrpc (f1) | lora | 5 | 75.00 ± 12.57 | 82.56 ± 0.92 | 82.56 ± 0.92 |"
    png = (study / "rep" / "evp.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "(evp.png)" in md


def test_holm_adjusted_verdicts_by_hand(study):
    md = write_report([study], study / "rep").read_text()
    versus = section(md, "## GLUE — minilm_l6, select=holdout").split("### vs full fine-tuning")[1]
    p = {m: 2 * t.sf(abs(sum(d) / len(d)) / (_sd(d) / math.sqrt(len(d))), len(d) - 1) for m, d in DELTAS.items()
         if any(d)}
    assert p["lora"] == pytest.approx(0.009133, abs=1e-6) and p["dora"] == pytest.approx(0.035099, abs=1e-6)
    # Holm over the 4 methods: sorted p lora 0.00913, dora 0.0351, ia3 0.808, bitfit 1 (mean Δ 0) ->
    # 4 x 0.00913 = 0.0365; max(0.0365, 3 x 0.0351) = 0.105; min(1, 2 x 0.808) = 1; 1.
    assert f"p={4 * p['lora']:.3g}" == "p=0.0365" and f"p={3 * p['dora']:.3g}" == "p=0.105"
    assert row(versus, "lora")[1].endswith("(n=3) p=0.0365")
    assert row(versus, "dora")[1] == "+1.50 [+0.26, +2.74] (n=3) p=0.105"  # the interval excludes 0 ...
    # ... but the adjusted p does not clear 0.05, so dora is not distinguishable; lora is above.
    assert ("- **mrpc**: not distinguishable from full FT (Holm p ≥ 0.05): bitfit (+0.00, p=1), dora (+1.50, "
            "p=0.105), ia3 (+0.03, p=1); above full FT: lora (+3.00, p=0.0365).") in versus
    assert "only when its Holm-adjusted p < 0.05" in versus


def _sd(d: list[float]) -> float:
    m = sum(d) / len(d)
    return math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1))


def test_seeds_used_and_why_they_stopped(study):
    md = write_report([study], study / "rep").read_text()
    seeds = section(md, "## Seeds per comparison")
    assert row(seeds, "mrpc")[1:] == ["full", "5", "—", "the baseline: as many as its longest comparison"]
    got = {r[1]: r[2:] for r in (line.strip("|").split("|") for line in seeds.splitlines()
                                 if line.startswith("| mrpc |")) for r in [[c.strip() for c in r]]}
    assert got["lora"] == ["3", "3", STOP_REASONS["excludes_zero"]]
    assert got["dora"] == ["3", "3", STOP_REASONS["excludes_zero"]]
    assert got["ia3"] == ["3", "3", STOP_REASONS["ci_target"]]
    assert got["bitfit"] == ["5", "5", STOP_REASONS["max_seeds"]]


def test_optimism_per_method(study):
    md = write_report([study], study / "rep").read_text()
    opt = section(md, "## Optimism of picking on dev")
    # full: dev picks 5e-5 (mean 87); the holdout picked 1e-5, which the dev grid also ran (mean 85): +2.00.
    assert row(opt, "mrpc")[1:] == ["full", "5e-05", "87.00", "1e-05", "85.00", "dev grid", "+2.00"]
    # lora: dev picks 1e-3 (89); the holdout's 3e-4 is not in the grid: its final runs' mean 88: +1.00.
    lora = [r for r in opt.splitlines() if r.startswith("| mrpc | lora ")][0]
    assert lora == "| mrpc | lora | 0.001 | 89.00 | 0.0003 | 88.00 | final runs | +1.00 |"
    assert "Mean over these 2 comparisons: +1.50 points." in opt


def test_pairs_on_seed_and_data_seed(tmp_path):
    # A sizes study with data_seeds [0, 1] and seeds [1, 2]: 4 pairs, not 2 (seed alone would collapse them).
    full = {(1, 0): 60, (2, 0): 62, (1, 1): 70, (2, 1): 72}
    lora = {(1, 0): 61, (2, 0): 63.5, (1, 1): 71, (2, 1): 73}  # Δ = 1, 1.5, 1, 1: mean 1.125, sd 0.25
    for m, scores in (("full", full), ("lora", lora)):
        for (seed, ds), v in scores.items():
            record(tmp_path / "rte" / m / "500" / f"d{ds}" / "final" / f"seed{seed}", m, seed, v, 1e-4, task="rte",
                   size=500, eval_split="dev", **{**protocol("final", "t0", 1e-4), "data_seed": ds})
    md = write_report([tmp_path], tmp_path / "rep").read_text()
    half = t.ppf(0.975, 3) * 0.25 / 2
    assert f"| lora | +1.12 [{1.125 - half:+.2f}, {1.125 + half:+.2f}] (n=4) p=" in md
    assert "paired by seed and data seed" in md
    # seeds=auto rounds run per data seed: 2 seeds < min_seeds 3, so no rule has stopped either cell yet.
    assert (f"| rte, 500 rows, data_seed 1 | lora | 2 | 2 | no rule met yet: a resumed study adds another round |"
            in md)
