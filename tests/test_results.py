"""The committed study results (results/): each run sits where its preset's plan puts it, completed, and still
has the identity today's config gives it, so `peftbench study PRESET` skips it instead of training it again."""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

import pytest
import torch

from peftbench.config.compose import load_config
from peftbench.engine import device
from peftbench.record import IDENTITY_VERSION, identity, read_record
from peftbench.studies.grid import load_study, plan

RESULTS = Path(__file__).resolve().parents[1] / "results"
PRESETS = ["all_minilm", "glue_minilm", "prompt_minilm", "prompt_residual_minilm", "scaling_minilm",
           "methods2026_minilm", "protocol_minilm", "protocol_minilm_dev", "headline_minilm"]  # out under results/


@pytest.fixture(autouse=True)
def _on_a_cpu(monkeypatch):
    """The committed studies ran on CPUs: their runs are completed where `device=auto` resolves to the CPU. On a GPU
    machine the same study trains them again there (fp16 or bf16 on CUDA is another experiment)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@cache
def plans() -> dict[str, dict[Path, list[str]]]:
    """Each preset's runs: folder -> overrides."""
    out = {}
    with contextlib.chdir(RESULTS.parent):  # protocol_minilm's plan is read off its completed runs, by relative paths
        for name in PRESETS:
            study = load_study(name)
            assert Path(study.out).parts[0] == "results", f"{name}: out={study.out} is not under results/"
            out[name] = {RESULTS.parent / folder: over for folder, over in plan(study)}
    return out


def planned() -> dict[Path, list[str]]:
    return {folder: over for runs in plans().values() for folder, over in runs.items()}


COMMITTED = sorted(RESULTS.rglob("result.json"))
pytestmark = pytest.mark.xdist_group("committed-plans")  # plans() is planned once per worker: keep it to one


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_presets_write_under_results() -> None:
    p = plans()
    # all_minilm's runs of the reference methods at glue_minilm's rates are glue_minilm runs: one folder, one config
    shared = p["all_minilm"].keys() & p["glue_minilm"].keys()
    assert len(shared) == (5 + 1 + 1) * 2 * 2  # (MiniLM rates + BitFit 1e-3 + prompt 3e-3) x tasks x seeds 1-2
    assert all(p["all_minilm"][f][1:] == p["glue_minilm"][f][1:] for f in shared)  # [0] is the W&B group
    # methods2026_minilm: 17 methods + a 2nd rate; protocol_minilm: as many as its completed runs imply;
    # protocol_minilm_dev: its 4 trials x 7 methods x 3 tasks at seed 1
    assert len(p["protocol_minilm_dev"]) == 4 * 7 * 3
    assert len(planned()) == 90 + 64 - len(shared) + 6 + 18 + 16 + 18 + len(p["protocol_minilm"]) + 4 * 7 * 3 + \
        len(p["headline_minilm"])


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_the_committed_protocol_study_is_complete() -> None:
    """Every run protocol_minilm's plan names is committed: its 5 tasks x 7 methods x 4 trials, then each method's
    final seeds, 3 or 4 (seeds=auto, stopped by the group-sequential verdicts)."""
    runs = plans()["protocol_minilm"]
    assert sum(f.parts[-3] == "select" for f in runs) == 5 * 7 * 4
    finals = [f for f in runs if f.parts[-2] == "final"]
    assert 5 * 7 * 3 <= len(finals) <= 5 * 7 * 4
    assert [f for f in runs if not (f / "result.json").is_file()] == []
    assert [f for f in plans()["protocol_minilm_dev"] if not (f / "result.json").is_file()] == []


@pytest.mark.skipif(not COMMITTED, reason="no committed results")
@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_the_headline_study_is_complete_and_full_ft_learns_every_task_the_readme_shows() -> None:
    """headline_minilm (the README's headline): its 3 tasks x 5 methods x 4 trials, then each method's final seeds,
    3 or 4, all committed. The README's table shows exactly the tasks where full FT clearly learned (the report's
    rule: the whole 95% interval of its mean above the trivial prediction): SST-2 and STS-B, not MRPC at 250 steps."""
    import re

    from peftbench.reports.versus import learned_clearly

    runs = plans()["headline_minilm"]
    assert sum(f.parts[-3] == "select" for f in runs) == 3 * 5 * 4
    finals = [f for f in runs if f.parts[-2] == "final"]
    assert 3 * 5 * 3 <= len(finals) <= 3 * 5 * 4
    assert [f for f in runs if not (f / "result.json").is_file()] == []
    clear = set()
    for task in ("sst2", "stsb", "mrpc"):
        recs = [read_record(f / "result.json") for f in finals if f.parts[-4:-2] == (task, "full")]
        if learned_clearly(recs, recs[0]["primary_metric"]):
            clear.add(task)
    headline = (RESULTS.parent / "README.md").read_text().split("## The headline result")[1].split("\n## ")[0]
    header = next(line for line in headline.splitlines() if line.startswith("| method | trainable %"))
    names = {"SST-2": "sst2", "STS-B": "stsb", "MRPC": "mrpc", "CoLA": "cola", "RTE": "rte"}
    shown = {names[m] for m in re.findall(r"\| (SST-2|STS-B|MRPC|CoLA|RTE) ", header)}
    assert clear == shown == {"sst2", "stsb"}


@pytest.mark.skipif(not COMMITTED, reason="no committed results")
@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
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
        elif rec.get("identity_version") != IDENTITY_VERSION:
            wrong.append(f"{folder}: identity version {rec.get('identity_version', 1)}: python -m peftbench.record migrate")
        elif rec["identity"] != identity(cfg, device.runtime(cfg)):
            wrong.append(f"{folder}: today's config differs from the committed run's (a default changed?)")
        elif not (folder / "train.log").is_file():
            wrong.append(f"{folder}: no train.log")
    assert not wrong, "\n".join(wrong)


def test_every_method_of_2025_26_learns_the_sst2_slice() -> None:
    """methods2026_minilm: each new method's best committed run beats SST-2's majority class (50.92) by 10 points."""
    from peftbench.config.compose import group_options

    best: dict[str, float] = {}
    for path in (RESULTS / "methods2026_minilm").rglob("result.json"):
        rec = read_record(path)
        best[rec["config"]["method"]["name"]] = max(best.get(rec["config"]["method"]["name"], 0),
                                                    rec["metrics"]["accuracy"])
    study = load_study("methods2026_minilm")
    assert sorted(best) == sorted(study.methods) and set(study.methods) <= set(group_options("method"))
    assert {m: acc for m, acc in best.items() if acc < 50.92 + 10} == {}


@pytest.mark.integration
@pytest.mark.parametrize("preset,runs", [("prompt_minilm", 6), ("protocol_minilm_dev", 4 * 7 * 3)])
def test_a_clone_trains_nothing(shared_data, capsys, preset, runs) -> None:
    """`peftbench study PRESET --dry-run` in a clone: every committed run is completed, none to run."""
    from peftbench.cli import main

    with contextlib.chdir(RESULTS.parent):
        assert main(["study", preset, f"data_dir={shared_data}", "--dry-run"]) == 0
    assert f"{runs} runs, 0 to run, {runs} completed" in capsys.readouterr().out
