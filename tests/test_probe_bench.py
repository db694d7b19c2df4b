"""bench/probes/probe_frozen.py: readouts ignore padding, the logistic regression fits what is separable, and a run on the
tiny model writes every (readout, strength) cell with the trivial baselines computed from the dev labels."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from peftbench.config.compose import load_config
from peftbench.models.load import load_model, load_tokenizer
from peftbench.data.tasks import TASKS

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("probe_frozen", BENCH / "probes" / "probe_frozen.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readouts_of_a_padded_batch_equal_each_row_alone(probe, glue_dir):
    cfg = load_config(["model=tiny", "task=rte", f"data_dir={glue_dir}"])
    data = TASKS["glue"].load(cfg, load_tokenizer(cfg.model))
    torch.manual_seed(0)
    encoder = load_model(cfg.model, "seq_cls").base_model.eval()
    batched = probe.features(encoder, data.eval, batch_size=24)
    assert len(set(data.eval.lengths.tolist())) > 1  # rows of different lengths share the batch
    for i in (0, 5):
        alone = probe.features(encoder, data.eval.select([i]), batch_size=1)
        for readout in probe.READOUTS:
            torch.testing.assert_close(batched[readout][i], alone[readout][0], atol=1e-5, rtol=1e-5)


def test_logistic_regression_fits_separable_points(probe):
    torch.manual_seed(1)
    x = torch.randn(200, 5)
    y = (x[:, 0] - 2 * x[:, 3] > 0).long()
    head = probe.fit(x, y, 2, strength=1e-4)
    assert (head(x).argmax(-1) == y).float().mean().item() == 1.0
    strong = probe.fit(x, y, 2, strength=10.0)
    assert strong.weight.norm() < head.weight.norm() / 10  # L2 shrinks the weights


def test_run_on_the_tiny_model_writes_every_cell(probe, glue_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "probe"
    monkeypatch.setattr(sys, "argv", ["probe_frozen.py", "--model", "tiny", "--task", "rte", "--data-dir",
                                      str(glue_dir), "--out", str(out)])
    probe.main()
    res = json.loads((out / "results.json").read_text())
    readouts = probe.READOUTS + probe.PAIR_READOUTS  # RTE is a sentence-pair task
    assert [(r["readout"], r["l2"]) for r in res["rows"]] == [(r, s) for r in readouts for s in probe.STRENGTHS]
    # 12 entailment / 12 not: majority accuracy 50; F1 of predicting the positive class everywhere 2 * .5 / 1.5
    assert res["setup"]["majority"] == {"accuracy": 50.0, "f1": pytest.approx(66.6667, abs=1e-3)}
    printed = capsys.readouterr().out
    assert "| mean | 0.1 |" in printed
    assert "| readout | L2 | dev accuracy | train accuracy |" in printed  # RTE's metric is accuracy: one column


def test_pair_readouts_embed_each_sentence_alone(probe):
    cfg = load_config(["model=tiny"])
    tokenizer = load_tokenizer(cfg.model)
    torch.manual_seed(0)
    encoder = load_model(cfg.model, "seq_cls").base_model.eval()
    first = ["the cat sat on the mat", "a short one", "stocks fell sharply on monday"]
    second = ["the cat sat on the mat", "a much longer sentence than the first one here", "shares dropped"]
    x = probe.pair_features(encoder, tokenizer, [first, second], max_length=32)
    hidden = encoder.config.hidden_size
    assert x["pair"].shape == (3, 3 * hidden) and x["cosine"].shape == (3, 1)
    assert x["cosine"][0].item() == pytest.approx(1.0, abs=1e-5)  # the same sentence twice
    assert x["pair"][0, 2 * hidden:].abs().max().item() < 1e-5  # |u - v| of the same sentence is 0
    assert x["cosine"][1:].max().item() < 1 - 1e-4
    # u is the second sentence's own token mean, whatever its batch neighbours' lengths
    alone = probe.pair_features(encoder, tokenizer, [second[1:2], first[1:2]], max_length=32)
    torch.testing.assert_close(x["pair"][1, hidden:2 * hidden], alone["pair"][0, :hidden], atol=1e-5, rtol=1e-5)
