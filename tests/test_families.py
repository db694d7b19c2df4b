"""Every encoder family x every method on tiny random models: it trains, saves its delta, reloads to the same logits
(and merges, where peft can), or refuses in one line naming the method, the family and what to use instead; exact
trainable sets per family, written out here by hand from each family's module layout; a QA run per family."""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SST2
from test_squad import squad_json

from peftbench.engine import cost
from peftbench.engine import train as train_module
from peftbench.config.compose import group_options, load_config
from peftbench.engine.delta import load_run, merge_peft
from peftbench.errors import UserError
from peftbench.models.families import FAMILIES
from peftbench.models.methods import apply_method
from peftbench.models.load import load_model, load_tokenizer
from peftbench.engine.predict import predict as model_outputs
from peftbench.data.tasks import TASKS, squad

# The module layout of each family, by hand (what transformers 5 builds for a 2-block tiny config): the encoder's
# attribute, a block's path, its biased modules, the bias-bearing modules outside the blocks, and the head.
LAYOUT = {
    "bert": ("bert", "bert.encoder.layer.{i}", 2,
             ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
              "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"],
             ["embeddings.LayerNorm", "pooler.dense"], ["classifier"]),
    "deberta-v2": ("deberta", "deberta.encoder.layer.{i}", 2,
                   ["attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj",
                    "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense", "output.dense",
                    "output.LayerNorm"], ["embeddings.LayerNorm", "encoder.LayerNorm"], ["pooler.dense", "classifier"]),
    "distilbert": ("distilbert", "distilbert.transformer.layer.{i}", 2,
                   ["attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm",
                    "ffn.lin1", "ffn.lin2", "output_layer_norm"], ["embeddings.LayerNorm"],
                   ["pre_classifier", "classifier"]),
    "albert": ("albert", "albert.encoder.albert_layer_groups.0.albert_layers.0", 1,  # one layer shared by all depths
               ["attention.query", "attention.key", "attention.value", "attention.dense", "attention.LayerNorm", "ffn",
                "ffn_output", "full_layer_layer_norm"], ["embeddings.LayerNorm", "encoder.embedding_hidden_mapping_in",
                                                         "pooler"], ["classifier"]),
    "modernbert": ("model", "model.layers.{i}", 2, [], [], ["head.dense", "head.norm", "classifier"]),
}
for name in ("roberta", "xlm-roberta", "electra"):  # BERT's blocks; no pooler under a classification head
    LAYOUT[name] = (name.split("-")[-1], f"{name.split('-')[-1]}.encoder.layer.{{i}}", 2, LAYOUT["bert"][3],
                    ["embeddings.LayerNorm"], ["classifier.dense", "classifier.out_proj"])
QV = {"bert": ("attention.self.query", "attention.self.value"),
      "deberta-v2": ("attention.self.query_proj", "attention.self.value_proj"),
      "distilbert": ("attention.q_lin", "attention.v_lin"), "albert": ("attention.query", "attention.value"),
      "modernbert": ("attn.Wqkv",)}  # fused: one module stands for query, key and value
# where each family's adapters land (Houlsby: after the attention and FFN branches; the adapter on the hooked
# module's parent) and its prefix count (ALBERT: one shared set)
ADAPTERS = {"bert": ("attention.output", "output"), "deberta-v2": ("attention.output", "output"),
            "distilbert": ("attention", "ffn"), "albert": ("attention", ""), "modernbert": ("attn", "mlp")}
# (family, method) -> the words its refusal must contain
REFUSALS = {("deberta-v2", "prefix"): "disentangled relative-position attention",
            ("modernbert", "bitfit"): "no bias terms", ("modernbert", "bitfit_subset"): "no bias terms",
            ("modernbert", "adapter_pfeiffer"): "pre-norm"}
# peft runs merge (merge=true folds them into the weights) but where peft has no weight to fold into
NO_MERGE = {("modernbert", "beft"): "modernbert model (Base layer has no bias"}
# the tiny models are 32 wide: settings whose shipped value needs a wider layer
from conftest import TINY_METHOD_ARGS as TINY  # noqa: E402
ALL = sorted(FAMILIES)


def tiny(family: str, *over: str):
    return load_config(["model=tiny", f"model.tiny.model_type={family}", "tracking.mode=disabled", *over])


def built(family: str, method: str, head: str = "seq_cls", num_labels: int = 2, *over: str):
    cfg = tiny(family, f"method={method}", *over)
    torch.manual_seed(0)
    return apply_method(load_model(cfg.model, head, num_labels), cfg.method, "tiny")


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def layout(family: str):
    base, block, layers, biased, outside, head = LAYOUT[family]
    blocks = [block.format(i=i) for i in range(layers)]
    heads = {f"{h}.{p}" for h in head for p in ("weight", "bias") if not (family == "modernbert" and h != "classifier"
                                                                        and p == "bias")}
    return base, blocks, biased, outside, heads


def train_run(out: Path, data: Path, *overrides: str):
    """Train 2 steps; return (config, the trained model as it was handed to save_delta)."""
    cfg = tiny(overrides[0], f"data_dir={data}", f"out={out}", "max_steps=2", "lr=1e-2", "batch_size=4",
               *overrides[1:])
    seen = {}
    save_delta = train_module.save_delta

    def spy(model, *args):
        seen["model"] = model
        return save_delta(model, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "save_delta", spy)
        # the cost meter is not under test here: its FLOP count of step 0 and its gc pass are most of a tiny run
        mp.setattr(cost.Meter, "count", lambda self, step: setattr(self, "_counter", None) or nullcontext())
        mp.setattr(cost, "release_freed_memory", lambda: None)
        train_module.train(cfg)
    return cfg, seen["model"]


def outputs(model, cfg, keys=("logits",), rows=None):
    rows = rows or TASKS[cfg.task.kind].load(cfg, load_tokenizer(cfg.model)).eval
    out = model_outputs(model, rows, 64, torch.device("cpu"))
    return [np.stack(out[k]) for k in keys]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """SST-2 in its TSV layout, 8 rows: the 112 runs below pay per row."""
    root = tmp_path_factory.mktemp("glue")
    d = root / "glue" / "SST-2"
    d.mkdir(parents=True)
    for split in ("train", "dev"):
        (d / f"{split}.tsv").write_text("".join(SST2.splitlines(keepends=True)[:9]), encoding="utf-8")
    return root


# the fast tier: each method on one family in turn (every family gets some); the full suite: every pair
@pytest.mark.parametrize("family,method", [
    pytest.param(f, m, marks=() if i % len(ALL) == ALL.index(f) else pytest.mark.slow)
    for f in ALL for i, m in enumerate(group_options("method"))])
def test_every_method_trains_reloads_and_merges_or_refuses_on_every_family(tmp_path, data, family, method):
    out = tmp_path / "run"
    if (family, method) in REFUSALS:
        with pytest.raises(UserError) as e:
            train_run(out, data, family, f"method={method}")
        msg = str(e.value)
        assert "\n" not in msg and REFUSALS[family, method] in msg and "use " in msg
        assert msg.startswith(f"method '{method}' cannot handle model 'tiny' ({family}, tiny random {family}): ")
        return
    overrides = ["method.reduction_factor=4"] if method.startswith("adapter") else TINY.get(method, [])
    cfg, trained = train_run(out, data, family, f"method={method}", *overrides)
    rows = TASKS["glue"].load(cfg, load_tokenizer(cfg.model)).eval
    want = outputs(trained, cfg, rows=rows)[0]
    run = load_run(out)
    assert np.array_equal(outputs(run.model, cfg, rows=rows)[0], want)
    if (family, method) in NO_MERGE:
        with pytest.raises(UserError) as e:
            merge_peft(run.model, run.meta)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"merge=true: method '{method}' cannot be folded into this "
                                                  f"{NO_MERGE[family, method]}") and "use it unmerged" in msg
    elif hasattr(run.model, "peft_config"):  # what load_run(merge=True) does, on the run just loaded
        merged = merge_peft(run.model, run.meta)
        assert not hasattr(merged, "peft_config")
        np.testing.assert_allclose(outputs(merged, cfg, rows=rows)[0], want, atol=1e-5)


@pytest.mark.parametrize("family", ALL)
def test_exact_trainable_sets_per_family(family):
    base, blocks, biased, outside, heads = layout(family)
    qv = QV.get(family, QV["bert"])
    # peft keeps a trainable copy of each top-level head module: top.modules_to_save.default.rest
    peft_head = {f"base_model.model.{n.split('.', 1)[0]}.modules_to_save.default.{n.split('.', 1)[1]}" for n in heads}
    lora = built(family, "lora")
    assert trainable(lora) == peft_head | {f"base_model.model.{b}.{m}.lora_{ab}.default.weight"
                                           for b in blocks for m in qv for ab in "AB"}
    if family != "modernbert":
        bitfit = built(family, "bitfit")
        assert trainable(bitfit) == heads | {f"{b}.{m}.bias" for b in blocks for m in biased} | {
            f"{base}.{m}.bias" for m in outside}
        subset = built(family, "bitfit_subset")  # query and FFN input: the 1st and 6th biased module of a block
        assert trainable(subset) == heads | {f"{b}.{biased[i]}.bias" for b in blocks for i in (0, 5)}
    houlsby = built(family, "adapter_houlsby")
    where = ADAPTERS.get(family, ADAPTERS["bert"])
    assert trainable(houlsby) == heads | {f"{b}.{w}.adapter.{d}.{p}".replace("..", ".") for b in blocks
                                          for w in where for d in ("down", "up") for p in ("weight", "bias")}
    norms = [m for m in biased if "LayerNorm" in m or m.endswith("layer_norm")] or ["attn_norm", "mlp_norm"]
    ln = built(family, "ln_tuning")
    if family == "modernbert":  # pre-norm, no biases; the first block's attn_norm is an Identity
        assert trainable(ln) == heads | {"model.embeddings.norm.weight", "model.final_norm.weight",
                                         "model.layers.0.mlp_norm.weight", "model.layers.1.attn_norm.weight",
                                         "model.layers.1.mlp_norm.weight"}
    else:
        assert trainable(ln) == heads | {f"{b}.{m}.{p}" for b in blocks for m in norms for p in ("weight", "bias")} | {
            f"{base}.{m}.{p}" for m in outside if "LayerNorm" in m for p in ("weight", "bias")}
    if family != "deberta-v2":
        prefix = built(family, "prefix")
        assert trainable(prefix) == {"prefix.embedding.weight"} | {f"model.{n}" for n in heads}
        assert prefix.prefix().shape == (len(blocks), 2, 20, 32)


@pytest.mark.parametrize("family", [f for f in ALL if f != "deberta-v2"])
def test_prefix_changes_the_output_and_padding_does_not_leak(family):
    model = built(family, "prefix", "seq_cls", 2, "method.num_virtual_tokens=3")
    model.eval()
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 14, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    plain = built(family, "ln_tuning").eval()  # the same seeded base, its forward untouched
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        assert not torch.allclose(logits, plain(input_ids=ids, attention_mask=mask).logits, atol=1e-4)
    short = model(input_ids=ids[1:, :3], attention_mask=mask[1:, :3]).logits
    torch.testing.assert_close(short, logits[1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ALL)
def test_regression_head_num_labels_1(family):
    model = built(family, "lora", "seq_cls", 1)
    ids = torch.randint(5, 60, (3, 7))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0.5, -1.0, 2.0]))
    assert out.logits.numel() == 3 and torch.isfinite(out.loss)  # DeBERTa hands back its regression logits flat
    expected = torch.nn.functional.mse_loss(out.logits.reshape(3), torch.tensor([0.5, -1.0, 2.0]))
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("family", ALL)
def test_qa_run_per_family_reloads_exactly(tmp_path, family):
    d = tmp_path / "squad"
    d.mkdir()
    for name in squad.FILES.values():
        (d / name).write_text(json.dumps(squad_json()))
    cfg, trained = train_run(tmp_path / "run", d, family, "task=squad", "method=lora", f"task.data_dir={d}",
                             "task.max_length=64", "task.doc_stride=24")
    keys = ("start_logits", "end_logits")
    loaded = load_run(tmp_path / "run").model
    for a, b in zip(outputs(loaded, cfg, keys), outputs(trained, cfg, keys)):
        assert np.array_equal(a, b)


def test_tokenizer_feeds_token_types_only_to_families_that_take_them():
    for family in ALL:
        enc = load_tokenizer(tiny(family).model)("ab", "cd")
        assert ("token_type_ids" in enc) == FAMILIES[family].token_types, family


def test_unknown_tiny_family_and_unknown_roles_are_one_line_errors():
    with pytest.raises(UserError, match=re.escape("model.tiny.model_type='gpt2' is unknown: use bert, roberta")):
        load_model(tiny("gpt2").model, "seq_cls")
    with pytest.raises(UserError, match=re.escape("method.target_roles has unknown item(s) ['q']: use query, key")):
        built("distilbert", "lora", "seq_cls", 2, "method.target_roles=[q]")
    with pytest.raises(UserError, match=r"cannot handle model 'tiny' \(distilbert, tiny random distilbert\).*q_proj"):
        built("distilbert", "lora", "seq_cls", 2, "method.target_modules=[q_proj]")


PRESETS = {"bert_base": "bert-base-uncased", "roberta_base": "roberta-base", "xlm_roberta_base": "xlm-roberta-base",
           "distilbert_base": "distilbert-base-uncased", "electra_base": "electra-base-discriminator",
           "deberta_v3_base": "deberta-v3-base", "modernbert_base": "ModernBERT-base", "albert_base": "albert-base-v2"}


def by_hand(preset: str) -> dict[str, int | str]:
    """The main rows of `peftbench params model=PRESET`, from the shipped config's numbers and each family's layout
    (as test_methods.by_hand does for bert-base): r 8, 20 virtual tokens, adapters hidden/16, a 2-label head."""
    c = json.loads((Path(__file__).parents[1] / "src/peftbench/model_configs" / f"{PRESETS[preset]}.json").read_text())
    kind = c["model_type"]
    h, f = c.get("hidden_size", c.get("dim")), c.get("intermediate_size", c.get("hidden_dim"))
    layers = 1 if kind == "albert" else c.get("num_hidden_layers", c.get("n_layers"))  # ALBERT: one shared layer
    emb = c.get("embedding_size", h)
    cls = 2 * h + 2
    # + a dense layer before the classifier (h*h + h bias; ModernBERT: no bias, but its head norm's h weights)
    head = cls if kind in ("bert", "albert") else h * h + h + cls
    r, k, w = 8, 20, h // 16
    qv = 2 * r * (h + h) if kind != "modernbert" else r * (h + 3 * h)  # ModernBERT: LoRA on the fused Wqkv
    rows = {"lora": layers * qv + head, "prefix": k * layers * 2 * h + head, "prompt": k * emb + head,
            "adapter_houlsby": layers * 2 * (h * w + w + w * h + h) + head}
    if kind == "modernbert":  # no biases; LayerNorm weights only: embeddings, final, 2 per block but block 0's first
        rows.update(bitfit="refused", ln_tuning=(2 + 2 * layers - 1) * h + head, adapter_pfeiffer="refused")
        return rows
    block = 4 * h + h + f + h + h  # q, k, v, attention out; its LayerNorm; FFN in, out; its LayerNorm
    # the embeddings' LayerNorm; + the pooler (BERT), pooler and embedding mapping (ALBERT), relative-position LN
    outside = emb + {"bert": h, "albert": h + h, "deberta-v2": h}.get(kind, 0)
    norms = 2 * layers * 2 * h + 2 * emb + (2 * h if kind == "deberta-v2" else 0)
    rows.update(bitfit=layers * block + outside + head, ln_tuning=norms + head)
    if kind == "deberta-v2":
        rows["prefix"] = "refused"
    return rows


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_counts_follow_from_their_configs(preset):
    from peftbench.models.params import count, row

    for method, want in by_hand(preset).items():
        if want == "refused":
            assert "use " in row([f"model={preset}"], method)["refused"]
        else:
            assert count([f"model={preset}", f"method={method}"])["trainable"] == want, method


# The encoders' published sizes (AutoModel, no head: what `model.num_parameters()` gives for each hub checkpoint,
# e.g. roberta-base 125M, deberta-v3-base 184M with its 128k-token embeddings, ModernBERT-base 149M): a shipped
# config with one field off (a vocab, a width, a layer count) builds a different number.
PUBLISHED = {"bert_base": 109_482_240, "roberta_base": 124_645_632, "xlm_roberta_base": 278_043_648,
             "distilbert_base": 66_362_880, "electra_base": 108_891_648, "deberta_v3_base": 183_831_552,
             "modernbert_base": 149_014_272, "albert_base": 11_683_584}


@pytest.mark.parametrize("preset", PUBLISHED)
def test_shipped_configs_build_the_published_model_sizes(preset):
    import torch
    from transformers import AutoConfig, AutoModel

    name = PRESETS[preset]
    config = AutoConfig.from_pretrained(Path(__file__).parents[1] / "src/peftbench/model_configs" / f"{name}.json")
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[preset]


def test_the_loop_takes_a_methods_optimizer_groups_and_calls_its_step_hook(tmp_path, data, monkeypatch):
    """LoRA+'s groups reach the optimizer, AdaLoRA's hook runs after each step: the loop never names either."""
    from peftbench.models.methods import adalora

    seen = {"lrs": None, "steps": []}
    adamw, hook = torch.optim.AdamW, adalora.step_hook

    def spy_optimizer(groups, **kw):
        seen["lrs"] = sorted({g.get("lr", kw["lr"]) for g in groups})  # a group without its own: the default
        return adamw(groups, **kw)

    def spy_hook(model, cfg, total):
        call = hook(model, cfg, total)
        return lambda step: seen["steps"].append((step, total)) or call(step)

    monkeypatch.setattr(torch.optim, "AdamW", spy_optimizer)
    monkeypatch.setattr(adalora, "step_hook", spy_hook)
    train_run(tmp_path / "plus", data, "bert", "method=loraplus")  # lr=1e-2, B at 16x
    assert seen["lrs"] == [pytest.approx(1e-2), pytest.approx(16e-2)]
    train_run(tmp_path / "ada", data, "bert", "method=adalora")
    assert seen["steps"] == [(1, 2), (2, 2)]
    lora = train_run(tmp_path / "lora", data, "bert", "method=lora")
    assert lora and seen["lrs"] == [pytest.approx(1e-2)]  # the loop's own groups, one rate
