"""The committed protocol study (results/protocol_minilm): its CoLA and STS-B scores are what sklearn and
scipy compute from each run's saved predictions against the real dev and training files, and every run obeys the
protocol it records (selection on the holdout, finals on dev, one holdout per task)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

RESULTS = Path(__file__).resolve().parents[1] / "results" / "protocol_minilm"
RUNS = sorted(RESULTS.rglob("result.json"))  # <task>/<method>/{select/t<k>/seed0, final/seed<s>}/result.json
FILES = {"cola": ("CoLA", None), "stsb": ("STS-B", "score")}  # CoLA has no header: its label is column 1


def labels(shared: Path, task: str, split: str) -> list[float]:
    """The split's targets read straight from the TSV, not through peftbench's readers."""
    folder, field = FILES[task]
    with open(shared / "glue" / folder / f"{split}.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if field is None:
        return [int(r[1]) for r in rows]
    col = rows[0].index(field)
    return [float(r[col]) for r in rows[1:]]


def check(rec: dict, saved: dict, y: list, task: str, where) -> None:
    """The record's metrics equal sklearn's MCC (CoLA) or scipy's Pearson and Spearman (STS-B) of the predictions."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import matthews_corrcoef

    p = saved["predictions"]
    assert len(p) == len(y) == rec["eval_examples"], where
    if task == "cola":
        want = {"mcc": 100 * matthews_corrcoef(y, p)}
    else:
        want = {"pearson": 100 * pearsonr(p, y)[0], "spearman": 100 * spearmanr(p, y)[0]}
        if len(set(p)) == 1:  # scipy says nan for a constant prediction; peftbench scores it 0, the baseline's score
            want = {k: 0.0 for k in want}
    assert rec["metrics"] == pytest.approx(want, abs=1e-3), where


# STS-B only: a 64-row CoLA run predicts one class (MCC 0 either way); the committed CoLA runs are checked below
@pytest.mark.parametrize("task", ["stsb"])
def test_a_fresh_minilm_run_on_the_real_files_scores_as_sklearn_and_scipy(shared_data, tmp_path, task):
    from peftbench.config.compose import load_config
    from peftbench.engine.train import train

    rec = train(load_config(["model=minilm_l6", "method=full", f"task={task}", f"data_dir={shared_data}",
                             "train_size=64", "epochs=1", "lr=1e-4", f"out={tmp_path}", "tracking.mode=disabled"]))
    saved = json.loads((tmp_path / "predictions.json").read_text())
    gold = labels(shared_data, task, "dev")
    assert len(gold) == {"cola": 1043, "stsb": 1500}[task]  # GLUE's dev sizes: the real files, read whole
    check(rec, saved, gold, task, tmp_path)


def runs_of(task: str) -> list[Path]:
    return [p.parent for p in RUNS if p.relative_to(RESULTS).parts[0] == task]


@pytest.mark.parametrize("task", ["cola", "stsb"])
@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_metrics_equal_sklearn_and_scipy_from_the_saved_predictions(shared_data, task):
    gold = {split: labels(shared_data, task, split) for split in ("dev", "train")}
    checked = {"dev": 0, "holdout": 0}
    for run in runs_of(task):
        rec = json.loads((run / "result.json").read_text())
        saved = json.loads((run / "predictions.json").read_text())
        assert saved["split"] == rec["eval_split"], run
        check(rec, saved, gold["dev"] if saved["split"] == "dev" else [gold["train"][i] for i in saved["rows"]],
              task, run)
        checked[saved["split"]] += 1
    assert checked["dev"] >= 7 * 3 and checked["holdout"] == 7 * 4  # 7 methods: >= 3 final seeds, 4 trials each


def test_each_run_keeps_to_its_protocol():
    hashes: dict[str, set] = {}
    for path in RUNS:
        rec = json.loads(path.read_text())
        phase = rec["protocol"]["phase"]
        assert rec["eval_split"] == {"select": "holdout", "final": "dev"}[phase], path
        assert rec["run"]["seed"] == 0 if phase == "select" else rec["run"]["seed"] >= 1, path
        assert rec["train_examples"] == 500, path
        if phase == "select":  # one holdout per task, 500 rows, never trained on (train_size draws from the rest)
            assert rec["holdout"]["size"] == 500, path
            hashes.setdefault(rec["run"]["task"], set()).add(rec["holdout"]["ids_sha256"])
        else:
            assert rec["holdout"] is None and rec["protocol"]["picked_holdout_score"] is not None, path
    assert set(hashes) == {"sst2", "mrpc", "rte", "cola", "stsb"} and all(len(h) == 1 for h in hashes.values())
