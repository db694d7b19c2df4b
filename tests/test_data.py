"""The packed data path: a batch sliced from the packed arrays is exactly what tokenizer.pad would give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peftbench.config.compose import load_config
from peftbench.data.batches import Packed, pad_multiple
from peftbench.models.load import load_tokenizer, tiny_tokenizer
from peftbench.data.tasks import TASKS


from test_squad import squad_dir  # noqa: F401  (the fixture)


def tiny_data(glue_dir, task: str):
    cfg = load_config(["model=tiny", f"task={task}", f"data_dir={glue_dir}"])
    tokenizer = load_tokenizer(cfg.model)
    return tokenizer, TASKS[cfg.task.kind].load(cfg, tokenizer)


@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_packed_batches_equal_tokenizer_pad(glue_dir, task):
    tokenizer, data = tiny_data(glue_dir, task)
    rows = [5, 0, 17, 3]
    want = tokenizer.pad({k: [data.train[k][i] for i in rows] for k in data.train.column_names}, return_tensors="pt")
    got = data.train.batch(rows)
    assert set(got) == set(want) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    for k in want:
        assert torch.equal(got[k], want[k]), k
        assert got[k].dtype == torch.int64


def test_pad_multiple_rounds_up_and_pads_with_the_pad_id():
    rows = Packed.from_lists({"input_ids": [[7, 8, 9], [7, 8], list(range(10, 21))], "attention_mask": [[1] * 3, [1] * 2, [1] * 11],
                              "labels": [1, 0, 1]}, pad_id=1)  # RoBERTa-style pad id
    b = rows.batch([0, 1], pad_multiple=8)
    assert b["input_ids"].tolist() == [[7, 8, 9] + [1] * 5, [7, 8] + [1] * 6]
    assert b["attention_mask"].tolist() == [[1] * 3 + [0] * 5, [1] * 2 + [0] * 6]
    assert b["labels"].tolist() == [1, 0]
    wide = rows.batch([2], pad_multiple=32)  # past the packed width (16): padded on the fly
    assert wide["input_ids"].shape == (1, 32) and wide["input_ids"][0, 11:].eq(1).all()
    assert rows["input_ids"][1] == [7, 8] and rows.select([2, 0])["labels"] == [1, 1]


def test_pad_multiple_auto_is_8_on_cuda_32_compiled_1_on_cpu():
    cfg = load_config(["model=tiny"])
    assert pad_multiple(cfg, torch.device("cpu")) == 1
    assert pad_multiple(cfg, torch.device("cuda")) == 8
    cfg.compile = True
    assert pad_multiple(cfg, torch.device("cuda")) == 32
    cfg.pad_multiple = 16
    assert pad_multiple(cfg, torch.device("cpu")) == 16


def test_squad_windows_pack_like_tokenizer_pad(squad_dir):
    from test_squad import load  # the SQuAD tests' fixture and settings

    data, _ = load(squad_dir)
    tokenizer = tiny_tokenizer()
    rows = list(range(min(6, len(data.train))))
    want = tokenizer.pad({k: [data.train[k][i] for i in rows] for k in data.train.column_names}, return_tensors="pt")
    got = data.train.batch(rows)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert np.array_equal(data.eval.lengths, [len(x) for x in data.eval["input_ids"]])
