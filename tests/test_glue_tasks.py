"""The whole GLUE: each of the nine tasks read from its exact TSV layout and from the hub's layout, scored with its
official metrics (checked against scipy on hand-computed cases), trained end to end on a tiny model, written by
`peftbench data`, and handled by the report's baselines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from glue_layouts import hub_glue, write_glue_all
from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.models.load import tiny_tokenizer
from peftbench.data.tasks import TaskData, glue

NEW = ["cola", "qqp", "stsb", "mnli", "qnli", "wnli"]
TINY = ["model=tiny", "max_steps=2", "tracking.mode=disabled", "eval_batch_size=32", "method=bitfit"]


@pytest.fixture
def data_dir(tmp_path):
    return write_glue_all(tmp_path / "data")


@pytest.mark.parametrize("task,n_train,n_eval,first,parts", [
    ("cola", 16, 10, [0, 1, 0, 1], [("", 10)]),
    ("qqp", 16, 10, [0, 1, 0, 1], [("", 10)]),
    ("stsb", 16, 10, [0.0, 0.8, 1.6, 2.4], [("", 10)]),
    ("mnli", 18, 15, [0, 1, 2, 0], [("", 9), ("_mm", 6)]),
    ("qnli", 16, 10, [1, 0, 1, 0], [("", 10)]),
    ("wnli", 16, 10, [0, 1, 0, 1], [("", 10)]),
])
def test_each_task_reads_its_glue_layout(data_dir, task, n_train, n_eval, first, parts):
    cfg = load_config(["model=tiny", f"task={task}", f"data_dir={data_dir}"])
    data = glue.load(cfg, tiny_tokenizer())
    assert (data.train_examples, data.eval_examples, data.meta["parts"]) == (n_train, n_eval, parts)
    assert data.meta["labels"][:4].tolist() == pytest.approx(first)
    assert data.num_labels == {"stsb": 1, "mnli": 3}.get(task, 2)
    if task == "stsb":
        assert data.train.columns["labels"].dtype == np.float32  # float targets for the MSE head


def test_cola_has_no_header_and_its_first_line_is_a_row(data_dir):
    texts, labels = glue.read_tsv(data_dir / "glue/CoLA/train.tsv", ["sentence"], "label", ["0", "1"],
                                  ["source", "label", "original_label", "sentence"])
    assert texts[0][0] == "The cats sleeps number 0." and labels[:2] == [0, 1] and len(labels) == 16


def test_the_hub_branch_gives_the_local_readers_examples(data_dir, tmp_path):
    repo = hub_glue(tmp_path / "hub", data_dir)
    for task in NEW:
        local = load_config(["model=tiny", f"task={task}", f"data_dir={data_dir}"])
        hub = load_config(["model=tiny", f"task={task}", "data_dir=null", f"task.hub=[{repo},{task}]"])
        for split in ("train", "dev"):
            (t1, l1), (t2, l2) = glue.read_split(local, split), glue.read_split(hub, split)
            assert t1 == t2 and l1 == pytest.approx(l2, abs=1e-6), (task, split)


def test_data_command_writes_all_nine_in_glue_layout(data_dir, tmp_path, capsys):
    repo = hub_glue(tmp_path / "hub", data_dir)
    out = tmp_path / "written"
    for task in NEW:
        assert main(["data", str(out), f"tasks=[{task}]", f"task.hub=[{repo},{task}]"]) == 0
    assert (out / "glue/CoLA/train.tsv").read_text().splitlines()[0] == "nyu-mll/glue\t0\t*\tThe cats sleeps number 0."
    assert (out / "glue/MNLI/dev_mismatched.tsv").is_file() and (out / "glue/MNLI/dev_matched.tsv").is_file()
    assert (out / "glue/STS-B/dev.tsv").read_text().splitlines()[1].endswith("\t0")
    for task in NEW:  # what it wrote reads back as the fixture's examples
        a = load_config(["model=tiny", f"task={task}", f"data_dir={data_dir}"])
        b = load_config(["model=tiny", f"task={task}", f"data_dir={out}"])
        for split in ("train", "dev"):
            (t1, l1), (t2, l2) = glue.read_split(a, split), glue.read_split(b, split)
            assert t1 == t2 and l1 == pytest.approx(l2, abs=1e-6), (task, split)


def scored(task: str, logits, labels, parts=None):
    k = {"stsb": 1, "mnli": 3}.get(task, 2)
    cfg = load_config(["model=tiny", f"task={task}"])
    meta = {"labels": np.array(labels), "metrics": list(cfg.task.get("metrics")),
            "regression": glue.regression(cfg.task), "parts": parts or [("", len(labels))]}
    data = TaskData(train=None, eval=None, num_labels=k, meta=meta)
    return glue.score(data, {"logits": [np.array(r, dtype=np.float32) for r in logits]})


def test_mcc_matches_the_hand_computed_value_and_scipy():
    # labels 1 1 0 0 1 0, predictions 1 0 0 1 1 0: tp 2 tn 2 fp 1 fn 1 -> MCC (4 - 1) / sqrt(3*3*3*3) = 1/3
    labels, preds = [1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0]
    metrics, _ = scored("cola", [[0, 1] if p else [1, 0] for p in preds], labels)
    assert metrics == {"mcc": pytest.approx(100 / 3, abs=1e-3)}
    assert metrics["mcc"] == pytest.approx(100 * stats.pearsonr(labels, preds)[0], abs=1e-3)  # MCC = phi
    for logit in ([1, 0], [0, 1]):  # the trivial baseline scores 0 either way, as in sklearn; torchmetrics' epsilon
        constant, _ = scored("cola", [logit] * 6, labels)  # terms made an all-1 prediction score 2.56 on CoLA's dev
        assert constant == {"mcc": 0.0}


def test_pearson_and_spearman_match_scipy():
    labels = [0.0, 1.0, 2.5, 3.0, 4.2, 5.0]
    preds = [0.3, 0.9, 3.1, 2.0, 4.0, 4.9]
    metrics, out = scored("stsb", [[p] for p in preds], labels)
    assert metrics["pearson"] == pytest.approx(100 * stats.pearsonr(preds, labels)[0], abs=1e-3)
    assert metrics["spearman"] == pytest.approx(100 * stats.spearmanr(preds, labels)[0], abs=1e-3)
    assert metrics["spearman"] == pytest.approx(100 * (1 - 6 * 2 / (6 * 35)), abs=1e-3)  # one swapped pair: d^2 = 2
    assert out == pytest.approx(preds, abs=1e-6)
    assert scored("stsb", [[2.0]] * 6, labels)[0] == {"pearson": 0.0, "spearman": 0.0}  # a constant: no correlation


def test_mnli_scores_matched_and_mismatched_apart():
    # matched: 3 of 4 right; mismatched: 1 of 2 right
    labels = [0, 1, 2, 0, 1, 2]
    preds = [0, 1, 2, 1, 1, 0]
    logits = [np.eye(3)[p] for p in preds]
    metrics, _ = scored("mnli", logits, labels, [("", 4), ("_mm", 2)])
    assert metrics == {"accuracy": 75.0, "accuracy_mm": 50.0}


def test_qqp_reports_f1_and_accuracy():
    metrics, _ = scored("qqp", [[0, 1], [1, 0], [1, 0], [0, 1], [0, 1]], [1, 1, 0, 0, 1])
    assert metrics == {"accuracy": 60.0, "f1": pytest.approx(66.6667, abs=1e-4)}


@pytest.mark.parametrize("task", NEW)
def test_a_tiny_run_on_each_task_records_its_metrics(data_dir, tmp_path, task):
    out = tmp_path / "run"
    assert main(["train", *TINY, f"task={task}", f"data_dir={data_dir}", f"out={out}"]) == 0
    rec = json.loads((out / "result.json").read_text())
    want = {"cola": {"mcc"}, "qqp": {"accuracy", "f1"}, "stsb": {"pearson", "spearman"},
            "mnli": {"accuracy", "accuracy_mm"}, "qnli": {"accuracy"}, "wnli": {"accuracy"}}[task]
    assert set(rec["metrics"]) == want and rec["primary_metric"] in want
    assert all(math.isfinite(v) for v in rec["metrics"].values())
    meta = json.loads((out / "delta.json").read_text())
    assert meta["num_labels"] == {"stsb": 1, "mnli": 3}.get(task, 2)


@pytest.mark.parametrize("task", ["cola", "stsb"])
def test_saved_predictions_give_the_recorded_metrics_by_sklearn_and_scipy(data_dir, tmp_path, task):
    from sklearn.metrics import matthews_corrcoef

    out = tmp_path / "run"
    assert main(["train", *TINY, "max_steps=6", f"task={task}", f"data_dir={data_dir}", f"out={out}"]) == 0
    rec = json.loads((out / "result.json").read_text())
    saved = json.loads((out / "predictions.json").read_text())
    _, labels = glue.read_split(load_config([f"task={task}", f"data_dir={data_dir}"]), "dev")
    assert (saved["split"], saved["regression"], len(saved["predictions"])) == ("dev", task == "stsb", len(labels))
    if task == "cola":
        assert rec["metrics"]["mcc"] == pytest.approx(100 * matthews_corrcoef(labels, saved["predictions"]), abs=1e-3)
    else:
        assert len(set(saved["predictions"])) > 1  # a constant would make both sides 0 and prove nothing
        pearson = 100 * stats.pearsonr(saved["predictions"], labels)[0]
        assert rec["metrics"]["pearson"] == pytest.approx(pearson, abs=1e-3)
        assert rec["metrics"]["spearman"] == pytest.approx(100 * stats.spearmanr(saved["predictions"], labels)[0],
                                                           abs=1e-3)


@pytest.mark.parametrize("head_bias", ["zero", "mean"])
def test_a_regression_head_starts_at_zero_or_at_the_training_targets_mean(data_dir, tmp_path, head_bias):
    out = tmp_path / head_bias  # one step at a vanishing rate: the predictions are the head's starting point
    assert main(["train", *TINY, "max_steps=1", "lr=1e-12", "task=stsb", f"task.head_bias={head_bias}",
                 f"data_dir={data_dir}", f"out={out}"]) == 0
    preds = json.loads((out / "predictions.json").read_text())["predictions"]
    _, targets = glue.read_split(load_config(["task=stsb", f"data_dir={data_dir}"]), "train")
    start = float(np.mean(targets)) if head_bias == "mean" else 0.0
    assert np.mean(targets) > 1.0  # the fixture's targets are far from 0, so the two cases differ
    assert all(abs(p - start) < 0.5 for p in preds)  # the tiny head's weights add only a little around its bias


def test_baselines_of_the_new_metrics(data_dir, tmp_path):
    from peftbench.reports.baselines import baseline

    def rec(task, metric, n):
        cfg = load_config(["model=tiny", f"task={task}", f"data_dir={data_dir}"])
        from omegaconf import OmegaConf
        return {"config": OmegaConf.to_container(cfg), "primary_metric": metric, "eval_examples": n}
    assert baseline(rec("cola", "mcc", 10)) == 0.0
    assert baseline(rec("stsb", "pearson", 10)) == 0.0 and baseline(rec("stsb", "spearman", 10)) == 0.0
    assert baseline(rec("mnli", "accuracy", 15)) == pytest.approx(100 * 3 / 9)  # matched dev: 3 of each class
    assert baseline(rec("mnli", "accuracy_mm", 15)) == pytest.approx(100 * 2 / 6)
    assert baseline(rec("qnli", "accuracy", 10)) == 50.0
    assert baseline({**rec("qnli", "accuracy", 10), "eval_split": "holdout"}) is None  # not dev's yardstick
    assert baseline(rec("qqp", "f1", 10)) == pytest.approx(100 * 2 * 0.5 / 1.5)  # predict 1 everywhere


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_study_over_all_nine_then_its_report_and_predict(data_dir, tmp_path, capsys):
    """The nine tasks through the rest of the tool: one study plans and runs them, the report has a column for each
    (GLUE's order), and predict answers with each kind of head: a class name (MNLI's 3) and a number (STS-B)."""
    nine = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
    out = tmp_path / "s"
    assert main(["study", "glue", "methods=[bitfit]", f"tasks=[{','.join(nine)}]", f"data_dir={data_dir}",
                 f"out={out}", "model=tiny", "max_steps=2", "train_size=12", "tracking.mode=disabled",
                 "eval_batch_size=32"]) == 0
    assert "9 ran, 0 skipped, 0 failed" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "r")]) == 0
    header = next(ln for ln in (tmp_path / "r" / "report.md").read_text().splitlines() if ln.startswith("| method |"))
    assert [c.split(" (")[0] for c in header.strip("|").split(" | ")[1:1 + len(nine)]] == nine, header
    capsys.readouterr()
    assert main(["predict", str(out / "mnli" / "bitfit" / "seed42"), "--text", "A man sleeps.", "--text-pair",
                 "Someone is asleep."]) == 0
    label = capsys.readouterr().out.split("\t")[0]
    assert label in ("entailment", "neutral", "contradiction")
    assert main(["predict", str(out / "stsb" / "bitfit" / "seed42"), "--text", "A cat.", "--text-pair", "A dog."]) == 0
    float(capsys.readouterr().out.split("\t")[0])  # a similarity score, not a class
