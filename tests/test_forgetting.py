"""The forgetting measure: linear CKA by hand, what a tiny run records (an untouched encoder: CKA 1, MLM change 0),
metrics bit-identical with the measure on or off, the report's table and the explorer's axis."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from conftest import cut_glue

from peftbench.cli import main
from peftbench.engine.forgetting import SAMPLE, linear_cka, load_sample


def direct_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition over Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XX^T, L = YY^T,
    HSIC(K, L) = tr(K H L H) with H the centring matrix (the 1/(n-1)^2 factors cancel)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    hsic = lambda k, l: np.trace(k @ h @ l @ h)  # noqa: E731
    k, l = x @ x.T, y @ y.T
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_cka_by_hand():
    # one feature each: linear CKA is the squared Pearson correlation; (1,2,3) vs (1,3,2): r = 1/2, CKA = 1/4
    assert linear_cka([[1.0], [2.0], [3.0]], [[1.0], [3.0], [2.0]]) == pytest.approx(0.25, abs=1e-15)
    assert linear_cka([[1.0], [2.0], [3.0]], [[3.0], [2.0], [1.0]]) == pytest.approx(1.0, abs=1e-15)  # r = -1


def test_cka_identity_invariances_and_the_direct_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))  # an orthogonal matrix
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x + 3.0) == pytest.approx(1.0, abs=1e-12)  # a shift: columns are centred
    y = rng.normal(size=(12, 3))
    value = linear_cka(x, y)
    assert 0 < value < 1 and value == pytest.approx(direct_cka(x, y), rel=1e-12)
    assert linear_cka(x @ q * 2.0, y) == pytest.approx(value, rel=1e-12)
    small_x, small_y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([[2.0], [0.0], [1.0]])
    assert linear_cka(small_x, small_y) == pytest.approx(direct_cka(small_x, small_y), rel=1e-12)
    with pytest.raises(ValueError):
        linear_cka(x, y[:5])
    with pytest.raises(ValueError):
        linear_cka(np.ones((4, 2)), y[:4])  # constant: undefined


def test_the_sample_is_fixed():
    texts = load_sample()
    assert len(texts) == 96 and len(set(texts)) == 96 and not any(t.startswith("#") for t in texts)
    assert texts[0].startswith("The morning train was late")


def run(tmp_path, glue_dir, name, *extra):
    out = tmp_path / name
    assert main(["train", "model=tiny", "task=mrpc", f"data_dir={glue_dir}", f"out={out}", "max_steps=6",
                 "tracking.mode=disabled", *extra]) == 0
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_run_records_forgetting_and_an_untouched_encoder_has_none(tmp_path, glue_dir):
    full = run(tmp_path, glue_dir, "full", "method=full")["forgetting"]
    assert full["sample"] == SAMPLE and full["n"] == 96 and full["pooling"] == "mean"
    assert 0 < full["cka"] < 1 and full["mlm_loss_delta"] != 0  # full FT moved the encoder
    assert full["mlm_loss_delta"] == pytest.approx(full["mlm_loss_tuned"] - full["mlm_loss_base"], abs=2e-6)
    assert full["mlm_note"] == "tiny: a random MLM head"
    lora = run(tmp_path, glue_dir, "lora", "method=lora")["forgetting"]
    assert 0 < lora["cka"] < 1 and lora["mlm_loss_base"] == full["mlm_loss_base"]  # same base, same masks
    assert 1 - full["cka"] > 10 * (1 - lora["cka"])  # this seed: 1.3e-6 vs 3.3e-8 (every weight vs rank-8 updates)
    head = run(tmp_path, glue_dir, "head", "method=bitfit", "method.biases=[]")  # only the classifier trains
    assert head["trainable_params"] == 32 * 2 + 2  # the classifier only: the encoder is untouched
    assert head["forgetting"]["cka"] == pytest.approx(1.0, abs=1e-12) and head["forgetting"]["mlm_loss_delta"] == 0
    prompt = run(tmp_path, glue_dir, "prompt", "method=prompt")["forgetting"]  # pooled over the real tokens only
    assert 0 < prompt["cka"] < 1


@pytest.mark.parametrize("method", ["full", "lora", "prompt"])
def test_metrics_are_bit_identical_with_forgetting_on_or_off(tmp_path, glue_dir, method):
    extra = ["method.init=vocab"] if method == "prompt" else []  # its init draws from the RNG after the probe
    on = run(tmp_path, glue_dir, "on", f"method={method}", *extra)
    off = run(tmp_path, glue_dir, "off", f"method={method}", "forgetting=false", *extra)
    assert off["forgetting"] is None and on["forgetting"]["cka"] < 1
    assert on["metrics"] == off["metrics"] and on["identity"] == off["identity"]
    digest = lambda name: hashlib.sha256((tmp_path / name / "delta.safetensors").read_bytes()).hexdigest()  # noqa: E731
    assert digest("on") == digest("off")  # every trained tensor, bit for bit
    steps = r"step \d+/\d+ epoch \d+ loss \S+"  # without the samples/s that follows
    log = lambda name: re.findall(steps, (tmp_path / name / "train.log").read_text())  # noqa: E731
    assert log("on") == log("off") != []


def test_report_table_and_explorer_axis(tmp_path, glue_dir):
    from peftbench.reports.explorer import AXES, value

    run(tmp_path / "runs", glue_dir, "full", "method=full")
    run(tmp_path / "runs", glue_dir, "head", "method=bitfit", "method.biases=[]")
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    table = md.split("## Forgetting")[1].split("\n## ")[0]
    assert "| model | method | task | 1 − CKA | MLM loss Δ | runs |" in table
    rows = [l for l in table.splitlines() if l.startswith("| tiny |")]
    assert [r.split(" | ")[1] for r in rows] == ["full", "bitfit"]
    assert rows[1].startswith("| tiny | bitfit | mrpc | 0 | ")
    assert "forgetting.cka" in [a[0] for a in AXES]
    rec = {"forgetting": {"cka": 0.75}}
    assert value(rec, "forgetting.cka") == 0.25 and value({"forgetting": None}, "forgetting.cka") is None
    html = (tmp_path / "rep" / "explorer.html").read_text()
    # plotly writes the figure as JSON: with orjson installed "−" stays as is, with the json module it is \u2212
    shown = lambda text: text in html or json.dumps(text)[1:-1] in html  # noqa: E731
    assert shown("encoder change, 1 − CKA to the base") and shown("forgetting: CKA ")


def test_forgetting_knob_is_checked(tmp_path, glue_dir, capsys):
    assert main(["train", "model=tiny", "task=mrpc", f"data_dir={glue_dir}", f"out={tmp_path / 'x'}",
                 "forgetting=maybe"]) == 2
    assert "forgetting='maybe' is not true or false" in capsys.readouterr().err


@pytest.mark.parametrize("head", [True, False])
def test_a_checkpoint_folder_with_and_without_an_mlm_head(tmp_path, glue_dir, head):
    """A saved checkpoint: its own pre-trained MLM head is read; an encoder-only folder (as MiniLM's) records null
    and says why."""
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

    from peftbench.config.compose import load_config
    from peftbench.models.load import tiny_config, tiny_tokenizer

    folder = tmp_path / "ckpt"
    torch.manual_seed(1)
    config = tiny_config(load_config(["model=tiny"]).model)
    (AutoModelForMaskedLM if head else AutoModel).from_config(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    f = run(tmp_path, glue_dir, "run", "method=lora", "model.tiny=null", f"model.name_or_path={folder}")["forgetting"]
    assert 0 < f["cka"] < 1
    if head:
        assert f["mlm_note"] is None and f["mlm_loss_delta"] != 0
        assert f["mlm_loss_delta"] == pytest.approx(f["mlm_loss_tuned"] - f["mlm_loss_base"], abs=2e-6)
    else:
        assert f["mlm_loss_base"] is f["mlm_loss_tuned"] is f["mlm_loss_delta"] is None
        assert f["mlm_note"].startswith("the checkpoint has no MLM head weights")


@pytest.mark.integration
def test_minilm_records_cka_and_says_why_it_has_no_mlm_loss(shared_data, tmp_path):
    """MiniLM's folder (sentence-transformers) holds the encoder only: CKA is measured, the MLM loss is null with a
    reason; LoRA moves the encoder, a head-only run does not."""
    from peftbench.config.compose import load_config
    from peftbench.engine.train import train

    data = cut_glue(shared_data, tmp_path / "data", "RTE", 16)  # forgetting is measured on its own sample

    def run_minilm(name, *extra):
        return train(load_config(["model=minilm_l6", "task=rte", f"data_dir={data}", "train_size=32",
                                  "max_steps=2", "batch_size=16", f"out={tmp_path / name}", "tracking.mode=disabled",
                                  *extra]))["forgetting"]

    lora = run_minilm("lora", "method=lora", "lr=2e-3")
    assert 0 < lora["cka"] < 1 and lora["n"] == 96
    assert lora["mlm_loss_delta"] is None and lora["mlm_note"].startswith("the checkpoint has no MLM head weights")
    head = run_minilm("head", "method=bitfit", "method.biases=[]")
    assert head["cka"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "deberta-v2",
                                    "modernbert"])
def test_every_family_measures_and_an_unchanged_model_is_unmoved(family):
    """The probe on each family's tiny model: the MLM head reads the given states (its own class per family), and
    the model measured again unchanged gives CKA 1 and an MLM change of exactly 0; prompt tuning's virtual tokens
    are cut out before pooling (a pooled row per sentence either way)."""
    import torch

    from peftbench.config.compose import load_config
    from peftbench.engine.forgetting import Probe, last_hidden
    from peftbench.models.methods import apply_method
    from peftbench.models.load import load_model, load_tokenizer

    cfg = load_config(["model=tiny", f"model.tiny.model_type={family}", "task=sst2", "method=prompt"])
    tok = load_tokenizer(cfg.model)
    model = load_model(cfg.model, "seq_cls", 2)
    probe = Probe(cfg, tok, model, torch.device("cpu"))
    same = probe.finish(model)
    assert same["cka"] == pytest.approx(1.0, abs=1e-12) and same["mlm_loss_delta"] == 0
    assert same["mlm_loss_base"] > 0 and probe.base.shape[0] == 96
    prompted = apply_method(model, cfg.method, "tiny")
    states = last_hidden(prompted, probe.clean[:1])[0]
    assert states.shape[:2] == probe.clean[0]["input_ids"].shape  # the text's positions only
    assert 0 < probe.finish(prompted)["cka"] <= 1
