"""Methods: exact trainable sets, exact bert-base counts, only trainable tensors change, prompt-tuning shapes."""

from __future__ import annotations

import pytest
import torch

from peftbench.config import group_options, load_config
from peftbench.methods import apply_method
from peftbench.models import load_model
from peftbench.params import count

BERT_BASE = {"full": 109_483_778, "bitfit": 104_450, "bitfit_subset": 47_618, "lora": 296_450, "prompt": 16_898}


def tiny(method: str, head: str = "seq_cls", **over):
    cfg = load_config(["model=tiny", f"method={method}"] + [f"{k}={v}" for k, v in over.items()])
    torch.manual_seed(0)
    return apply_method(load_model(cfg.model, head), cfg.method, "tiny"), cfg


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method,expected", BERT_BASE.items())
def test_bert_base_counts_match_the_seed(method, expected):
    assert count(["model=bert_base", f"method={method}"])["trainable"] == expected


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
    full, _ = tiny("full")
    assert trainable(full) == {n for n, _ in full.named_parameters()}


@pytest.mark.parametrize("method", group_options("method"))
def test_one_step_changes_exactly_the_trainable_tensors(method):
    model, _ = tiny(method)
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
