"""Methods: exact trainable sets, exact bert-base counts, only trainable tensors change, prompt-tuning shapes."""

from __future__ import annotations

import re

import pytest
import torch

from peftbench.config.compose import group_options, load_config
from peftbench.models.methods import apply_method
from peftbench.models.load import load_model
from peftbench.models.params import count

BERT_BASE = {"full": 109_483_778, "bitfit": 104_450, "bitfit_subset": 47_618, "lora": 296_450, "prompt": 16_898,
             "ia3": 56_834, "dora": 314_882, "vera": 26_114, "lora_all": 1_328_642, "ln_tuning": 39_938,
             "adapter_houlsby": 1_790_594, "adapter_pfeiffer": 896_066, "prefix": 370_178, "prompt_residual": 215_938,
             # the methods of 2025-26
             "adalora": 444_194, "lora_pissa": 296_450, "lora_olora": 296_450, "rslora": 296_450, "loraplus": 296_450,
             "oft": 287_234, "boft": 167_426, "hra": 148_994, "fourierft": 25_538, "loha": 591_362, "lokr": 27_650,
             "c3a": 222_722, "shira": 296_450, "road": 19_970, "miss": 296_450, "beft": 10_754}
NEW_2026 = ["adalora", "lora_pissa", "lora_olora", "rslora", "loraplus", "oft", "boft", "hra", "fourierft", "loha",
            "lokr", "c3a", "shira", "road", "miss", "beft"]
# the tiny models are 32 wide: settings whose shipped value needs a wider layer
TINY = {"c3a": {"method.peft_args.block_size": 16}, "road": {"method.peft_args.group_size": 16}}


def by_hand(method: str) -> int:
    """bert-base's trainable count for `method`, from the method's config and the architecture (12 blocks, hidden
    768, FFN 3072, a 2-label head 768 x 2 + 2): the other side of the pinned numbers above."""
    layers, h, ffn, head = 12, 768, 3072, 768 * 2 + 2
    c = load_config([f"method={method}"]).method
    if method in ("lora", "dora", "lora_all", "lora_pissa", "lora_olora", "rslora", "loraplus"):
        shapes = [(h, h)] * 2 if method != "lora_all" else [(h, h)] * 4 + [(h, ffn), (ffn, h)]  # (in, out)
        per = sum(c.r * (i + o) + (o if c.get("use_dora") else 0) for i, o in shapes)  # A, B (+ DoRA's magnitude)
        return layers * per + head
    if method == "ia3":
        return layers * (h + h + ffn) + head  # key out, value out, FFN inner activation
    if method == "vera":
        return layers * 2 * (c.r + h) + head  # d (r) and b (out) on query and value
    if method == "ln_tuning":
        return (1 + 2 * layers) * 2 * h + head  # embeddings' LayerNorm + two per block, weight and bias
    if method.startswith("adapter"):
        w = h // c.reduction_factor
        return layers * len(c.positions) * (h * w + w + w * h + h) + head
    if method == "prefix":
        return c.num_virtual_tokens * layers * 2 * h + head
    if method == "prompt_residual":  # the rows, W_down + bias, W_up + bias, the LayerNorm's weight and bias
        return c.num_virtual_tokens * h + (h * c.bottleneck + c.bottleneck) + (c.bottleneck * h + h) + 2 * h + head
    a = c.get("peft_args") or {}
    qv = 2 * layers  # the new methods sit on query and value (beft: value only), each h -> h
    if method == "adalora":  # P (init_r x in), Q (out x init_r), E (init_r): pruning zeroes E, it does not resize
        return qv * (c.init_r * (h + h) + c.init_r) + head
    if method == "oft":  # h / b blocks, each a skew-symmetric b x b matrix: its b(b-1)/2 free entries
        b = a["oft_block_size"]
        return qv * (h // b) * (b * (b - 1) // 2) + head
    if method == "boft":  # factors x (h / b) blocks of b x b, and a scale per output unit
        b = a["boft_block_size"]
        return qv * (a["boft_n_butterfly_factor"] * (h // b) * b * b + h) + head
    if method == "hra":  # r Householder vectors of the input width
        return qv * a["r"] * h + head
    if method == "fourierft":  # n spectral coefficients per layer
        return qv * a["n_frequency"] + head
    if method == "loha":  # two rank-r pairs (out x r, r x in)
        return qv * 2 * a["r"] * (h + h) + head
    if method == "lokr":  # 768 = 24 x 32: a full 24 x 24 factor and a rank-r 32 x 32 one (r x 32 + 32 x r)
        return qv * (24 * 24 + a["r"] * (32 + 32)) + head
    if method == "c3a":  # (h / b) x (h / b) kernels of b entries
        return qv * (h // a["block_size"]) ** 2 * a["block_size"] + head
    if method == "shira":  # r x (in + out) sparse entries: LoRA r's budget
        return qv * a["r"] * (h + h) + head
    if method == "road":  # road_1: an angle and a scale per output pair
        return qv * 2 * (h // 2) + head
    if method == "miss":  # one r x out shard
        return qv * a["r"] * h + head
    if method == "beft":  # a bias vector on each value projection
        return layers * h + head
    raise KeyError(method)


def tiny(method: str, head: str = "seq_cls", **over):
    cfg = load_config(["model=tiny", f"method={method}"] + [f"{k}={v}" for k, v in over.items()])
    torch.manual_seed(0)
    return apply_method(load_model(cfg.model, head), cfg.method, "tiny"), cfg


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method,expected", BERT_BASE.items())
def test_bert_base_counts_match_the_reference_studys_and_by_hand(method, expected):
    assert count(["model=bert_base", f"method={method}"])["trainable"] == expected


@pytest.mark.parametrize("method", ["ia3", "dora", "vera", "lora_all", "ln_tuning", "adapter_houlsby",
                                    "adapter_pfeiffer", "prefix", "prompt_residual", *NEW_2026])
def test_new_methods_counts_follow_from_their_configs(method):
    assert by_hand(method) == BERT_BASE[method]


def test_trainable_sets_on_tiny_bert():
    layers = range(2)
    head = {"classifier.weight", "classifier.bias"}
    bitfit, _ = tiny("bitfit")
    expected = head | {"bert.embeddings.LayerNorm.bias", "bert.pooler.dense.bias"} | {
        f"bert.encoder.layer.{i}.{m}.bias" for i in layers for m in
        ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
         "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"]}
    assert trainable(bitfit) == expected
    subset, _ = tiny("bitfit_subset")
    assert trainable(subset) == head | {f"bert.encoder.layer.{i}.{m}.bias" for i in layers
                                         for m in ["attention.self.query", "intermediate.dense"]}
    lora, _ = tiny("lora")
    assert trainable(lora) == {f"base_model.model.classifier.modules_to_save.default.{p}" for p in ("weight", "bias")} | {
        f"base_model.model.bert.encoder.layer.{i}.attention.self.{m}.lora_{ab}.default.weight"
        for i in layers for m in ("query", "value") for ab in "AB"}
    prompt, _ = tiny("prompt")
    assert trainable(prompt) == {"soft_prompt.weight"} | {f"model.{n}" for n in head}
    residual, _ = tiny("prompt_residual")
    assert trainable(residual) == {"soft_prompt.weight"} | {f"model.{n}" for n in head} | {
        f"reparam.mlp.{i}.{p}" for i in (0, 2, 3) for p in ("weight", "bias")}  # W_down, W_up, LayerNorm
    full, _ = tiny("full")
    assert trainable(full) == {n for n, _ in full.named_parameters()}


def test_trainable_sets_of_the_newer_methods_on_tiny_bert():
    layers = range(2)
    peft_head = {f"base_model.model.classifier.modules_to_save.default.{p}" for p in ("weight", "bias")}
    block = lambda i, rest: f"base_model.model.bert.encoder.layer.{i}.{rest}"  # noqa: E731
    ia3, _ = tiny("ia3")
    assert trainable(ia3) == peft_head | {block(i, f"{m}.ia3_l.default") for i in layers
                                          for m in ("attention.self.key", "attention.self.value", "output.dense")}
    assert [p.shape for n, p in ia3.named_parameters() if n.endswith("layer.0.output.dense.ia3_l.default")] == [(1, 64)]
    dora, _ = tiny("dora")
    assert trainable(dora) == peft_head | {block(i, f"attention.self.{m}.{p}.default.weight") for i in layers
                                           for m in ("query", "value")
                                           for p in ("lora_A", "lora_B", "lora_magnitude_vector")}
    vera, _ = tiny("vera")
    assert trainable(vera) == peft_head | {block(i, f"attention.self.{m}.vera_lambda_{v}.default") for i in layers
                                           for m in ("query", "value") for v in "bd"}
    every = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "intermediate.dense", "output.dense"]
    lora_all, _ = tiny("lora_all")
    assert trainable(lora_all) == peft_head | {block(i, f"{m}.lora_{ab}.default.weight") for i in layers
                                               for m in every for ab in "AB"}
    head = {"classifier.weight", "classifier.bias"}
    ln, _ = tiny("ln_tuning")
    assert trainable(ln) == head | {f"bert.embeddings.LayerNorm.{p}" for p in ("weight", "bias")} | {
        f"bert.encoder.layer.{i}.{m}.LayerNorm.{p}" for i in layers for m in ("attention.output", "output")
        for p in ("weight", "bias")}
    adapter = lambda i, where: {f"bert.encoder.layer.{i}.{where}.adapter.{d}.{p}"  # noqa: E731
                                for d in ("down", "up") for p in ("weight", "bias")}
    houlsby, _ = tiny("adapter_houlsby")
    both = ("attention.output", "output")
    assert trainable(houlsby) == head | set().union(*(adapter(i, w) for i in layers for w in both))
    assert houlsby.bert.encoder.layer[0].output.adapter.down.weight.shape == (32 // 16, 32)
    pfeiffer, _ = tiny("adapter_pfeiffer")
    assert trainable(pfeiffer) == head | set().union(*(adapter(i, "output") for i in layers))
    prefix, _ = tiny("prefix")
    assert trainable(prefix) == {"prefix.embedding.weight"} | {f"model.{n}" for n in head}
    assert prefix.prefix().shape == (2, 2, 20, 32)  # layers, key/value, tokens, hidden
    mlp, _ = tiny("prefix", **{"method.projection": 16, "method.num_virtual_tokens": 3})
    assert sum(p.numel() for n, p in mlp.named_parameters() if n.startswith("prefix.")) == (
        3 * 32 + 32 * 16 + 16 + 16 * (2 * 2 * 32) + 2 * 2 * 32)  # embeddings, Linear(32, 16), Linear(16, 128)
    assert mlp.prefix().shape == (2, 2, 3, 32)


@pytest.mark.parametrize("method", ["adapter_houlsby", "adapter_pfeiffer"])
def test_adapters_start_near_the_identity(method):
    plain, _ = tiny("ln_tuning")  # same seed, same base weights; LN tuning changes nothing until trained
    adapted, _ = tiny(method)
    plain.eval(), adapted.eval()
    ids = torch.randint(5, 60, (2, 9))
    a, b = plain(input_ids=ids).logits, adapted(input_ids=ids).logits
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=2e-2)


@pytest.mark.parametrize("method", ["adapter_houlsby", "adapter_pfeiffer"])
def test_adapter_placement_follows_the_adapters_library(method):
    """FFN output block, by hand: Houlsby LN(h + A(h) + r), Pfeiffer LN(h + A(LN(h + r)) + r) (SeqBnConfig)."""
    model, _ = tiny(method)
    model.eval()
    out = model.bert.encoder.layer[1].output
    with torch.no_grad():
        for p in out.adapter.parameters():
            p.normal_(0, 0.5)  # far from the identity start, so the two placements differ
    x, r = torch.randn(2, 5, 64), torch.randn(2, 5, 32)  # FFN inner (64 on the tiny model) and block input
    h = out.dense(x)
    adapter = lambda z: out.adapter.up(out.adapter.act(out.adapter.down(z)))  # noqa: E731
    ln = out.LayerNorm
    norm = lambda z: torch.nn.functional.layer_norm(z, ln.normalized_shape, ln.weight, ln.bias, ln.eps)  # noqa: E731
    inp = norm(h + r) if method == "adapter_pfeiffer" else h  # (the module itself carries the Pfeiffer hook)
    expected = norm(h + adapter(inp) + r)
    assert torch.allclose(out(x, r), expected, atol=1e-6)
    other = norm(h + adapter(h if method == "adapter_pfeiffer" else norm(h + r)) + r)
    assert not torch.allclose(out(x, r), other, atol=1e-3)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_prefix_attention_is_softmax_over_prefix_and_tokens(impl):
    model, _ = tiny("prefix", **{"method.num_virtual_tokens": 3})
    model.eval()
    model.model.config._attn_implementation = impl  # each layer reads the shared config at call time
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 14, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    seen = {}
    layer = model.model.bert.encoder.layer[1].attention.self
    layer.register_forward_hook(lambda m, args, kwargs, out: seen.update(x=args[0], out=out[0]), with_kwargs=True)
    logits = model(input_ids=ids, attention_mask=mask).logits
    a, x = layer, seen["x"]
    pk, pv = model.prefix()[1]  # layer 1: its keys and its values, (3, 32) each
    split = lambda t: t.view(2, -1, 2, 16).transpose(1, 2)  # noqa: E731  (batch, heads, n, 16)
    q = split(a.query(x))
    k = split(torch.cat([pk.expand(2, -1, -1), a.key(x)], 1))
    v = split(torch.cat([pv.expand(2, -1, -1), a.value(x)], 1))
    visible = torch.cat([torch.ones(2, 3), mask.float()], 1)[:, None, None, :]  # prefixes always visible
    scores = (q @ k.transpose(-1, -2)) / 4 + (1 - visible) * -1e9
    want = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 32)
    torch.testing.assert_close(seen["out"], want, atol=1e-5, rtol=1e-5)
    # padding does not leak: the padded row's logits equal those of the same row without its pads
    short = model(input_ids=ids[1:, :3], attention_mask=mask[1:, :3]).logits
    torch.testing.assert_close(short, logits[1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", group_options("method"))
def test_one_step_changes_exactly_the_trainable_tensors(method):
    # a 2-unit ReLU bottleneck (32 // 16) can be dead on the one token the head reads: use 8 units
    model, _ = tiny(method, **({"method.reduction_factor": 4} if method.startswith("adapter") else TINY.get(method, {})))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(5, 60, (4, 12))
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 0, 1])).loss
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable(model)


@pytest.mark.parametrize("position,at", [("before_cls", 0), ("after_cls", 1)])
def test_prompt_inserts_tokens_and_keeps_head_reading_its_position(position, at):
    model, cfg = tiny("prompt", **{"method.position": position, "method.num_virtual_tokens": 3})
    model.eval()
    seen = {}
    model.model.bert.encoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(h=kwargs.get("hidden_states", args[0] if args else None),
                                            mask=kwargs.get("attention_mask")), with_kwargs=True)
    ids = torch.tensor([[2, 10, 11, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    assert seen["h"].shape == (1, 8, 32)  # 5 tokens + 3 virtual
    # what the encoder's position `at` sees is [CLS] for after_cls and the first virtual token for before_cls
    words = model.model.get_input_embeddings()
    emb = model.model.bert.embeddings
    cls_row = emb(input_ids=ids[:, :1])[0, 0]
    first = seen["h"][0, 0]
    if position == "after_cls":
        assert torch.allclose(first, cls_row, atol=1e-5)
    else:
        assert not torch.allclose(first, cls_row, atol=1e-3)
    assert words.weight.requires_grad is False


@pytest.mark.parametrize("position,at", [("before_cls", 0), ("after_cls", 1)])
def test_prompt_keep_text_positions_gives_the_text_its_own_position_ids(position, at):
    seen = {}
    for text_positions in ("shift", "keep"):
        model, _ = tiny("prompt", **{"method.position": position, "method.num_virtual_tokens": 3,
                                     "+method.text_positions": text_positions})
        model.eval()
        model.model.bert.embeddings.register_forward_pre_hook(
            lambda m, args, kwargs, key=text_positions: seen.update({key: kwargs.get("position_ids")}), with_kwargs=True)
        model(input_ids=torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]]))
    assert seen["shift"] is None  # BERT numbers the whole sequence 0..L+k-1 itself
    text = [0, 1, 2, 3]
    want = text[:at] + [0, 0, 0] + text[at:]  # the virtual tokens at position 0, the text at 0..L-1
    assert seen["keep"].tolist() == [want, want]


def test_prompt_init_vocab_starts_from_rows_of_the_word_embeddings():
    model, _ = tiny("prompt", **{"method.init": "vocab", "method.num_virtual_tokens": 5})
    words = model.model.get_input_embeddings().weight
    for row in model.soft_prompt.weight:
        assert any(torch.equal(row, w) for w in words)
    normal, _ = tiny("prompt", **{"method.num_virtual_tokens": 5})
    assert not any(torch.equal(normal.soft_prompt.weight[0], w) for w in words)
    assert normal.soft_prompt.weight.std().item() == pytest.approx(0.02, abs=0.01)


def test_prompt_residual_feeds_rows_plus_layernormed_mlp_of_them():
    model, cfg = tiny("prompt_residual", **{"method.num_virtual_tokens": 3, "method.bottleneck": 5})
    rows = model.soft_prompt.weight
    down, up, norm = model.reparam.mlp[0], model.reparam.mlp[2], model.reparam.mlp[3]
    assert (down.weight.shape, up.weight.shape) == ((5, 32), (32, 5))
    by_hand = rows + torch.nn.functional.layer_norm(torch.relu(rows @ down.weight.T + down.bias) @ up.weight.T + up.bias,
                                                    (32,), norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(model.prompts(), by_hand)
    seen = {}
    model.model.bert.embeddings.register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(x=kwargs["inputs_embeds"]), with_kwargs=True)
    model(input_ids=torch.tensor([[2, 10, 3]]))
    torch.testing.assert_close(seen["x"][0, :3], by_hand)  # before_cls: the rows come first
    plain, _ = tiny("prompt")
    assert plain.reparam is None and torch.equal(plain.prompts(), plain.soft_prompt.weight)


def test_prompt_shifts_qa_labels_and_returns_original_length():
    model, _ = tiny("prompt", head="qa", **{"method.num_virtual_tokens": 4})
    ids = torch.randint(5, 60, (2, 9))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids),
                start_positions=torch.tensor([0, 5]), end_positions=torch.tensor([0, 7]))
    assert out.start_logits.shape == (2, 9) and out.end_logits.shape == (2, 9)
    assert torch.isfinite(out.loss)


def test_method_that_cannot_handle_a_model_says_so():
    from peftbench.errors import UserError

    model = load_model(load_config(["model=tiny"]).model, "seq_cls")
    cfg = load_config(["model=tiny", "method=lora", "method.target_modules=[q_proj]"]).method
    with pytest.raises(UserError, match="method 'lora' cannot handle model 'tiny'.*q_proj"):
        apply_method(model, cfg, "tiny")


@pytest.mark.parametrize("over,message", [
    (["method=adapter_houlsby", "method.positions=[attention,cross]"], "method 'adapter_houlsby': method.positions="),
    (["method=prefix", "method.projection=-1"], "method 'prefix': method.num_virtual_tokens must be >= 1 and method."),
    (["method=lora_all", "method.target_modules=nothing"], "no module path matches LoRA target_modules 'nothing'"),
    (["method=bitfit", "method.biases=[nope]"], "method 'bitfit': method.biases has unknown roles ['nope']"),
    (["method=prompt", "method.init=uniform"], "method 'prompt': method.init='uniform' is unknown; pick one of"),
    (["method=prompt_residual", "method.reparam=lstm"], "method 'prompt_residual': method.reparam='lstm' is unknown"),
    (["method=prompt_residual", "method.bottleneck=0"], "method 'prompt_residual': method.bottleneck=0 must be"),
    (["method=prompt", "+method.text_positions=kept"], "method 'prompt': method.text_positions='kept' is unknown"),
    (["method=lora_pissa", "method.init_lora_weights=svd"], "method 'lora_pissa': method.init_lora_weights='svd' is "
                                                           "unknown; pick one of ['gaussian', 'pissa', 'olora']"),
    (["method=oft", "method.peft_config=PromptTuningConfig"], "method 'oft': method.peft_config='PromptTuningConfig' "
                                                             "is not a peft tuner peftbench can place"),
    (["method=oft", "+method.peft_args.rank=4"], "method 'oft': method.peft_args: "),
    (["method=c3a"], "method 'c3a': The block size should be a factor of the input size"),  # 64 on a 32-wide model
    (["method=adalora", "method.tinit_ratio=0.5", "method.tfinal_ratio=0.5"], "method 'adalora': method.tinit_ratio "
                                                                             "+ method.tfinal_ratio must be below 1")])
def test_bad_method_settings_are_one_line_errors(over, message):
    from peftbench.errors import UserError

    from peftbench.models.params import method_config

    # the method's own checks, for a config that did not come through load_config (whose schema refuses these first:
    # tests/test_schema.py, tests/test_bad_input.py)
    model = load_model(load_config(["model=tiny"]).model, "seq_cls")
    with pytest.raises(UserError, match=re.escape(message)):
        apply_method(model, method_config(over), "tiny")


def test_prefix_compiles_to_the_same_logits_and_gradients():
    """torch.compile traces the per-forward prefix hand-off (PrefixModel sets each layer's kv): same numbers as eager.
    aot_eager runs dynamo and autograd tracing without inductor's C++ build, which the CPU test need not pay for."""
    model, _ = tiny("prefix", **{"method.num_virtual_tokens": 3, "method.projection": 8})
    model.eval()
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 14, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = torch.tensor([0, 1])
    grads = []
    for m in (model, torch.compile(model, backend="aot_eager", dynamic=False)):
        model.zero_grad()
        out = m(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        grads.append((out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    (a, ga), (b, gb) = grads
    assert torch.allclose(a, b, atol=1e-6) and ga.keys() == gb.keys()
    assert all(torch.allclose(ga[n], gb[n], atol=1e-6) for n in ga) and ga["prefix.embedding.weight"].abs().sum() > 0
    assert all(layer.kv is None for layer in model.layers)  # no graph kept alive after a compiled step either


def test_loraplus_gives_b_its_ratio_of_the_rate_and_other_methods_the_loops_groups():
    from peftbench.models.methods import param_groups

    model, cfg = tiny("loraplus")
    groups = param_groups(model, cfg.method, 1e-3, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr = {}
    for g in groups:
        by_lr.setdefault(g["lr"], set()).update(names[id(p)].removeprefix("base_model.model.") for p in g["params"])
    assert sorted(by_lr) == [1e-3, 16e-3]
    # peft's rule: lora_B and every 1-D tensor (the head's bias) at 16x; lora_A and the head's weight at the rate
    assert by_lr[16e-3] == {f"bert.encoder.layer.{i}.attention.self.{m}.lora_B.default.weight" for i in range(2)
                            for m in ("query", "value")} | {"classifier.modules_to_save.default.bias"}
    assert by_lr[1e-3] == {f"bert.encoder.layer.{i}.attention.self.{m}.lora_A.default.weight" for i in range(2)
                           for m in ("query", "value")} | {"classifier.modules_to_save.default.weight"}
    lora, cfg = tiny("lora")
    assert param_groups(lora, cfg.method, 1e-3, 0.01) is None  # the loop's own groups


def test_adalora_step_hook_sets_the_run_length_and_prunes_to_the_target_rank():
    from peftbench.models.methods import step_hook

    model, cfg = tiny("adalora", **{"method.delta_t": 1})
    hook = step_hook(model, cfg.method, 20)
    live = model.peft_config["default"]
    assert (live.total_step, live.tinit, live.tfinal) == (20, 2, 4)  # 10% and 20% of 20 steps
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(1)
    for step in range(1, 21):
        ids = torch.randint(5, 60, (4, 12))
        model(input_ids=ids, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
        opt.step()
        hook(step)
        opt.zero_grad()
    kept = sum(int((p != 0).sum()) for n, p in model.named_parameters() if "lora_E" in n)
    assert kept == 8 * 4  # the budget: target_r 8 on each of 4 modules (2 blocks x query, value), of 12 x 4
    plain, cfg = tiny("lora")
    assert step_hook(plain, cfg.method, 20)(1) is None  # every other method: a no-op


@pytest.mark.parametrize("method", ["lora_pissa", "lora_olora"])
def test_pissa_and_olora_start_where_the_base_is_with_the_frozen_weight_changed(method):
    plain, _ = tiny("ln_tuning")  # the same seeded base, its function untouched
    model, _ = tiny(method)
    plain.eval(), model.eval()
    ids = torch.randint(5, 60, (2, 9))
    torch.testing.assert_close(model(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    base = model.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer.weight
    assert not torch.allclose(base, plain.bert.encoder.layer[0].attention.self.query.weight, atol=1e-3)
