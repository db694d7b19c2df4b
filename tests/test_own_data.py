"""A user's own data, no code: task=classification over CSV / TSV / JSONL / Parquet files or a hub dataset (classes or
a regression found from the labels), task=qa over SQuAD-layout JSON, a task YAML file of one's own, and a study
over it; label names reach `peftbench predict`."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.errors import UserError
from peftbench.models.load import tiny_tokenizer
from peftbench.studies.grid import load_study, plan
from peftbench.data.tasks import classification, squad

STUDY = ["model=tiny", "max_steps=2", "tracking.mode=disabled", "eval_batch_size=32"]
TINY = [*STUDY, "method=bitfit"]
ROWS = [("a great film", "it moves", "pos"), ("dull and lifeless", "it drags", "neg"), ("warm and witty", "fun", "pos"),
        ("boring mess", "awful", "neg"), ("loved it", "so good", "pos"), ("it 's awful", "bad", "neg")] * 3


def write(path, rows, header=("sentence", "other", "label")):
    if path.suffix in (".csv", ".tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="," if path.suffix == ".csv" else "\t")
            w.writerow(header)
            w.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(header, r))) + "\n" for r in rows))
    else:
        pd.DataFrame([dict(zip(header, r)) for r in rows]).to_parquet(path)
    return path


def own(tmp_path, suffix=".csv", rows=ROWS, dev_rows=None, *extra):
    train = write(tmp_path / f"train{suffix}", rows)
    dev = write(tmp_path / f"dev{suffix}", dev_rows or rows[:6])
    return ["task=classification", f"task.train={train}", f"task.dev={dev}", "task.text=sentence", "task.label=label",
            *extra]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_file_type_reads_the_same_rows(tmp_path, suffix):
    cfg = load_config(["model=tiny", *own(tmp_path, suffix), "task.text_pair=other"])
    train_texts, train_labels, dev_texts, dev_labels = classification.resolve(cfg)
    assert train_texts[0][:2] == ["a great film", "dull and lifeless"] and train_texts[1][0] == "it moves"
    assert train_labels[:4] == [1, 0, 1, 0] and len(dev_labels) == 6  # classes sorted: neg=0, pos=1
    assert list(cfg.task.labels) == ["neg", "pos"] and cfg.task.problem == "classification"
    assert cfg.task.metric == "accuracy"


def test_labels_kind_decides_the_problem(tmp_path):
    ints = [(t, o, str(i % 3)) for i, (t, o, _) in enumerate(ROWS)]
    cfg = load_config(["model=tiny", *own(tmp_path, ".csv", ints)])
    classification.resolve(cfg)
    assert (cfg.task.problem, list(cfg.task.labels)) == ("classification", ["0", "1", "2"])
    floats = [(t, o, f"{i * 0.25:.2f}") for i, (t, o, _) in enumerate(ROWS)]
    cfg = load_config(["model=tiny", *own(tmp_path, ".csv", floats)])
    _, y, _, _ = classification.resolve(cfg)
    assert cfg.task.problem == "regression" and cfg.task.metric == "pearson" and y[:3] == [0.0, 0.25, 0.5]
    cfg = load_config(["model=tiny", *own(tmp_path, ".csv", ints), "task.problem=regression"])
    assert classification.resolve(cfg)[1][:3] == [0.0, 1.0, 2.0]


def test_a_run_records_its_classes_and_predict_prints_their_names(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, *own(tmp_path, ".jsonl"), "task.text_pair=other", f"out={out}"]) == 0
    rec = json.loads((out / "result.json").read_text())
    assert set(rec["metrics"]) == {"accuracy", "f1"} and rec["primary_metric"] == "accuracy"
    meta = json.loads((out / "delta.json").read_text())
    assert meta["label_names"] == ["neg", "pos"] and meta["num_labels"] == 2
    capsys.readouterr()
    assert main(["predict", str(out), "--text", "great", "--text-pair", "fun"]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("neg", "pos")


def test_a_regression_run_and_its_predictions(tmp_path, capsys):
    floats = [(t, o, f"{(i % 5) * 1.1:.1f}") for i, (t, o, _) in enumerate(ROWS)]
    out = tmp_path / "run"
    assert main(["train", *TINY, *own(tmp_path, ".csv", floats), f"out={out}"]) == 0
    rec = json.loads((out / "result.json").read_text())
    assert set(rec["metrics"]) == {"pearson", "spearman"} and rec["primary_metric"] == "pearson"
    assert json.loads((out / "delta.json").read_text())["num_labels"] == 1
    capsys.readouterr()
    assert main(["predict", str(out), "--text", "great"]) == 0
    float(capsys.readouterr().out.split("\t")[0])  # a number, not a class


def test_a_hub_dataset_with_its_own_columns(tmp_path):
    from glue_layouts import hub_glue, write_glue_all

    repo = hub_glue(tmp_path / "hub", write_glue_all(tmp_path / "data"))
    cfg = load_config(["model=tiny", "task=classification", f"task.hub={repo}", "task.hub_config=qnli",
                       "task.text=question", "task.text_pair=sentence", "task.label=label"])
    data = classification.load(cfg, tiny_tokenizer())
    assert list(cfg.task.labels) == ["entailment", "not_entailment"]  # the hub's ClassLabel names, in id order
    assert data.train_examples == 16 and data.meta["labels"][:4].tolist() == [1, 0, 1, 0]


def squad_doc(n: int) -> dict:
    ctx = "The cat sat on the mat. It was warm."
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": [
        {"id": f"q{i}", "question": f"Where did the cat sit {i}?", "answers": [{"text": "the mat", "answer_start": 15}]}
        for i in range(n)]}]}]}


def test_qa_on_own_files_reads_like_squad(tmp_path):
    (tmp_path / "squad").mkdir()
    for name in squad.FILES.values():
        (tmp_path / "squad" / name).write_text(json.dumps(squad_doc(6)))
    a = load_config(["model=tiny", "task=squad", f"task.data_dir={tmp_path / 'squad'}"])
    b = load_config(["model=tiny", "task=qa", f"task.train={tmp_path / 'squad/train-v1.1.json'}",
                     f"task.dev={tmp_path / 'squad/dev-v1.1.json'}", "data_dir=/nowhere"])
    for split in ("train", "dev"):
        assert squad.read_split(a, split)[0] == squad.read_split(b, split)[0]
    out = tmp_path / "run"
    assert main(["train", *TINY, "task=qa", f"task.train={tmp_path / 'squad/train-v1.1.json'}",
                 f"task.dev={tmp_path / 'squad/dev-v1.1.json'}", "task.max_length=64", "task.doc_stride=16",
                 f"out={out}"]) == 0
    assert set(json.loads((out / "result.json").read_text())["metrics"]) == {"exact_match", "f1"}


def test_a_task_file_of_ones_own_and_a_study_over_it(tmp_path, capsys):
    write(tmp_path / "train.csv", ROWS)
    write(tmp_path / "dev.csv", ROWS[:6])
    spec = tmp_path / "tasks" / "my_task.yaml"
    spec.parent.mkdir()
    spec.write_text("name: reviews\ntrain: ../train.csv\ndev: ../dev.csv\ntext: sentence\nlabel: label\n"
                    "label_names: [negative, positive]\n")
    cfg = load_config(["model=tiny", f"task={spec}", "task.max_length=64"])
    assert cfg.task.name == "reviews" and cfg.task.kind == "classification" and cfg.task.max_length == 64
    assert cfg.task.train == str(tmp_path / "train.csv")  # relative to the task file
    study = load_study("glue", [f"tasks=[{spec}]", "methods=[bitfit]", "seeds=[1]", f"out={tmp_path / 'st'}",
                                *STUDY])
    (folder, over), = plan(study)
    assert folder == tmp_path / "st" / "reviews" / "bitfit" / "seed1"
    assert main(["study", "glue", f"tasks=[{spec}]", "methods=[bitfit]", "seeds=[1]", f"out={tmp_path / 'st'}",
                 *STUDY]) == 0
    meta = json.loads((folder / "delta.json").read_text())
    assert meta["task"]["name"] == "reviews" and meta["label_names"] == ["negative", "positive"]
    study = load_study("glue", ["tasks=[classification]", "methods=[bitfit]", "seeds=[1]", f"out={tmp_path / 's2'}",
                                f"task.train={tmp_path / 'train.csv'}", f"task.dev={tmp_path / 'dev.csv'}",
                                "task.text=sentence", *STUDY])
    assert plan(study)[0][0] == tmp_path / "s2" / "classification" / "bitfit" / "seed1"
    with pytest.raises(UserError, match="unknown key\\(s\\) \\['txt'\\]"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("txt: sentence\n")
        load_config([f"task={bad}"])
