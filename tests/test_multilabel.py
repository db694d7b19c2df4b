"""Multi-label classification (task=multilabel): the three label layouts read alike, sklearn's micro/macro F1 and
exact match on a hand-scored case, the threshold, the most-frequent-label-set baseline, every method on a tiny model,
predict, export, the report's table, and bad input as one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_METHOD_ARGS, fast_sample
from peftbench.cli import main
from peftbench.config.compose import group_options, load_config
from peftbench.data.tasks import multilabel

RUN = ["model=tiny", "max_steps=2", "tracking.mode=disabled", "forgetting=false"]
LABELS = ["food", "music", "sport"]
TRAIN = [("goal match", ["sport"]), ("song band", ["music"]), ("pizza soup", ["food"]), ("team song", ["music", "sport"]),
         ("bread goal", ["food", "sport"]), ("match team", ["sport"]), ("guitar", ["music"]), ("quiet day", [])] * 2
# dev texts occur in train (the tiny character-level model can memorise them in seconds)
DEV = [("team song", ["music", "sport"]), ("pizza soup", ["food"]), ("match team", ["sport"]), ("quiet day", [])]


def write(root: Path, rows, split: str) -> dict[str, Path]:
    """The same rows as JSONL (a list), CSV with "a|b" cells, and CSV with one 0/1 column per label."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "labels": l}) + "\n" for t, l in rows))
    with open(root / f"{split}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "labels"])
        w.writerows([t, "|".join(l)] for t, l in rows)
    with open(root / f"{split}_cols.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", *LABELS])
        w.writerows([t, *(int(k in l) for k in LABELS)] for t, l in rows)
    return {"jsonl": root / f"{split}.jsonl", "csv": root / f"{split}.csv", "cols": root / f"{split}_cols.csv"}


@pytest.fixture
def files(tmp_path):
    return {"train": write(tmp_path / "d", TRAIN, "train"), "dev": write(tmp_path / "d", DEV, "dev")}


def task(files, layout: str = "jsonl", *extra: str) -> list[str]:
    keys = {"jsonl": [], "csv": ["task.separator=|"], "cols": [f"task.label_columns=[{','.join(LABELS)}]"]}[layout]
    return ["task=multilabel", f"task.train={files['train'][layout]}", f"task.dev={files['dev'][layout]}", *keys,
            *extra]


def test_three_layouts_read_the_same_matrices(files):
    got = []
    for layout in ("jsonl", "csv", "cols"):
        cfg = load_config(RUN + task(files, layout))
        texts, train_y, dev_texts, dev_y = multilabel.resolve(cfg)
        assert list(cfg.task.labels) == LABELS and cfg.task.metric == "micro_f1"
        got.append((texts, train_y.tolist(), dev_texts, dev_y.tolist()))
    assert got[0] == got[1] == got[2]
    assert got[0][3] == [[0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_sklearn_scores_of_a_hand_scored_case():
    target = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]])
    pred = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 0]])
    # micro: TP 3 (music r1, food r2, sport r3), FP 1 (music r3), FN 1 (sport r1): F1 = 6/(6+2) = 75
    # macro: food 1.0; music TP1 FP1 -> 2/3; sport TP1 FN1 -> 2/3: mean 7/9 = 77.7778; exact: rows 2 and 4 -> 50
    assert multilabel.metrics_of(target, pred, list(multilabel.METRICS)) == {
        "micro_f1": 75.0, "macro_f1": 77.7778, "exact_match": 50.0}


def test_threshold_decides_and_is_recorded(files, tmp_path):
    cfg = load_config(RUN + task(files, "jsonl", "task.threshold=0.8"))
    from peftbench.models.load import tiny_tokenizer

    data = multilabel.load(cfg, tiny_tokenizer())
    logits = [np.array(x, dtype=np.float32) for x in [[-3, 1, 3], [3, -3, -3], [-3, -3, 1], [-3, -3, -3]]]
    # sigmoid(1) = 0.73 < 0.8 <= sigmoid(3) = 0.95: row 1 gets sport only, row 3 nothing
    metrics, pred = multilabel.score(data, {"logits": logits})
    assert pred == [[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert metrics["exact_match"] == 50.0
    from peftbench.engine.train import train

    rec = train(load_config(RUN + task(files, "jsonl", "task.threshold=0.8") + ["method=lora", f"out={tmp_path / 'r'}"]))
    assert rec["config"]["task"]["threshold"] == 0.8
    assert json.loads((tmp_path / "r" / "predictions.json").read_text())["threshold"] == 0.8


def test_most_frequent_label_set_baseline():
    y = np.array([[0, 0, 1], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    assert multilabel.frequent_set(y).tolist() == [0, 0, 1]  # {sport} and {music} tie at 2: the first seen wins
    assert multilabel.frequent_set(np.array([[1, 0], [0, 0], [0, 0]])).tolist() == [0, 0]  # no label at all


@pytest.mark.parametrize("method", fast_sample(group_options("method"), offset=2))
def test_every_method_trains_a_multilabel_head(method, files, tmp_path):
    from peftbench.engine.train import train

    rec = train(load_config(RUN + task(files) + [f"method={method}", f"out={tmp_path / 'r'}",
                                                 *TINY_METHOD_ARGS.get(method, [])]))
    assert rec["status"] == "completed" and set(rec["metrics"]) == set(multilabel.METRICS)


def test_learns_predicts_exports_and_reports(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "model=tiny", "tracking.mode=disabled", "forgetting=false", "method=full", "lr=3e-3",
                 "epochs=60", "batch_size=4", *task(files), f"out={run}"]) == 0
    rec = json.loads((run / "result.json").read_text())
    from peftbench.reports.baselines import baseline

    # {sport} is the most frequent set (4 of 16 rows): on dev it gets row 3 right, half of row 1, misses the rest:
    # micro TP 2, FP 2, FN 2 -> 50; the run must beat it
    assert baseline(rec) == 50.0 and rec["metrics"]["micro_f1"] > 51.0, rec["metrics"]
    capsys.readouterr()
    assert main(["predict", str(run), *(a for t, _ in DEV for a in ("--text", t)), "--jsonl"]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    scored = json.loads((run / "predictions.json").read_text())["predictions"]  # what training scored on dev
    assert [g["labels"] for g in got] == [[k for k, on in zip(LABELS, row) if on] for row in scored]
    assert all(set(g["scores"]) == set(LABELS) for g in got)
    assert main(["export", str(run), "--format", "merged", "--out", str(tmp_path / "m")]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and config["id2label"]["0"] == "food"
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    assert "| method | multilabel (micro_f1) |" in (tmp_path / "rep" / "report.md").read_text()


BAD = [
    ("dev.jsonl", '{"text": "a", "labels": ["opera"]}\n', "row 1: unknown label 'opera'", "jsonl"),
    ("train_cols.csv", "text,food,music,sport\na,1,2,0\n", "row 1: '2' in label column 'music' is not 0 or 1", "cols"),
    ("train.jsonl", '{"text": "a", "tags": ["food"]}\n', "no column 'labels' (task.label=labels)", "jsonl"),
    ("train.jsonl", '{"text": "a", "labels": ["food"]}\n', "carry 1 label(s) ['food']", "jsonl"),
]


@pytest.mark.parametrize("name,text,message,layout", BAD)
def test_bad_multilabel_data_is_one_line_and_nothing_trains(files, tmp_path, capsys, name, text, message, layout):
    split = name.split(".")[0].split("_")[0]
    bad = tmp_path / "bad" / name
    bad.parent.mkdir()
    bad.write_text(text)
    files[split] = {**files[split], layout: bad}
    out = tmp_path / "out"
    assert main(["train", *RUN, "method=lora", *task(files, layout), f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (out / "delta.safetensors").exists()


def test_a_label_column_that_is_the_text_is_one_line(files, capsys, tmp_path):
    assert main(["train", *RUN, *task(files, "jsonl", "task.label=text"), f"out={tmp_path / 'o'}"]) == 2
    assert "are also text columns" in capsys.readouterr().err


def test_holdout_selection_scores_held_out_rows(files, tmp_path):
    from peftbench.engine.train import train

    rec = train(load_config(RUN + task(files) + ["method=bitfit", "holdout=4", "eval_split=holdout",
                                                 f"out={tmp_path / 'h'}"]))
    assert rec["eval_examples"] == 4 and rec["train_examples"] == 12 and rec["holdout"]
    assert json.loads((tmp_path / "h" / "predictions.json").read_text())["split"] == "holdout"


def test_hub_branch_reads_a_classlabel_list(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    feats = Features({"text": Value("string"), "labels": Sequence(ClassLabel(names=["sport", "food", "music"]))})
    repo = tmp_path / "topics" / "data"
    repo.mkdir(parents=True)
    rows = {"text": ["goal", "soup", "goal soup", "song"], "labels": [[0], [1], [0, 1], [2]]}
    for split in ("train", "validation"):
        Dataset.from_dict(rows, features=feats).to_parquet(repo / f"{split}-00000-of-00001.parquet")
    cfg = load_config(RUN + ["task=multilabel", f"task.hub={repo.parent}", "method=bitfit", f"out={tmp_path / 'r'}"])
    texts, train_y, _, dev_y = multilabel.resolve(cfg)
    assert list(cfg.task.labels) == ["sport", "food", "music"]  # the hub's id order, not sorted
    assert train_y.tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]] and texts == [rows["text"]]
