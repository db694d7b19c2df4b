"""GLUE TSV reading (BOM, quotes, string labels), subsets, metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from peftbench.config.compose import load_config
from peftbench.errors import UserError
from peftbench.models.load import tiny_tokenizer
from peftbench.data.tasks import TaskData, glue, subset_indices


def test_mrpc_with_bom_and_quotes(glue_dir):
    texts, labels = glue.read_tsv(glue_dir / "glue/MRPC/train.tsv", ["#1 String", "#2 String"], "Quality", ["0", "1"])
    assert texts[0][0] == 'He said "yes" to 100.'  # quotes are text, not CSV quoting
    assert labels[:6] == [1, 0, 1, 1, 0, 1]


def test_rte_string_labels_and_sst2(glue_dir):
    _, rte = glue.read_tsv(glue_dir / "glue/RTE/dev.tsv", ["sentence1", "sentence2"], "label",
                           ["entailment", "not_entailment"])
    assert rte[:4] == [1, 0, 1, 0]
    texts, sst = glue.read_tsv(glue_dir / "glue/SST-2/train.tsv", ["sentence"], "label", ["0", "1"])
    assert texts[0][2] == 'he said "wow" , loved it ' and sst[:2] == [1, 0]


@pytest.mark.parametrize("body,message", [
    ("sentence\tlabel\nfine\t7\n", r"train.tsv:2: label '7' is not one of \['0', '1'\]"),
    ("text\tlabel\nfine\t1\n", r"train.tsv:1: missing column\(s\) \['sentence'\]"),
    ("", "is empty"),
    ("sentence\tlabel\nfine\t1\textra\n", "train.tsv:2: 3 fields, the header has 2"),
])
def test_bad_tsv_is_one_clear_error(tmp_path, body, message):
    path = tmp_path / "train.tsv"
    path.write_text(body)
    with pytest.raises(UserError, match=message):
        glue.read_tsv(path, ["sentence"], "label", ["0", "1"])


def test_invalid_utf8_and_missing_file(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\n\xff\xfe bad\t1\n")
    with pytest.raises(UserError, match="not valid UTF-8"):
        glue.read_tsv(path, ["sentence"], "label", ["0", "1"])
    with pytest.raises(UserError, match="not found"):
        glue.read_tsv(tmp_path / "nope.tsv", ["sentence"], "label", ["0", "1"])


def test_load_tokenizes_subset_and_rejects_oversize(glue_dir):
    cfg = load_config(["model=tiny", "task=rte", f"data_dir={glue_dir}", "train_size=10"])
    data = glue.load(cfg, tiny_tokenizer())
    assert len(data.train) == data.train_examples == 10 and data.eval_examples == 24
    assert set(data.train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    with pytest.raises(UserError, match="train_size=99 is above the 24 training rows of rte"):
        glue.load(load_config(["model=tiny", "task=rte", f"data_dir={glue_dir}", "train_size=99"]), tiny_tokenizer())


def test_subsets_are_nested_and_deterministic():
    small, big = subset_indices(1000, 50, seed=3), subset_indices(1000, 200, seed=3)
    assert set(small) <= set(big)
    assert np.array_equal(small, subset_indices(1000, 50, seed=3))
    assert not np.array_equal(small, subset_indices(1000, 50, seed=4))


def test_metrics_on_a_hand_computed_case():
    # labels 1 1 0 0 1, predictions 1 0 0 1 1: accuracy 3/5; F1 of class 1: tp 2, fp 1, fn 1 -> 2/3
    logits = [np.array(r, dtype=np.float32) for r in ([0, 1], [1, 0], [1, 0], [0, 1], [0, 1])]
    data = TaskData(train=None, eval=None, meta={"labels": np.array([1, 1, 0, 0, 1])})
    metrics, preds = glue.score(data, {"logits": logits})
    assert preds == [1, 0, 0, 1, 1]
    assert metrics == {"accuracy": 60.0, "f1": pytest.approx(66.6667, abs=1e-4)}
