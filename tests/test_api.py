"""peftbench from Python (api.py): a peft config object and a DataFrame train as the command line does, with the
same checks and the same result.json; in-memory data is written once, named by its content; results() is the
table the report is built from."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

import peftbench
from peftbench.api import overrides
from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.config.peftconfig import canonical
from peftbench.data.frames import write_task
from peftbench.errors import UserError
from peftbench.record import identity_fields, recorded_runtime

ROWS = [("a great film", "pos"), ("dull and lifeless", "neg"), ("warm and witty", "pos"), ("boring mess", "neg"),
        ("loved it", "pos"), ("it 's awful", "neg")] * 3
TRAIN = pd.DataFrame(ROWS, columns=["sentence", "label"])
DEV = TRAIN.iloc[:6]
QUICK = {"model": "tiny", "max_steps": 2, "tracking": {"mode": "disabled"}, "eval_batch_size": 32}
# LoRA r=4 on query and value of the tiny BERT (2 layers, 32 wide): A is 4x32 and B 32x4 per module, and the
# classifier (32x2 + 2) trains
LORA_R4 = 2 * 2 * (4 * 32 + 32 * 4) + 32 * 2 + 2


def test_keywords_become_the_command_lines_overrides():
    assert overrides({"model": "tiny", "lr": 1e-3, "tracking": {"mode": "disabled"}, "max_steps": 2,
                      "method.r": 4}) == ["model=tiny", "lr=0.001", "tracking.mode='disabled'", "max_steps=2",
                                          "method.r=4"]


def test_a_peft_config_object_is_the_cli_peft_config_in_one_form():
    from peft import LoHaConfig, LoraConfig

    want = {"peft_type": "LORA", "r": 4, "target_modules": ["query", "value"]}
    assert canonical(LoraConfig(r=4, target_modules=["value", "query"])) == want
    cli = load_config(["model=tiny", "method=peft", "method.config={peft_type:lora,r:4,target_modules:[value,query]}"])
    assert dict(cli.method.config) == want and cli.method.name == "peft_lora"
    assert load_config(["model=tiny", "method=peft", "method.config={peft_type:LOHA,r:8}"]).method.config == {
        "peft_type": "LOHA"}  # 8 is LoHa's default rank: left out, as a LoHaConfig() object's would be
    assert canonical(LoHaConfig()) == {"peft_type": "LOHA"}
    for bad, says in [("method.config={peft_type:NOPE}", "is not a tuner of the installed peft"),
                      ("method.config.rr=3", "got an unexpected keyword argument 'rr'")]:
        with pytest.raises(UserError) as e:
            load_config(["model=tiny", "method=peft", bad])
        assert says in str(e.value) and "\n" not in str(e.value)


def test_a_peft_config_and_a_dataframe_train_from_python_as_the_cli_does(tmp_path, capsys):
    from peft import LoraConfig

    run = peftbench.train(method=LoraConfig(r=4, target_modules=["query", "value"]), task=TRAIN, dev=DEV,
                          text="sentence", label="label", out=str(tmp_path / "api"), **QUICK)
    rec = run.record
    assert run.status == "completed" and rec["trainable_params"] == LORA_R4 and rec["run"]["method"] == "peft_lora"
    files = rec["config"]["task"]
    assert main(["train", "model=tiny", "method=peft", "method.config={peft_type:LORA,r:4,target_modules:[query,value]}",
                 "task=classification", f"task.train={files['train']}", f"task.dev={files['dev']}",
                 "task.text=sentence", "task.label=label", "max_steps=2", "tracking.mode=disabled",
                 "eval_batch_size=32", f"out={tmp_path / 'cli'}"]) == 0
    cli = json.loads((tmp_path / "cli" / "result.json").read_text())
    here = recorded_runtime(rec)
    assert identity_fields(cli["config"], here) == identity_fields(rec["config"], here) and cli["identity"] == rec["identity"]
    for key in ("run", "metrics", "trainable_params", "total_params", "data_sha256", "primary_metric"):
        assert cli[key] == rec[key], key
    assert set(rec["data_sha256"]) == {"train", "dev"}
    assert run.summary().split(" -> ")[0] in capsys.readouterr().out  # the CLI's line is the Run's
    answers = run.predict(["a great film", "boring mess"])
    assert [a["label"] in ("neg", "pos") for a in answers] == [True, True]
    out = run.export("peft", tmp_path / "export")
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_a_tuner_that_cannot_apply_is_one_line_of_what_peft_said(tmp_path):
    from peft import IA3Config, LoraConfig

    for config, says in [(LoraConfig(target_modules=["nothere"]), "peft's LoraConfig says: No modules were targeted"),
                         (IA3Config(target_modules=["word_embeddings"], feedforward_modules=[]),
                          "peft's IA3Config says: Target module Embedding(")]:
        with pytest.raises(UserError) as e:
            peftbench.train(method=config, task=TRAIN, dev=DEV, text="sentence", out=str(tmp_path / "r"), **QUICK)
        msg = str(e.value)
        assert "\n" not in msg and says in msg and msg.startswith("method 'peft_")


def test_in_memory_data_is_checked_like_files_before_anything_is_written(tmp_path):
    for kwargs, says in [({"text": "nope"}, "task: no column 'nope' (text='nope'); its columns are ['sentence', 'label']"),
                         ({"text": "sentence", "label": "y"}, "no column 'y' (label='y')"),
                         ({"text": "sentence", "dev": TRAIN.iloc[:0]}, "dev has no rows"),
                         ({"text": "sentence", "dev": None}, "give its dev set too")]:
        with pytest.raises(UserError) as e:
            peftbench.train(task=TRAIN, **{"dev": DEV, **kwargs}, out=str(tmp_path / "r"), **QUICK)
        assert says in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError) as e:  # a bad run key: refused before the data is written
        peftbench.train(task=TRAIN, dev=DEV, text="sentence", out=str(tmp_path / "r"), max_steps=-1, model="tiny")
    assert "max_steps=-1" in str(e.value)
    assert not (tmp_path / "r").exists()


def test_the_same_rows_are_the_same_files_and_a_datasetdict_reads_its_class_names(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    first = write_task(TRAIN, tmp_path, dev=DEV, text="sentence")
    assert write_task(TRAIN.copy(), tmp_path, dev=DEV.copy(), text="sentence") == first
    assert write_task(TRAIN.iloc[1:], tmp_path, dev=DEV, text="sentence") != first
    assert len(list(tmp_path.glob("train-*.parquet"))) == 2
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    ds = Dataset.from_dict({"sentence": [r[0] for r in ROWS], "label": [int(r[1] == "pos") for r in ROWS]},
                           features=features)
    task = write_task(DatasetDict({"train": ds, "validation": ds.select(range(6))}), tmp_path / "dd", text="sentence")
    cfg = load_config(["model=tiny", f"task={task}"])
    assert pd.read_parquet(cfg.task.train)["label"].tolist()[:2] == ["pos", "neg"]
    with pytest.raises(UserError) as e:
        write_task(DatasetDict({"train": ds}), tmp_path / "dd", text="sentence")
    assert "no validation or dev split (its splits are ['train'])" in str(e.value)


def _table(md: str) -> dict[tuple[str, str], str]:
    """The report's main results table as {(method, task): cell}, marks (bold, italics, flag) off."""
    lines = md.split("## Results", 1)[1].splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
    tasks = [c.strip().split(" (")[0] for c in lines[head].strip("|").split("|")[1:-2]]
    cells = {}
    for line in lines[head + 2:]:
        if not line.startswith("|"):
            break
        parts = [c.strip() for c in line.strip("|").split("|")]
        for task, cell in zip(tasks, parts[1:]):
            cells[parts[0], task] = re.sub(r"[*_]|\s*⚠", "", cell).strip()
    return cells


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_results_is_the_table_the_report_is_built_from(tmp_path):
    out = tmp_path / "study"
    runs = peftbench.study(methods=["full", "bitfit"], seeds=[1, 2], task=TRAIN, dev=DEV, text="sentence",
                           task_name="mine", out=str(out), **QUICK)
    assert sorted((r.record["run"]["method"], r.record["run"]["seed"]) for r in runs) == [
        ("bitfit", 1), ("bitfit", 2), ("full", 1), ("full", 2)]
    frame = peftbench.results(out)
    assert len(frame) == 4 and set(frame.task) == {"mine"} and set(frame.metric) == {"accuracy"}
    for column in ("method", "seed", "score", "metrics.f1", "trainable_params", "peak_memory_bytes", "lr",
                   "forgetting.cka", "data_sha256.train"):
        assert column in frame.columns, column
    stats = frame.groupby(["method", "task"]).score.agg(["mean", "std", "count"])
    want = {key: f"{row['mean']:.2f} ± {row['std']:.2f} (n={int(row['count'])})" for key, row in stats.iterrows()}
    md = peftbench.report(out, tmp_path / "report").read_text()
    assert _table(md) == want
    again = peftbench.study(methods=["full", "bitfit"], seeds=[1, 2], task=TRAIN, dev=DEV, text="sentence",
                            task_name="mine", out=str(out), **QUICK)  # the same rows: every run is skipped
    assert [r.record["finished_at"] for r in again] == [r.record["finished_at"] for r in runs]
