"""config/compose.py composes the group choices once and sets the value overrides on a copy, as Hydra does after
its own composition: the result and every error line must equal a whole Hydra compose's, override for override."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from peftbench.config import compose
from peftbench.errors import UserError

CASES = [
    [],
    ["method=lora", "task=rte", "lr=5e-4", "seed=3"],
    ["model=minilm_l6", "method=prompt", "task=stsb", "+method.text_positions=keep", "train_size=200"],
    ["method=lora", "method.r=4", "++method.alpha=32", "method.target_roles=[query,key,value]"],
    ["model=tiny", "method=peft", "method.config={peft_type:lora,r:4,target_modules:[value,query]}",
     "method.config.lora_dropout=0.2"],                                             # a peft config's own fields
    ["task=sst2", "method=bitfit", "~tracking.project"],                           # deletion of a value
    ["lr=1e-3", "method=adalora", "lr=2e-3"],                                      # the last value wins
    ["method=c3a", "method.peft_args.block_size=16", "out='runs/a b,c=d'"],       # quoted text stays text
]
BAD = [
    ["no_such_key=1"],
    ["method=lora", "method.nope=1"],
    ["+seed=1"],                                                                  # + on a set key
    ["lr=[1,"],
    ["~no.such.key"],
    ["method=lora", "lr=1e-3,2e-3"],                                              # a sweep: whole compose
    ["task={a:1}"],
]


def whole(overrides: list[str], monkeypatch) -> object:
    """The same call with every override through Hydra's own compose."""
    with monkeypatch.context() as m:
        m.setattr(compose, "_split", lambda _: None)
        try:
            return OmegaConf.to_container(compose.load_config(overrides))
        except UserError as e:
            return str(e)


def cached(overrides: list[str]) -> object:
    try:
        return OmegaConf.to_container(compose.load_config(overrides))
    except UserError as e:
        return str(e)


@pytest.mark.parametrize("overrides", CASES + BAD, ids=lambda o: " ".join(o) or "defaults")
def test_the_cached_compose_equals_hydras(overrides, monkeypatch):
    assert cached(overrides) == whole(overrides, monkeypatch)


def test_bad_overrides_are_one_line_each(monkeypatch):
    lines = [cached(o) for o in BAD]
    assert all(isinstance(x, str) and "\n" not in x for x in lines), lines


def test_a_returned_config_is_the_callers_own():
    """A caller that edits its config (a study sets the run's folder) leaves the next compose untouched."""
    a = compose.load_config(["method=lora"])
    a.lr = 123.0
    a.method.r = 99
    b = compose.load_config(["method=lora"])
    assert b.lr != 123.0 and b.method.r == 8


def test_groups_compose_once(monkeypatch):
    """Two runs that differ only in values compose the group choices once."""
    calls = []
    real = compose._hydra_compose
    monkeypatch.setattr(compose, "_hydra_compose", lambda *a, **k: calls.append(a) or real(*a, **k))
    compose._groups_composed.cache_clear()
    for seed in range(4):
        compose.load_config(["method=bitfit", "task=mrpc", f"seed={seed}"])
    assert len(calls) == 1
