"""The knob table (peftbench/schema.py): every key of every shipped config is declared, the declared choices are the
code's own, and each kind of spec refuses what it should with the message it should."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import OmegaConf
from transformers import AutoConfig

from peftbench.config import schema
from peftbench.config.compose import CONFIG_DIR, group_options, load_config
from peftbench.errors import UserError
from peftbench.models.families import SUPPORTED
from peftbench.models.methods import bitfit
from peftbench.models.load import check_encoder, max_positions

DECLARED_ONLY = {"method.text_positions"}  # prompt.py's option no shipped config sets: +method.text_positions=keep


def shipped_keys() -> set[str]:
    keys: set[str] = set()

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            if k == "defaults":
                continue
            keys.add(prefix + k)
            if isinstance(v, dict):
                walk(v, prefix + k + ".")

    walk(yaml.safe_load((CONFIG_DIR / "train.yaml").read_text()), "")
    for group in ("model", "method", "task"):
        for path in (CONFIG_DIR / group).glob("*.yaml"):
            walk(yaml.safe_load(path.read_text()) or {}, group + ".")
    return keys


def test_every_shipped_key_is_declared_and_every_declared_key_is_shipped():
    keys = shipped_keys()
    assert sorted(keys - set(schema.SCHEMA)) == []
    assert sorted(set(schema.SCHEMA) - keys - {"model", "method", "task"}) == sorted(DECLARED_ONLY)


def test_declared_choices_are_the_codes_own():
    assert sorted(schema.FAMILY_TYPES) == SUPPORTED
    assert schema.BLOCK_ROLES == list(bitfit.BLOCK_ROLES)
    assert set(schema.BIAS_ROLES) == set(bitfit.ROLES) | set(bitfit.ALIASES)
    assert sorted(schema.SCHEMA["task.kind"]["choices"]) == sorted(
        {yaml.safe_load(p.read_text())["kind"] for p in (CONFIG_DIR / "task").glob("*.yaml")})


@pytest.mark.parametrize("group", ["model", "method", "task"])
def test_every_shipped_option_passes_its_own_schema(group):
    for option in group_options(group):
        load_config([f"{group}={option}", "data_dir=null"])  # raises on any key outside its spec


@pytest.mark.parametrize("key,value,message", [
    ("epochs", 2, None),
    ("epochs", 0, "epochs=0 must be > 0"),
    ("epochs", True, "epochs=True is not a whole number"),
    ("seed", 2**32, "seed=4294967296 is out of range: give a whole number >= 0 and <= 4294967295"),
    ("lr", None, None),
    ("lr", "fast", "lr='fast' is not a number: give a number > 0 (or null)"),
    ("warmup_ratio", 0, None),
    ("warmup_ratio", 1.5, "warmup_ratio=1.5 is out of range: give a number >= 0 and <= 1"),
    ("method.dropout", 1.0, "method.dropout=1.0 is out of range: give a number >= 0 and < 1"),
    ("compile", "yes", "compile='yes' is not true or false"),
    ("device", "tpu", "device='tpu' is unknown: use auto, cpu, cuda"),
    ("device", None, "device=null is not allowed: give one of auto, cpu, cuda"),
    ("pad_multiple", "auto", None),
    ("pad_multiple", 0, "pad_multiple=0 must be >= 1"),
    ("pad_multiple", "big", "pad_multiple='big' is not a whole number"),
    ("out", 12, "out=12 is not a string"),
    ("method.biases", "all", None),
    ("method.biases", ["query", "layernorm"], None),  # an old role name still reads
    ("method.biases", [], None),  # the head-only control
    ("method.biases", [], None),  # the head-only control
    ("method.biases", "some", "method.biases='some' is unknown: use all, or a list from query"),
    ("method.biases", ["query", "qkv"], "method.biases has unknown item(s) ['qkv']: use query, key"),
    ("method.target_roles", [], "method.target_roles=[] is empty: give a list from query"),
    ("method.target_modules", "encoder.*query", None),  # a regex
    ("method.target_modules", None, None),
    ("task.labels", [], None),  # a regression's
    ("task.text_fields", [], "task.text_fields=[] is empty"),
    ("task.text_fields", "sentence", "task.text_fields='sentence' is not a list"),
])
def test_each_kind_of_spec(key, value, message):
    node = OmegaConf.create({"v": value}).v if isinstance(value, list) else value
    if message is None:
        schema.check_value(key, node, schema.SCHEMA[key])
    else:
        with pytest.raises(UserError) as e:
            schema.check_value(key, node, schema.SCHEMA[key])
        assert str(e.value).startswith(message), str(e.value)


def test_an_unknown_or_removed_key_is_refused():
    with pytest.raises(UserError, match=r"unknown key\(s\) \['colour'\]"):
        load_config(["+colour=red"])
    plain = OmegaConf.to_container(load_config(["data_dir=null"]))
    del plain["seed"]
    with pytest.raises(UserError, match="config: seed is missing"):
        schema.check(OmegaConf.create(plain))
    load_config(["model=tiny", "+model.tiny.vocab_size=99"])  # model.tiny is open: keys go to the tiny config


def test_max_positions_by_position_scheme():
    assert max_positions(AutoConfig.for_model("bert", max_position_embeddings=512)) == 512
    assert max_positions(AutoConfig.for_model("roberta", max_position_embeddings=514, pad_token_id=1)) == 512
    assert max_positions(AutoConfig.for_model("deberta-v2", position_biased_input=False)) is None
    assert max_positions(AutoConfig.for_model("bert", position_embedding_type="relative_key")) is None


@pytest.mark.parametrize("model_type,why", [("gpt2", "a decoder-only language model"),
                                            ("t5", "an encoder-decoder model"),
                                            ("bert", None), ("mpnet", None)])  # mpnet: an encoder, no role table
def test_check_encoder_names_the_architecture(model_type, why):
    model = OmegaConf.create({"name": "mine", "name_or_path": "/models/x"})
    config = AutoConfig.for_model(model_type)
    if why is None:
        check_encoder(model, config)
        return
    with pytest.raises(UserError) as e:
        check_encoder(model, config)
    assert str(e.value).startswith(f"model 'mine' (/models/x) is {type(config).__name__} (model_type {model_type}), "
                                   f"{why}: peftbench fine-tunes encoders (albert, bert,")
