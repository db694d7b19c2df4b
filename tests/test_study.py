"""Studies: the run plan, size dropping, skip-if-completed on a second invocation, a failing run that does not stop."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from peftbench.cli import main
from peftbench.errors import UserError
from peftbench.studies.grid import load_study, plan, pool_sizes

TINY = ["model=tiny", "max_steps=2", "train_size=12", "tracking.mode=disabled", "eval_batch_size=32"]


def test_plan_defaults_and_layout(tmp_path):
    glue = plan(load_study("glue", [f"out={tmp_path}", "model=tiny"]))
    assert len(glue) == 15
    folder, over = glue[0]
    assert folder == tmp_path / "sst2" / "full" / "seed42"
    assert over == [f"tracking.group={tmp_path.name}", "model=tiny", "task=sst2", "method=full", "seed=42", f"out={folder}"]
    assert [f.relative_to(tmp_path).parts[:2] for f, _ in glue[:5]] == [
        ("sst2", m) for m in ["full", "bitfit", "bitfit_subset", "lora", "prompt"]]
    scaling = load_study("scaling", ["out=s", "seeds=[1,2]", "sizes=[500,all]", "max_steps=5"])
    runs = plan(scaling)
    assert [str(f) for f, _ in runs[:4]] == ["s/squad/full/500/seed1", "s/squad/full/500/seed2",
                                             "s/squad/full/all/seed1", "s/squad/full/all/seed2"]
    assert runs[0][1] == ["tracking.group=s", "schedule=steps", "max_steps=5", "task=squad", "method=full", "seed=1", "train_size=500",
                          "out=s/squad/full/500/seed1"]
    assert runs[2][1][-2] == "train_size=null"
    # Sizes above a task's pool are left out; 'all' stays.
    assert [str(f) for f, _ in plan(load_study("scaling", ["sizes=[10,500,all]", "methods=[bitfit]", "out=s"]),
                                    {"squad": 100})] == ["s/squad/bitfit/10/seed42", "s/squad/bitfit/all/seed42"]


def test_methods_all_is_every_method_config(tmp_path):
    from peftbench.config.compose import group_options

    runs = plan(load_study("glue", ["methods=all", "tasks=[rte]", f"out={tmp_path}"]))
    methods = [f.parts[-2] for f, _ in runs]
    assert methods[0] == "full" and sorted(methods) == sorted(group_options("method")) and len(methods) >= 13
    assert {"ia3", "dora", "vera", "lora_all", "ln_tuning", "adapter_houlsby", "adapter_pfeiffer", "prefix"} <= set(methods)
    assert [f.parts[-2] for f, _ in plan(load_study("glue", ["methods=[prefix,ia3]", f"out={tmp_path}"]))][:2] == [
        "prefix", "ia3"]


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


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
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


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
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


def squad_file(path: Path, n: int) -> None:
    """A SQuAD v1.1 JSON with n questions, each answer a word of its context at the right offset."""
    qas = []
    context = "The cat sat on the mat. Dogs bark at night."
    for i in range(n):
        word = ["cat", "mat", "Dogs", "night"][i % 4]
        qas.append({"id": f"q{i}", "question": f"where is {word} {i}?",
                    "answers": [{"text": word, "answer_start": context.index(word)}]})
    doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    path.write_text(json.dumps(doc))


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_tiny_scaling_study_and_its_report(tmp_path, capsys):
    data = tmp_path / "squad"
    data.mkdir()
    squad_file(data / "train-v1.1.json", 8)
    squad_file(data / "dev-v1.1.json", 4)
    args = ["study", "scaling", "model=tiny", f"task.data_dir={data}", f"out={tmp_path}/s", "sizes=[4,100,all]",
            "max_steps=1", "tracking.mode=disabled"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "sizes [100] dropped ('all' = 8)" in out and "4 ran, 0 skipped, 0 failed" in out
    rec = json.loads((tmp_path / "s/squad/bitfit/all/seed42/result.json").read_text())
    assert rec["train_examples"] == 8 and rec["train_steps"] == 1 and rec["schedule"] == "steps"
    assert main(["report", f"{tmp_path}/s", "--out", f"{tmp_path}/r"]) == 0
    md = (tmp_path / "r/report.md").read_text()
    assert "| train size | full F1 | bitfit F1 |" in md and "| all (8) |" in md
    assert (tmp_path / "r/part2_results.png").stat().st_size > 10_000


@pytest.mark.integration
def test_minilm_study_on_real_mrpc(tmp_path, shared_data, capsys):
    from peftbench.reports.baselines import baseline

    args = ["study", "glue", "model=minilm_l6", f"data_dir={shared_data}", "methods=[bitfit]", "tasks=[mrpc]",
            "max_steps=2", "train_size=32", "tracking.mode=disabled", f"out={tmp_path}/s"]
    assert main(args) == 0
    rec = json.loads((tmp_path / "s/mrpc/bitfit/seed42/result.json").read_text())
    assert rec["status"] == "completed" and rec["eval_examples"] == 408 and rec["train_examples"] == 32
    # The real MRPC dev set has 279 positives of 408: predicting "equivalent" everywhere scores F1 558/687 = 81.22.
    assert baseline(rec) == pytest.approx(100 * 558 / 687)
    assert main(args) == 0 and "0 ran, 1 skipped, 0 failed" in capsys.readouterr().out
    assert main(["report", f"{tmp_path}/s", "--out", f"{tmp_path}/r"]) == 0
    assert "| bitfit | " in (tmp_path / "r/report.md").read_text()


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, glue_dir, capsys):
    args = ["study", "glue", "methods=[bitfit]", "tasks=[rte]", f"data_dir={glue_dir}", f"out={tmp_path}", *TINY]
    assert main(args) == 0
    folder = tmp_path / "rte/bitfit/seed42"
    rec = json.loads((folder / "result.json").read_text())
    (folder / "result.json").write_text(json.dumps({**rec, "status": "running"}))  # as a kill leaves it
    (folder / "checkpoint.pt").write_bytes(b"not a checkpoint")  # proves the study asked train to resume
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "resuming from" in out and "checkpoint" in out.split("FAILED")[1] and "1 failed" in out


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_dry_run_lists_the_runs_and_writes_nothing(tmp_path, glue_dir, capsys):
    assert main(["study", "glue", "--dry-run", "seeds=[1,2]", "model=tiny", f"data_dir={glue_dir}", f"out={tmp_path}/s"]) == 0
    out = capsys.readouterr().out
    assert "[30/30] rte/prompt/seed2: to run" in out and "30 runs, 30 to run, 0 completed" in out
    assert not (tmp_path / "s").exists()
    args = ["study", "glue", "methods=[bitfit]", "tasks=[rte]", f"data_dir={glue_dir}", f"out={tmp_path}/s", *TINY]
    assert main(args) == 0 and main([*args, "--dry-run", "seeds=[42,43]"]) == 0
    out = capsys.readouterr().out
    assert "rte/bitfit/seed42: completed" in out and "2 runs, 1 to run, 1 completed" in out


def test_lr_grid_times_seeds_plans_one_run_each(tmp_path):
    preset = tmp_path / "grid.yaml"
    preset.write_text("methods: [full, bitfit, lora]\ntasks: [rte]\nseeds: [1, 2]\nsizes: null\nout: g\nrun: []\n"
                      "lrs: {full: [1e-4, 2e-5, 1e-4], bitfit: [5e-3, 1e-3]}\n")  # lora: no grid -> its own 2e-4
    runs = plan(load_study(str(preset), ["model=tiny"]))
    assert [str(f) for f, _ in runs] == [
        "g/rte/full/lr2e-05/seed1", "g/rte/full/lr2e-05/seed2", "g/rte/full/lr0.0001/seed1", "g/rte/full/lr0.0001/seed2",
        "g/rte/bitfit/lr0.001/seed1", "g/rte/bitfit/lr0.001/seed2", "g/rte/bitfit/lr0.005/seed1",
        "g/rte/bitfit/lr0.005/seed2", "g/rte/lora/lr0.0002/seed1", "g/rte/lora/lr0.0002/seed2"]
    assert runs[0][1] == ["tracking.group=g", "model=tiny", "task=rte", "method=full", "seed=1", "lr=2e-05",
                          "out=g/rte/full/lr2e-05/seed1"]
    # One list on the command line replaces the preset's grids for every method; lrs.METHOD changes one grid.
    assert len(plan(load_study(str(preset), ["lrs=[1e-3,1e-2,3e-3]"]))) == 3 * 3 * 2
    runs = plan(load_study(str(preset), ["lrs.lora=[1e-3]", "seeds=[7]"]))
    assert [str(f) for f, _ in runs][-1] == "g/rte/lora/lr0.001/seed7" and len(runs) == 2 + 2 + 1
    # Sizes and rates together: <size>/lr<rate>/seed<seed>.
    runs = plan(load_study("scaling", ["out=s", "sizes=[500]", "lrs=[1e-3]", "seeds=[1]"]))
    assert [str(f) for f, _ in runs] == ["s/squad/full/500/lr0.001/seed1", "s/squad/bitfit/500/lr0.001/seed1"]


@pytest.mark.parametrize("args,message", [
    (["lrs=[x]"], "is not a list of positive rates"),
    (["lrs=[0]"], "is not a list of positive rates"),
    (["lrs.nope=[1e-3]"], "lrs: unknown method ['nope']"),
    (["lrs=[1e-3]", "lr=1e-3"], "lr and lrs both given"),
    (["lrs=[1e-3]", "lrs.lora=[1e-3]"], "lrs=[...] already gave every method one grid"),
])
def test_bad_lr_grids(args, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_study("glue", args)


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_tiny_lr_study_records_the_rate_and_the_report_picks_one(tmp_path, glue_dir, capsys):
    args = ["study", "glue", "methods=[bitfit]", "tasks=[rte]", "lrs=[1e-3,1e-2]", f"data_dir={glue_dir}",
            f"out={tmp_path}/s", *TINY]
    assert main(args) == 0 and "2 ran, 0 skipped, 0 failed" in capsys.readouterr().out
    recs = {p.parent.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("s/rte/bitfit/*/seed42/result.json")}
    assert {k: r["lr"] for k, r in recs.items()} == {"lr0.001": 1e-3, "lr0.01": 1e-2}
    assert main(["report", f"{tmp_path}/s", "--out", f"{tmp_path}/r"]) == 0
    md = (tmp_path / "r/report.md").read_text()
    assert "### Learning-rate grid" in md and "| bitfit | 0.001 |" in md and "| bitfit | 0.01 |" in md
    assert "| bitfit | rte | 0.0005 | not run |" in md  # bitfit's own rate was not in this grid


def test_resume_true_on_a_study_resumes_only_where_there_is_a_checkpoint(tmp_path, glue_dir, capsys):
    # `train resume=true` into a fresh folder is an error (nothing to resume); a study decides per folder
    args = ["study", "glue", "methods=[bitfit]", "tasks=[rte]", f"data_dir={glue_dir}", f"out={tmp_path}",
            "resume=true", *TINY]
    assert main(args) == 0
    assert "1 ran, 0 skipped, 0 failed" in capsys.readouterr().out
    assert json.loads((tmp_path / "rte/bitfit/seed42/result.json").read_text())["status"] == "completed"
