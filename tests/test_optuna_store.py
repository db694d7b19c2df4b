"""A trials=N study keeps its Optuna study in OUT/optuna.db (Optuna's RDB storage), rewritten from result.json."""

from __future__ import annotations

import pytest

import json

import optuna

from peftbench.cli import main
from peftbench.studies.search import storage_url


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_trials_study_opens_with_optuna_load_study(tmp_path, glue_dir, capsys):
    out = tmp_path / "study"
    # a peft config field drawn too: r=8 is LoRA's default, which the run's canonical config leaves out
    args = ["study", "glue", "tasks=[rte]", "methods=[peft]", "trials=3", "seeds=[1]", "model=tiny", "max_steps=1",
            "space.peft.method.config.r=choice(4,8)", "eval_batch_size=32", "tracking.mode=disabled",
            f"data_dir={glue_dir}", f"out={out}"]
    assert main(args) == 0
    assert optuna.get_all_study_names(storage_url(out)) == ["rte/peft"]
    study = optuna.load_study(study_name="rte/peft", storage=storage_url(out))
    trials = sorted(study.trials, key=lambda t: t.user_attrs["trial"])
    assert [t.user_attrs["trial"] for t in trials] == [0, 1, 2] and study.user_attrs["metric"] == "accuracy"
    for t in trials:
        rec = json.loads((out / "rte" / "peft" / f"t{t.user_attrs['trial']}" / "seed1" / "result.json").read_text())
        assert t.state == optuna.trial.TrialState.COMPLETE and t.value == rec["metrics"]["accuracy"]
        assert t.params == {"lr": rec["config"]["lr"], "method.config.r": rec["config"]["method"]["config"].get("r", 8)}
        assert t.user_attrs["identity"] == rec["identity"]
    assert {t.params["method.config.r"] for t in trials} == {4, 8}  # the seeded draws hold both
    (out / "rte" / "peft" / "t1" / "seed1" / "result.json").unlink()  # the records are the truth: a rerun mirrors
    assert main(args) == 0                                               # them again (t1 trains again)
    assert len(optuna.load_study(study_name="rte/peft", storage=storage_url(out)).trials) == 3
