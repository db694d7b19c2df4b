"""cost.py's numbers in result.json against hand counts: the static memory split and the FLOPs of a training step.

The tiny BERT (hidden 32, 2 layers, FFN 64, 141-token vocabulary, 512 positions) is small enough to count by hand.
"""

from __future__ import annotations

import gc
import json

import pytest
from conftest import TINY_METHOD_ARGS, fast_sample
import torch
from torch.utils.flop_counter import FlopCounterMode

from peftbench.cli import main
from peftbench.config.compose import group_options, load_config
from peftbench.engine.cost import expected_step_flops
from peftbench.data.batches import train_batches
from peftbench.models.methods import apply_method
from peftbench.models.load import load_model, load_tokenizer
from peftbench.data.tasks import TASKS

from conftest import write_glue

H, FFN, LAYERS, VOCAB, POSITIONS, LABELS, R = 32, 64, 2, 141, 512, 2, 8
LAYER = 4 * (H * H + H) + (H * FFN + FFN) + (FFN * H + H) + 2 * 2 * H  # q,k,v,o + FFN in/out + 2 LayerNorms
BASE = (VOCAB + POSITIONS + 2) * H + 2 * H + LAYERS * LAYER + (H * H + H) + (H * LABELS + LABELS)
HEAD = H * LABELS + LABELS
BIASES = H + LAYERS * (4 * H + FFN + H + 2 * H) + H  # embeddings LN, per layer, pooler
LORA = LAYERS * 2 * (R * H + H * R)  # A and B on query and value
# trainable params and every param held (LoRA adds its matrices and peft's trainable copy of the head)
EXPECTED = {"full": (BASE, BASE), "bitfit": (BIASES + HEAD, BASE), "lora": (LORA + HEAD, BASE + LORA + HEAD)}
# the methods whose adapter products cost.expected_step_flops does not work out (it says so in `not_worked_out`)
NOT_WORKED_OUT = {"adalora", "boft", "fourierft", "hra", "loha", "lokr", "miss", "oft"}
ARGS = ["model=tiny", "task=sst2", "max_steps=3", "batch_size=8", "tracking.mode=disabled"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_glue(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def records(data_root, tmp_path_factory):
    """One tiny run per method, shared by the tests below (the suite has a time budget)."""
    cache: dict[str, dict] = {}

    def get(method: str) -> dict:
        if method not in cache:
            out = tmp_path_factory.mktemp(method)
            assert main(["train", *ARGS, f"method={method}", f"data_dir={data_root}", f"out={out}"]) == 0
            cache[method] = json.loads((out / "result.json").read_text())
        return cache[method]

    return get


def forward_flops(batch: int, seq: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of the tiny model's forward: linears, attention scores and mixing, head."""
    tokens = batch * seq
    per_layer = 2 * tokens * (4 * H * H + 2 * H * FFN) + 2 * 2 * batch * seq * seq * H
    return LAYERS * per_layer + 2 * batch * H * H + 2 * batch * H * LABELS


def first_batches(glue_dir, method: str):
    """What the loop trains on: the model, and every step's padded batch (the first is the one FLOPs are counted on)."""
    cfg = load_config([*ARGS, f"method={method}", f"data_dir={glue_dir}", *TINY_METHOD_ARGS.get(method, [])])
    tokenizer = load_tokenizer(cfg.model)
    data = TASKS[cfg.task.kind].load(cfg, tokenizer)
    order = train_batches(data.train.lengths, cfg.batch_size, cfg.seed, 0, cfg.group_by_length)[: cfg.max_steps]
    batches = [data.train.batch(idx) for idx in order]
    model = apply_method(load_model(cfg.model, "seq_cls", data.num_labels), cfg.method, "tiny")
    return model, batches


@pytest.mark.parametrize("method", ["full", "bitfit", "lora"])
def test_static_memory_split_is_the_hand_count_in_fp32(records, method):
    rec = records(method)
    trainable, held = EXPECTED[method]
    assert rec["total_params"] == BASE == 39234
    assert rec["trainable_params"] == trainable and rec["added_params"] == held - BASE
    assert rec["memory_weights_bytes"] == 4 * held
    assert rec["memory_gradients_bytes"] == 4 * trainable
    assert rec["memory_optimizer_bytes"] == 2 * 4 * trainable  # AdamW: exp_avg and exp_avg_sq
    assert rec["peak_memory_bytes"] >= rec["rss_before_train_bytes"] > 0


@pytest.mark.parametrize("method", ["full", "bitfit", "lora"])
def test_step_flops_match_a_recount_and_the_analytic_count(records, data_root, method):
    rec = records(method)
    model, batches = first_batches(data_root, method)
    first = batches[0]
    b, s = first["input_ids"].shape
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(**first).loss.backward()
    assert rec["train_flops_per_step"] == counter.get_total_flops()

    fwd = forward_flops(b, s)
    attention = LAYERS * 2 * 2 * b * s * s * H
    if method == "full":  # backward = grad of inputs + grad of weights, each as costly as the forward
        assert rec["train_flops_per_step"] == 3 * fwd
    elif method == "bitfit":  # no weight grads except the head's; attention's backward still runs both products
        assert rec["train_flops_per_step"] == 2 * fwd + attention + 2 * b * H * LABELS
    else:  # LoRA adds its thin matmuls; the frozen weights' grads are skipped
        assert 2 * fwd < rec["train_flops_per_step"] < 3 * fwd

    padded = sum(x["input_ids"].numel() for x in batches)
    per_token = rec["train_flops_per_step"] / (b * s)
    assert rec["train_flops_per_token"] == round(per_token, 1)
    assert rec["train_flops"] == round(per_token * padded)


def test_cpu_meter_does_not_count_what_an_earlier_run_left_in_a_reference_cycle():
    """A study trains run after run in one process; a model kept alive by a reference cycle (as peft models are)
    must not count as the next run's resident memory."""
    from peftbench.engine.cost import Meter, _status

    gc.disable()  # so that only the meter can collect the cycle
    try:
        start = _status("VmRSS")
        cycle = {"weights": torch.ones(100 * 2**20)}  # 400 MiB of float32, written, so resident
        cycle["self"] = cycle
        del cycle
        assert _status("VmRSS") > start + 300 * 2**20  # still resident: only the cycle collector can free it
        meter = Meter(torch.device("cpu"))
        assert meter.fields["rss_before_train_bytes"] < start + 100 * 2**20
        assert meter.peak()["peak_memory_bytes"] < start + 100 * 2**20
    finally:
        gc.enable()


@pytest.mark.parametrize("method", fast_sample(sorted(group_options("method")), offset=3))
def test_worked_out_flops_match_flopcountermode_within_10_percent(data_root, method):
    """cost.expected_step_flops (the count from the model's shapes, which the report uses to say why) against torch's
    FlopCounterMode on one real training step of every method."""
    model, batches = first_batches(data_root, method)
    cfg = load_config([*ARGS, f"method={method}", f"data_dir={data_root}", *TINY_METHOD_ARGS.get(method, [])])
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(**batches[0]).loss.backward()
    measured = counter.get_total_flops()
    b, s = batches[0]["input_ids"].shape
    expected = expected_step_flops(model, b, s, cfg.method)
    if expected["not_worked_out"]:  # a tuner whose own products are not modelled: the base's count, a lower bound
        assert method in NOT_WORKED_OUT and expected["total"] < measured, (expected, measured)
    else:
        assert method not in NOT_WORKED_OUT
        assert abs(expected["total"] / measured - 1) < 0.10, (expected, measured)
    assert expected["total"] == expected["forward"] + expected["backward"]
    extra = cfg.method.num_virtual_tokens if cfg.method.get("apply") == "prompt" else 0
    assert expected["tokens_per_example"] == s + extra and expected["input_tokens_per_example"] == s


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_the_record_and_the_report_say_why_prompt_tuning_costs_more(records, tmp_path):
    from peftbench.record import write_json_atomic
    from peftbench.reports import write_report

    for method in ("full", "prompt"):
        rec = records(method)
        e = rec["train_flops_expected"]
        assert abs(e["total"] / rec["train_flops_per_step"] - 1) < 0.10
        (tmp_path / "runs" / method).mkdir(parents=True)
        write_json_atomic(tmp_path / "runs" / method / "result.json", rec)
    md = write_report([tmp_path / "runs"], tmp_path / "report").read_text()
    why = md.split("#### Why the FLOPs differ", 1)[1]
    prompt = next(line for line in why.splitlines() if line.startswith("- **prompt**"))
    e = records("prompt")["train_flops_expected"]
    assert f"20 virtual tokens make each example {e['input_tokens_per_example'] + 20} tokens" in prompt
    assert "x full's" in prompt and "frozen weights" in prompt
    assert "(input and weight gradients everywhere)" in next(l for l in why.splitlines() if l.startswith("- **full**"))


@pytest.mark.integration
@pytest.mark.parametrize("method", sorted(group_options("method")))
def test_worked_out_flops_match_on_minilm_and_real_sst2(shared_data, method):
    """The same check on MiniLM and a real SST-2 batch (measured when written: every method within 1%)."""
    cfg = load_config(["model=minilm_l6", "task=sst2", f"method={method}", f"data_dir={shared_data}",
                       "batch_size=16", "train_size=64", "tracking.mode=disabled"])
    data = TASKS[cfg.task.kind].load(cfg, load_tokenizer(cfg.model))
    batch = data.train.batch(train_batches(data.train.lengths, cfg.batch_size, cfg.seed, 0, cfg.group_by_length)[0])
    model = apply_method(load_model(cfg.model, "seq_cls", data.num_labels), cfg.method, cfg.model.name)
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    b, s = batch["input_ids"].shape
    expected = expected_step_flops(model, b, s, cfg.method)
    if method in NOT_WORKED_OUT:
        assert expected["not_worked_out"] and expected["total"] < counter.get_total_flops()
    else:
        assert abs(expected["total"] / counter.get_total_flops() - 1) < 0.10
