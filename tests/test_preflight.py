"""A study checks its model, every task's data and its folder before run 1, and names every problem at once."""

from __future__ import annotations

import json

import pytest

from peftbench.cli import main

TINY = ["model=tiny", "max_steps=1", "tracking.mode=disabled"]


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("peftbench: error: ") for line in err), err
    return [line[len("peftbench: error: "):] for line in err]


@pytest.mark.parametrize("dry", [False, True])
def test_every_problem_at_once_before_run_1(tmp_path, glue_dir, capsys, dry):
    (glue_dir / "glue/MRPC/dev.tsv").unlink()
    rte = glue_dir / "glue/RTE/train.tsv"
    rte.write_text(rte.read_text().replace("sentence2", "hypothesis", 1))
    (glue_dir / "glue/SST-2/train.tsv").write_bytes(b"sentence\tlabel\n\xff\xfe bad\t1\n")
    no_model = tmp_path / "no-model"
    no_model.mkdir()
    squad = tmp_path / "squad"  # SQuAD with no train file
    squad.mkdir()
    out = tmp_path / "s"
    args = ["study", "glue", "methods=[bitfit,lora]", "tasks=[sst2,mrpc,rte]", f"data_dir={glue_dir}", f"out={out}",
            *TINY, "train_size=20", "batch_size=8", "grad_accum=3", *(["--dry-run"] if dry else [])]
    assert main(args) == 2
    lines = error_lines(capsys)
    assert lines[0].startswith("task sst2: ") and "SST-2/train.tsv: not valid UTF-8" in lines[0]
    assert lines[1].startswith("task mrpc: data file ") and "MRPC/dev.tsv not found" in lines[1]
    assert "RTE/train.tsv:1: missing column(s) ['sentence2']" in lines[2]
    assert lines[3] == "batch_size=8 does not divide into grad_accum=3 micro-batches"
    assert lines[4] == "4 problems found before the first run; nothing ran" and len(lines) == 5
    assert not out.exists()  # nothing written, nothing ran

    # a model folder that is not one, a SQuAD folder without its train file, a train_size above the rows
    args = ["study", "scaling", "model=tiny", f"model.name_or_path={no_model}", "model.tiny=null",
            f"task.data_dir={squad}", f"out={out}", "max_steps=1", *(["--dry-run"] if dry else [])]
    assert main(args) == 2
    lines = error_lines(capsys)
    assert "has no config.json" in lines[0] and "SQuAD train file" in lines[1] and len(lines) == 3
    assert not out.exists()


def test_train_size_above_the_pool_and_an_unwritable_folder(tmp_path, glue_dir, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = ["study", "glue", "methods=[bitfit]", "tasks=[rte]", f"data_dir={glue_dir}", f"out={blocker}/s", *TINY,
            "train_size=25"]
    assert main(args) == 2
    assert error_lines(capsys) == ["task rte: train_size=25 is above its 24 training examples",
                                   f"cannot write the study folder {blocker}/s: pick another out=",
                                   "2 problems found before the first run; nothing ran"]


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_hub_data_that_cannot_be_reached_offline_is_named(tmp_path, capsys):
    assert main(["study", "glue", "--dry-run", "methods=[bitfit]", "tasks=[rte]", "model=tiny", "data_dir=null",
                 f"out={tmp_path}/s"]) == 2
    lines = error_lines(capsys)
    assert lines[0].startswith("task rte: the hub dataset nyu-mll/glue/rte cannot be resolved (")
    assert "peftbench data DIR" in lines[0] and len(lines) == 1


def test_a_good_study_passes_and_runs(tmp_path, glue_dir, capsys):
    args = ["study", "glue", "methods=[bitfit]", "tasks=[rte]", f"data_dir={glue_dir}", f"out={tmp_path}/s", *TINY]
    assert main([*args, "--dry-run"]) == 0 and main(args) == 0
    assert json.loads((tmp_path / "s/rte/bitfit/seed42/result.json").read_text())["status"] == "completed"
