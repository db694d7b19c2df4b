"""Any encoder by its folder: the role table derived from a model's modules (models/roles.py) equals families.py's
hand-written one on every family's tiny model; with its family entry removed, each tiny model saved as a plain folder
trains LoRA and BitFit; model.roles overrides a role; and a model whose blocks cannot be found is one line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from torch import nn

from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.models import families
from peftbench.models.families import FAMILIES, family_of, role_regex
from peftbench.models.load import load_model, tiny_tokenizer
from peftbench.models.roles import derive

KINDS = sorted(FAMILIES)
# where the derived table differs from the hand-written one, and why that is the same model:
SAME_MODEL = {"deberta-v2": {"attention": "attention.self"},  # families.py refuses prefix tuning here on purpose
              "modernbert": {"attention_point": "attn.Wo"}}  # its out_drop is an Identity at dropout 0


def tiny(kind: str) -> nn.Module:
    cfg = load_config(["model=tiny", f"model.tiny.model_type={kind}", "task=sst2"])
    return load_model(cfg.model, "seq_cls", 2)


@pytest.mark.parametrize("kind", KINDS)
def test_derived_roles_equal_the_hand_written_table(kind):
    blocks, roles, pooler, lacks = derive(tiny(kind))
    family = FAMILIES[kind]
    assert blocks == family.blocks
    assert roles == {**family.roles, **SAME_MODEL.get(kind, {})}
    assert ("bias" in lacks) == ("bias" in family.lacks) and ("post_norm" in lacks) == ("post_norm" in family.lacks)


@pytest.mark.parametrize("kind", KINDS)
def test_a_tiny_model_trains_lora_and_bitfit_by_folder_alone(kind, tmp_path, monkeypatch, glue_dir, capsys):
    folder = tmp_path / f"tiny-{kind}"
    tiny(kind).save_pretrained(folder)
    tiny_tokenizer(FAMILIES[kind].token_types).save_pretrained(folder)
    monkeypatch.delitem(families.FAMILIES, kind)  # no family entry: the roles come from the modules
    for method in ("lora", "bitfit"):
        out = tmp_path / method
        code = main(["train", "model=bert_base", f"model.name_or_path={folder}", "model.config_file=null",
                     "task=sst2", f"data_dir={glue_dir}", f"method={method}", "max_steps=2", "tracking.mode=disabled",
                     "forgetting=false", f"out={out}"])
        if kind == "modernbert" and method == "bitfit":  # no bias terms at all: refused, as with its preset
            assert code == 2 and "no bias terms" in capsys.readouterr().err
            continue
        assert code == 0
        rec = json.loads((out / "result.json").read_text())
        assert rec["status"] == "completed"
        if method == "lora":  # rank-8 A and B on query and value of each of the 2 blocks (+ the head)
            names = json.loads((out / "delta.json").read_text())["tensors"]
            # ModernBERT: one fused Wqkv per block; ALBERT: one block shared by both layers
            assert sum("lora_A" in n for n in names) == (2 if kind in ("modernbert", "albert") else 4)


def test_model_roles_override_a_role(tmp_path):
    cfg = load_config(["model=tiny", "task=sst2", "model.roles.query=attention.self.key"])
    model = load_model(cfg.model, "seq_cls", 2)
    assert family_of(model).roles["query"] == "attention.self.key"
    assert role_regex(model, ["query", "value"], "x") == \
        r"(?:.*\.)?encoder\.layer\.\d+\.(?:attention\.self\.key|attention\.self\.value)"
    cfg = load_config(["model=tiny", "task=sst2"])  # without: the family's own
    assert family_of(load_model(cfg.model, "seq_cls", 2)).roles["query"] == "attention.self.query"


def test_no_blocks_found_is_one_line_naming_what_to_set():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(model_type="odd", hidden_size=4)
            self.proj = nn.Linear(4, 4)

    with pytest.raises(LookupError, match=r"model_type 'odd' has no role table .* set model\.roles\.blocks=REGEX"):
        family_of(Odd())
    from omegaconf import OmegaConf

    from peftbench.errors import UserError
    from peftbench.models.methods import apply_method

    lora = load_config(["method=lora"]).method
    with pytest.raises(UserError) as e:
        apply_method(Odd(), lora, "my_model")
    assert "method 'lora' cannot handle model 'my_model'" in str(e.value) and "\n" not in str(e.value)
    assert OmegaConf.is_config(lora)


def test_a_role_not_found_names_its_key(monkeypatch):
    model = tiny("bert")
    for layer in model.bert.encoder.layer:  # rename the query projection to something no rule knows
        layer.attention.self.zz = layer.attention.self.query
        del layer.attention.self.query
    monkeypatch.delitem(families.FAMILIES, "bert")
    with pytest.raises(LookupError, match=r"set model\.roles\.query=PATH relative to one block"):
        role_regex(model, ["query"], "x")
