"""The CLI interprets: a run's line says its metric against the trivial baseline (and when it learned nothing), the
load report of a fresh head is one line of train.log while real loading problems still show, --version, list."""

from __future__ import annotations

import logging
import re
from importlib.metadata import version

import pytest
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel

from peftbench.cli import main
from peftbench.config.compose import CONFIG_DIR, group_options
from peftbench.models.load import load_model
from peftbench.studies.runner import verdict


def record(metric: str, value: float, data_dir, name: str = "sst2", eval_examples: int = 100, **metrics) -> dict:
    task = {"kind": "glue", "name": name, "dir": "glue/X", "label_field": "label", "labels": ["0", "1"]}
    return {"primary_metric": metric, "metrics": {metric: value, **metrics}, "eval_examples": eval_examples,
            "config": {"task": task, "data_dir": None if data_dir is None else str(data_dir)}}


@pytest.fixture
def dev_70(tmp_path):
    """A dev set of 30 negatives and 70 positives: majority class 70.00, F1 of predicting 1 everywhere 82.35."""
    (tmp_path / "glue" / "X").mkdir(parents=True)
    (tmp_path / "glue" / "X" / "dev.tsv").write_text("sentence\tlabel\n" + "a\t0\n" * 30 + "b\t1\n" * 70)
    return tmp_path


def test_the_line_says_the_metric_against_the_baseline(dev_70):
    assert verdict(record("accuracy", 70.5, dev_70)) == "accuracy 70.50 (majority class 70.00: learned nothing)"
    assert verdict(record("accuracy", 71.0, dev_70)) == "accuracy 71.00 (majority class 70.00: +1.00)"  # CLEAR = 1
    assert verdict(record("accuracy", 65.0, dev_70)) == "accuracy 65.00 (majority class 70.00: learned nothing)"
    assert verdict(record("accuracy", 88.3, dev_70)) == "accuracy 88.30 (majority class 70.00: +18.30)"
    # F1 of the positive class: 2 * 0.7 / 1.7 = 82.35 for the constant prediction
    assert verdict(record("f1", 82.0, dev_70)) == "f1 82.00 (constant prediction 82.35: learned nothing)"
    # no dev.tsv to read: the official SST-2 dev counts (428/444), when the eval set has their size
    assert verdict(record("accuracy", 88.3, None, eval_examples=872)) == "accuracy 88.30 (majority class 50.92: +37.38)"
    assert verdict(record("accuracy", 88.3, None, eval_examples=50)) == "accuracy 88.30"  # unknown: no claim
    assert verdict({"primary_metric": "accuracy", "metrics": {}}) == "no metric"
    # CoLA's MCC and STS-B's Pearson: a constant prediction scores 0
    assert verdict(record("mcc", 0.4, dev_70, name="cola")) == "mcc 0.40 (constant prediction 0.00: learned nothing)"
    assert verdict(record("pearson", 12.0, dev_70, name="stsb")) == "pearson 12.00 (constant prediction 0.00: +12.00)"


def test_own_classification_data_says_majority_class_too(tmp_path):
    """task=classification's accuracy is judged against its own dev file's majority class, by that name."""
    (tmp_path / "train.csv").write_text("text,label\n" + "a,neg\nb,pos\n" * 5)
    (tmp_path / "dev.csv").write_text("text,label\n" + "a,neg\n" * 1 + "b,pos\n" * 3)
    rec = {"primary_metric": "accuracy", "metrics": {"accuracy": 80.0}, "eval_examples": 4,
           "config": {"data_dir": None, "task": {"kind": "classification", "name": "classification",
                                                 "train": str(tmp_path / "train.csv"), "dev": str(tmp_path / "dev.csv"),
                                                 "text": "text", "text_pair": None, "label": "label"}}}
    assert verdict(rec) == "accuracy 80.00 (majority class 75.00: +5.00)"


def test_train_prints_the_verdict_and_the_other_metrics(tmp_path, glue_dir, capsys):
    args = ["train", "model=tiny", "task=rte", "method=bitfit", "max_steps=2", "tracking.mode=disabled",
            f"data_dir={glue_dir}", f"out={tmp_path / 'run'}"]
    assert main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    # the fixture's RTE dev set is 12/12: majority class 50.00
    assert re.fullmatch(r"completed: rte bitfit: accuracy \d+\.\d\d \(majority class 50\.00: "
                        r"(learned nothing|\+\d+\.\d\d)\); f1 \d+\.\d\d -> " + re.escape(str(tmp_path / "run")) +
                        r"/result\.json", line), line


@pytest.fixture
def base(tmp_path):
    """A tiny BERT encoder (with its pooler) saved as a checkpoint folder, as a user's own base would be."""
    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(cfg).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def model_cfg(path):
    return OmegaConf.create({"name": "mine", "name_or_path": str(path), "package": None, "config_file": None})


class Shown(logging.Handler):
    """What transformers' own console handler (on the `transformers` logger) is given to print."""

    def __init__(self) -> None:
        super().__init__()
        self.text = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.text += record.getMessage() + "\n"


def load_quietly(path, head, caplog):
    """(peftbench's log lines while loading, what transformers printed)."""
    shown, tlog = Shown(), logging.getLogger("transformers")
    tlog.addHandler(shown)
    try:
        with caplog.at_level(logging.INFO, logger="peftbench"):
            load_model(model_cfg(path), head)
    finally:
        tlog.removeHandler(shown)
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "peftbench"], shown.text


def test_a_fresh_head_is_one_line_of_the_log(base, caplog):
    logged, err = load_quietly(base, "seq_cls", caplog)
    assert logged == [("INFO", "new head initialised: classifier.{weight,bias}")]
    assert err == ""  # the multi-line LOAD REPORT is not printed
    caplog.clear()
    logged, err = load_quietly(base, "qa", caplog)  # a QA model has no pooler: the checkpoint's goes unused
    assert logged == [("INFO", "new head initialised: qa_outputs.{weight,bias}; "
                               "unused checkpoint weights: pooler.dense.{bias,weight}")]
    assert err == ""


@pytest.mark.parametrize("change,key,message", [
    ("drop", "encoder.layer.0.attention.self.query.weight",
     "encoder weights missing from the checkpoint, newly initialised: bert.encoder.layer.0.attention.self.query.weight"),
    ("add", "encoder.layer.5.output.dense.weight",
     "checkpoint weights the model has no place for: encoder.layer.5.output.dense.weight"),
])
def test_a_real_loading_problem_still_shows(base, caplog, change, key, message):
    weights = load_file(base / "model.safetensors")
    if change == "drop":
        del weights[key]
    else:
        weights[key] = weights["encoder.layer.0.output.dense.weight"].clone()
    save_file(weights, base / "model.safetensors", metadata={"format": "pt"})
    logged, err = load_quietly(base, "seq_cls", caplog)
    assert "LOAD REPORT" in err and key in err  # transformers' own report, in full
    assert [level for level, _ in logged] == ["WARNING"] and message in logged[0][1]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"peftbench {version('peftbench')}"


def test_list_names_every_config_with_its_own_words(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    titles = [ln for ln in lines if ln and not ln.startswith(" ")]
    assert [t.split(" (")[0] for t in titles] == ["methods", "tasks", "models", "studies"]
    rows = {ln.split()[0]: ln for ln in lines if ln.startswith("  ")}
    for group in ("method", "task", "model", "study"):
        for name in group_options(group):
            assert name in rows, f"{group} {name} is not listed"
            text = (CONFIG_DIR / group / f"{name}.yaml").read_text()
            words = OmegaConf.create(text).get("trains") if group == "method" else text.splitlines()[0][2:40]
            assert words and words in rows[name]
    assert rows["full"] == lines[1] and "quickstart" in rows  # the baseline first; the quickstart preset is there
    assert main(["list", "tasks"]) == 0 and capsys.readouterr().out.startswith("tasks (")
    assert main(["list", "nope"]) == 2 and "unknown group ['nope']" in capsys.readouterr().err
