"""`peftbench params`'s disk cache: a repeat is read back, and anything the table depends on changing is a miss."""

from __future__ import annotations

import pytest

from peftbench.models import paramcache
from peftbench.cli import main
from peftbench.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "params"


def counting(answer="| table |"):
    calls = []

    def compute(overrides):
        calls.append(list(overrides))
        return f"{answer} {' '.join(overrides)}"
    return compute, calls


def test_a_repeat_is_read_back_and_other_overrides_are_a_miss(cache):
    compute, calls = counting()
    assert paramcache.cached(["model=tiny"], compute) == "| table | model=tiny"
    assert paramcache.cached(["model=tiny"], compute) == "| table | model=tiny"
    assert paramcache.cached(["model=tiny", "method=lora"], compute) == "| table | model=tiny method=lora"
    assert calls == [["model=tiny"], ["model=tiny", "method=lora"]]
    assert len(list(cache.glob("*.md"))) == 2 and not list(cache.glob("*.tmp"))


def test_a_changed_package_file_is_a_miss(cache, tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    (package / "configs").mkdir(parents=True)
    (package / "configs" / "lora.yaml").write_text("r: 8\n")
    monkeypatch.setattr(paramcache, "PACKAGE", package)
    compute, calls = counting()
    paramcache.cached(["model=tiny"], compute)
    (package / "configs" / "lora.yaml").write_text("r: 16\n")
    paramcache.cached(["model=tiny"], compute)
    (package / "notes.txt").write_text("not code, not a config")  # not part of the key
    paramcache.cached(["model=tiny"], compute)
    assert len(calls) == 2


def test_files_folders_and_hub_ids_are_never_cached(cache, tmp_path):
    task = tmp_path / "my_task.yaml"
    task.write_text("name: mine\n")
    for overrides in (["model.name_or_path=org/model"], [f"task={task}"], ["task=classification", "task.train=x.csv"],
                      ["+model.tokenizer=bert-base-uncased"]):
        compute, calls = counting()
        paramcache.cached(overrides, compute)
        paramcache.cached(overrides, compute)
        assert len(calls) == 2, overrides
    assert not cache.exists()


def test_an_error_is_not_cached_and_off_turns_it_off(cache, monkeypatch):
    def refuse(overrides):
        raise UserError("model 'nosuch' is not a choice")
    with pytest.raises(UserError):
        paramcache.cached(["model=nosuch"], refuse)
    assert not cache.exists() or not list(cache.iterdir())
    monkeypatch.setenv("PEFTBENCH_CACHE", "off")
    compute, calls = counting()
    paramcache.cached(["model=tiny"], compute)
    paramcache.cached(["model=tiny"], compute)
    assert len(calls) == 2 and not cache.exists()


def test_the_command_prints_the_same_table_from_the_cache(cache, monkeypatch, capsys):
    assert main(["params", "model=tiny", "method=bitfit"]) == 0
    first = capsys.readouterr().out
    assert "| bitfit |" in first

    def never(overrides):
        raise AssertionError("computed again")
    monkeypatch.setattr("peftbench.models.params.params_table", never)
    assert main(["params", "model=tiny", "method=bitfit"]) == 0
    assert capsys.readouterr().out == first
