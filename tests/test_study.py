"""Studies: the run plan, size dropping, skip-if-completed on a second invocation, a failing run that does not stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peftbench.cli import main
from peftbench.errors import UserError
from peftbench.study import load_study, plan, pool_sizes

TINY = ["model=tiny", "max_steps=2", "train_size=12", "tracking.mode=disabled", "eval_batch_size=32"]


def test_plan_defaults_and_layout(tmp_path):
    glue = plan(load_study("glue", [f"out={tmp_path}", "model=tiny"]))
    assert len(glue) == 15
    folder, over = glue[0]
    assert folder == tmp_path / "sst2" / "full" / "seed42"
    assert over == ["model=tiny", "task=sst2", "method=full", "seed=42", f"out={folder}"]
    assert [f.relative_to(tmp_path).parts[:2] for f, _ in glue[:5]] == [
        ("sst2", m) for m in ["full", "bitfit", "bitfit_subset", "lora", "prompt"]]
    scaling = load_study("scaling", ["out=s", "seeds=[1,2]", "sizes=[500,all]", "max_steps=5"])
    runs = plan(scaling)
    assert [str(f) for f, _ in runs[:4]] == ["s/squad/full/500/seed1", "s/squad/full/500/seed2",
                                             "s/squad/full/all/seed1", "s/squad/full/all/seed2"]
    assert runs[0][1] == ["schedule=steps", "max_steps=5", "task=squad", "method=full", "seed=1", "train_size=500",
                          "out=s/squad/full/500/seed1"]
    assert runs[2][1][-2] == "train_size=null"
    # Sizes above a task's pool are left out; 'all' stays.
    assert [str(f) for f, _ in plan(load_study("scaling", ["sizes=[10,500,all]", "methods=[bitfit]", "out=s"]),
                                    {"squad": 100})] == ["s/squad/bitfit/10/seed42", "s/squad/bitfit/all/seed42"]


def test_sizes_above_the_glue_pool_are_dropped(glue_dir, capsys):
    study = load_study("glue", ["tasks=[rte]", "methods=[bitfit]", "sizes=[8,100,all]", f"data_dir={glue_dir}"])
    assert pool_sizes(study) == {"rte": 24}
    assert "rte has 24 training examples; sizes [100] dropped ('all' = 24)" in capsys.readouterr().out
    assert [f.parts[-2] for f, _ in plan(study, {"rte": 24})] == ["8", "all"]


@pytest.mark.parametrize("args,message", [
    (["method=lora"], "write methods=[...] instead"),
    (["methods=[full,nope]"], "unknown method ['nope']"),
    (["seeds=[x]"], "is not an integer"),
    (["sizes=[0]"], "not a positive integer"),
    (["sizes=[10]", "train_size=5"], "train_size and sizes both given"),
    (["notkeyvalue"], "is not key=value"),
])
def test_bad_study_input(args, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study("glue", args)


def test_unknown_study_and_bad_run_key_are_one_line(tmp_path, capsys):
    assert main(["study", "nope"]) == 2
    assert main(["study", "glue", f"out={tmp_path}", "model=tiny", "not_a_key=1"]) == 2  # composed before any run
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown study 'nope'" in err[0] and "not_a_key" in err[1]
    assert not list(tmp_path.iterdir())


def test_tiny_study_runs_then_skips(tmp_path, glue_dir, capsys):
    args = ["study", "glue", "methods=[full,bitfit]", "tasks=[sst2,rte]", f"data_dir={glue_dir}", f"out={tmp_path}/s",
            *TINY]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 ran, 0 skipped, 0 failed" in out
    results = sorted(tmp_path.glob("s/*/*/seed42/result.json"))
    assert [p.parent.relative_to(tmp_path / "s").as_posix() for p in results] == [
        "rte/bitfit/seed42", "rte/full/seed42", "sst2/bitfit/seed42", "sst2/full/seed42"]
    before = {p: p.read_text() for p in results}
    assert all(json.loads(t)["status"] == "completed" for t in before.values())
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 ran, 4 skipped, 0 failed" in out and out.count("skipped, completed") == 4
    assert {p: p.read_text() for p in results} == before  # nothing was rewritten
    # A changed run key changes the identity: the runs go again.
    assert main(args[:-1] + ["eval_batch_size=16", "lr=1e-3", "methods=[bitfit]", "tasks=[rte]"]) == 0
    assert "config changed" in capsys.readouterr().out


def test_a_failing_run_does_not_stop_the_study(tmp_path, glue_dir, capsys):
    dev = glue_dir / "glue" / "MRPC" / "dev.tsv"
    good = dev.read_text(encoding="utf-8")
    dev.write_text(good.replace("\n1\t", "\n7\t", 1), encoding="utf-8")  # an unknown label: mrpc's run fails
    args = ["study", "glue", "methods=[bitfit]", "tasks=[mrpc,rte]", f"data_dir={glue_dir}", f"out={tmp_path}", *TINY]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "[1/2] mrpc/bitfit/seed42: FAILED" in out and "label '7' is not one of" in out
    assert "1 ran, 0 skipped, 1 failed" in out
    assert json.loads((tmp_path / "mrpc/bitfit/seed42/result.json").read_text())["status"] == "failed"
    assert json.loads((tmp_path / "rte/bitfit/seed42/result.json").read_text())["status"] == "completed"
    dev.write_text(good, encoding="utf-8")  # fixed: the failed run goes again, the completed one is skipped
    assert main(args) == 0
    assert "1 ran, 1 skipped, 0 failed" in capsys.readouterr().out
