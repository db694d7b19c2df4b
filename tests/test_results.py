"""The committed study results (results/): each run sits where its preset's plan puts it, completed, and still
has the identity today's config gives it, so `peftbench study PRESET` skips it instead of training it again."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from peftbench.config import load_config
from peftbench.record import identity, read_record
from peftbench.study import load_study, plan

RESULTS = Path(__file__).resolve().parents[1] / "results"
PRESETS = ["all_minilm", "glue_minilm", "scaling_minilm"]  # the studies whose out is under results/


@cache
def planned() -> dict[Path, list[str]]:
    runs = {}
    for name in PRESETS:
        study = load_study(name)
        assert Path(study.out).parts[0] == "results", f"{name}: out={study.out} is not under results/"
        for folder, over in plan(study):
            runs.setdefault(RESULTS.parent / folder, over)
    return runs


COMMITTED = sorted(RESULTS.rglob("result.json"))


def test_presets_write_under_results() -> None:
    runs = planned()
    # all_minilm's five seed methods at their MiniLM rate, seeds 1-2, are glue_minilm runs: one folder, not two
    shared = [f for f in runs if "glue_minilm" in f.parts and f.parts[-3] in
              ("full", "bitfit", "bitfit_subset", "lora", "prompt") and f.parts[-1] in ("seed1", "seed2")]
    assert len(shared) == 2 * 5 * 3 * 2  # tasks x methods x rates x seeds 1-2
    assert len(runs) == 90 + 8 * 2 * 2 + 16  # glue_minilm + all_minilm's 8 other methods + scaling_minilm


@pytest.mark.skipif(not COMMITTED, reason="no committed results")
def test_committed_runs_are_planned_completed_runs() -> None:
    runs, wrong = planned(), []
    for path in COMMITTED:
        folder, rec = path.parent, read_record(path)
        if folder not in runs:
            wrong.append(f"{folder}: no run of {PRESETS}")
            continue
        cfg = load_config(runs[folder])
        if rec is None or rec["status"] != "completed":
            wrong.append(f"{folder}: not a completed result.json")
        elif (rec["run"]["task"], rec["run"]["method"], rec["run"]["seed"]) != (cfg.task.name, cfg.method.name, cfg.seed):
            wrong.append(f"{folder}: holds {rec['run']}")
        elif rec["identity"] != identity(cfg):
            wrong.append(f"{folder}: today's config differs from the committed run's (a default changed?)")
        elif not (folder / "train.log").is_file():
            wrong.append(f"{folder}: no train.log")
    assert not wrong, "\n".join(wrong)
