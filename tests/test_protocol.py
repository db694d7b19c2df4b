"""The holdout protocol's study flow: select=holdout (a holdout carved from train, never trained on; dev read only
by final runs, which train on the selection's rows), trials drawn by Optuna (reproducible), seeds=auto (each verdict
that stops it), resume re-plans identically, diverged runs as data, QA's holdout by article, data_seed apart from the
training seed, and every new key's one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peftbench.data import holdout
from peftbench.engine.device import runtime
from peftbench.studies import protocol, search
from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.errors import UserError
from peftbench.record import IDENTITY_VERSION, identity, read_record, write_json_atomic
from peftbench.studies.grid import load_study, plan
from peftbench.data.tasks import glue, squad

CPU = {"device": "cpu", "precision": "fp32"}
TINY = ["model=tiny", "max_steps=2", "tracking.mode=disabled", "eval_batch_size=32"]


# ---------------------------------------------------------------- the holdout split
def test_stratified_holdout_by_hand():
    labels = [0, 1, 0, 0, 1, 0] * 4  # 16 of class 0, 8 of class 1
    keep, held = holdout.split(24, 0.25, seed=0, labels=labels)
    # 6 rows: 6 * 16/24 = 4 of class 0, 6 * 8/24 = 2 of class 1
    assert np.bincount(np.array(labels)[held]).tolist() == [4, 2]
    assert sorted(keep.tolist() + held.tolist()) == list(range(24)) and not set(keep) & set(held)
    assert holdout.split(24, 6, seed=0, labels=labels)[1].tolist() == held.tolist()  # a count = the same fraction
    assert holdout.split(24, 0.25, seed=0, labels=labels)[1].tolist() == held.tolist()  # fixed by data_seed
    assert holdout.split(24, 0.25, seed=1, labels=labels)[1].tolist() != held.tolist()
    # regression: 10 held rows -> min(10, 10 // 2) = 5 quantile bins of 8 sorted rows, 2 held from each
    y = np.linspace(0, 5, 40)
    _, h = holdout.split(40, 0.25, seed=0, labels=y, regression=True)
    assert np.bincount(h // 8).tolist() == [2, 2, 2, 2, 2]
    assert holdout.ids_sha256([3, 1, 2]) == holdout.ids_sha256([1, 2, 3])


@pytest.mark.parametrize("spec,message", [
    (0, "holds out 0 of the 24"), (24, "holds out 24 of the 24"), (1.5, "neither a fraction"), ("x", "not a number")])
def test_bad_holdout_spec(spec, message):
    with pytest.raises(UserError, match=message):
        holdout.split(24, spec, 0)


def squad_articles(n_articles: int = 5) -> dict:
    data = []
    for a in range(n_articles):
        paragraphs = []
        for p in range(2):
            context = f"Article {a} paragraph {p} says the answer is blue{a}{p} today."
            qas = [{"id": f"a{a}p{p}q{q}", "question": f"What is the answer {q}?",
                    "answers": [{"text": f"blue{a}{p}", "answer_start": context.index(f"blue{a}{p}")}]} for q in range(2)]
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"T{a}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": data}


def test_qa_holdout_is_split_by_article(tmp_path):
    from peftbench.models.load import tiny_tokenizer

    d = tmp_path / "squad"
    d.mkdir()
    (d / squad.FILES["train"]).write_text(json.dumps(squad_articles()))
    (d / squad.FILES["dev"]).write_text("not read")  # eval_split=holdout never opens dev
    base = ["task=squad", "model=tiny", "task.max_length=64", "task.doc_stride=24", f"task.data_dir={d}",
            "holdout=0.25", "data_seed=3"]
    data = squad.load(load_config(base + ["eval_split=holdout"]), tiny_tokenizer())
    held, train = data.meta["holdout_ids"], data.meta["train_ids"]
    article = lambda qid: qid.split("p")[0]  # noqa: E731  (a0p1q0 -> a0)
    # 20 questions, 4 per article: 0.25 -> 5 questions -> 2 whole articles (8 questions)
    assert len(held) == 8 and len({article(q) for q in held}) == 2
    assert not {article(q) for q in held} & {article(q) for q in train} and len(train) == 12
    assert data.meta["ids"] == held and data.meta["holdout"]["size"] == 8
    assert data.meta["holdout"]["ids_sha256"] == holdout.ids_sha256(held)


# ---------------------------------------------------------------- end to end
@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_holdout_trials_auto_seeds_end_to_end(glue_dir, tmp_path, monkeypatch, capsys):
    """select=holdout trials=2 seeds=auto on the tiny model: no holdout row trains during selection, dev is read only
    by final runs, the final config is the holdout's best, every record names its protocol."""
    events, loads = [], []
    real_load, real_read = glue.load, glue.read_part

    def spy_load(cfg, tokenizer):
        events.append(("load", cfg.protocol.phase))
        data = real_load(cfg, tokenizer)
        loads.append((cfg.protocol.phase, cfg.protocol.config, data.meta["train_ids"].tolist(),
                      None if data.meta["holdout_ids"] is None else data.meta["holdout_ids"].tolist(), data.meta["holdout"]))
        return data

    def spy_read(cfg, stem, hub_split):
        events.append(("read", stem))
        return real_read(cfg, stem, hub_split)

    monkeypatch.setattr(glue, "load", spy_load)
    monkeypatch.setattr(glue, "read_part", spy_read)
    out = tmp_path / "s"
    args = ["study", "glue", "tasks=[rte]", "methods=[full,bitfit]", "select=holdout", "holdout=0.25", "trials=2",
            "seeds=auto", "min_seeds=2", "max_seeds=3", f"out={out}", f"data_dir={glue_dir}", "train_size=12", *TINY]
    assert main(args) == 0
    said = capsys.readouterr().out
    selects = [x for x in loads if x[0] == "select"]
    finals = [x for x in loads if x[0] == "final"]
    assert len(selects) == 4 and len(finals) >= 4
    for _, _, train_ids, held_ids, desc in selects:
        assert not set(train_ids) & set(held_ids) and len(held_ids) == 6 and len(train_ids) == 12
        assert desc == {"spec": 0.25, "size": 6, "ids_sha256": holdout.ids_sha256(held_ids)}
    assert len({tuple(x[3]) for x in selects}) == 1  # one slice for every config and method (data_seed fixed)
    # dev is read only after the last selection run's data was loaded, and only by final runs
    last_select = max(i for i, e in enumerate(events) if e == ("load", "select"))
    dev_reads = [i for i, e in enumerate(events) if e == ("read", "dev")]
    assert dev_reads and min(dev_reads) > last_select
    phase = None
    for e in events:
        phase = e[1] if e[0] == "load" else phase
        assert e != ("read", "dev") or phase == "final"
    # final_rows=selection (the default): final runs train on exactly the rows every selection run trained on
    assert {tuple(x[2]) for x in finals} == {tuple(x[2]) for x in selects} and len({tuple(x[2]) for x in finals}) == 1
    sel_holdout = selects[0][4]
    for method in ("full", "bitfit"):
        root = out / "rte" / method
        scores = [read_record(root / "select" / f"t{k}" / "seed0" / "result.json")["metrics"]["accuracy"]
                  for k in range(2)]
        rec = read_record(root / "final" / "seed1" / "result.json")
        assert rec["protocol"]["config"] == f"t{int(np.argmax(scores))}"  # argmax: the first of equals
        assert rec["protocol"]["picked_holdout_score"] == max(scores) and rec["eval_split"] == "dev"
        assert rec["holdout"] == sel_holdout and rec["train_examples"] == 12 and rec["eval_examples"] == 24
        assert rec["run"]["data_seed"] == rec["data_seed"] == 0 and rec["run"]["seed"] == 1
        sel = read_record(root / "select" / "t0" / "seed0" / "result.json")
        assert sel["eval_split"] == "holdout" and sel["protocol"]["phase"] == "select" and sel["run"]["seed"] == 0
        assert sel["protocol"]["sampler"] == "random" and sel["protocol"]["budget"] == 2
    assert "rte/bitfit: stops after" in said
    # a second invocation re-plans the same runs and trains nothing
    loads.clear()
    assert main(args) == 0
    assert loads == [] and "0 ran" in capsys.readouterr().out


# ---------------------------------------------------------------- seeds=auto, driven by controlled records
def fake_runs(study, score_of, rounds: int = 20) -> protocol.Plan:
    """Re-plan and 'complete' every planned run with score_of(phase, method, seed) until nothing new is planned."""
    for _ in range(rounds):
        now = protocol.plan(study)
        new = 0
        for folder, over in now.runs:
            if read_record(folder / "result.json"):
                continue
            cfg = protocol.compose(over)
            folder.mkdir(parents=True, exist_ok=True)
            value = score_of(cfg.protocol.phase, cfg.method.name, cfg.seed)
            write_json_atomic(folder / "result.json", {"schema": 1, "status": "completed", "identity": identity(cfg, runtime(cfg)),
                                                       "identity_version": IDENTITY_VERSION,
                                                       "primary_metric": "accuracy", "metrics": {"accuracy": value}})
            new += 1
        if not new:
            return now
    raise AssertionError("the plan never settled")


AUTO = ["tasks=[rte]", "methods=[full,bitfit,lora,prompt,ia3]", "select=holdout", "seeds=auto", "min_seeds=3",
        "max_seeds=6", "model=tiny", "lrs=[1e-3]"]


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_auto_seeds_stop_for_each_verdict(tmp_path):
    study = load_study("glue", [*AUTO, f"out={tmp_path}"])
    noise = {1: 0.0, 2: 4.0, 3: -4.0, 4: 3.0, 5: -3.0, 6: 1.0}

    def score_of(phase, method, seed):
        if phase == "select":
            return 50.0
        return {"full": 70.0,
                "bitfit": 80.0 + noise[seed] / 10,  # +10, sd 0.4: better at the first look
                "lora": 70.0 + (0.1 if seed % 2 else -0.1),  # ±0.1: non-inferior at margin 1 (at the 2nd look)
                "ia3": 60.0 + noise[seed] / 10,  # -10: inferior
                "prompt": 70.0 + noise[seed]}[method]  # wide and centred: unsettled at max_seeds

    final = fake_runs(study, score_of)
    assert final.stops == {"rte/bitfit": "rte/bitfit: stops after 3 seeds: settled: better than full FT",
                           "rte/lora": "rte/lora: stops after 4 seeds: settled: non-inferior (loses less than the "
                                       "margin)",
                           "rte/ia3": "rte/ia3: stops after 3 seeds: settled: inferior (loses more than the margin)",
                           "rte/prompt": "rte/prompt: stops after 6 seeds: unsettled at max_seeds: reported with its "
                                         "interval, not as a tie"}
    seeds = {}
    for folder, _ in final.runs:
        if folder.parts[-2] == "final":
            seeds.setdefault(folder.parts[-3], []).append(int(folder.name[4:]))
    assert seeds == {"full": [1, 2, 3, 4, 5, 6], "bitfit": [1, 2, 3], "lora": [1, 2, 3, 4], "ia3": [1, 2, 3],
                     "prompt": [1, 2, 3, 4, 5, 6]}
    # resume: a fresh plan (no cache) from the files alone is the same plan
    protocol._configs.clear()
    again = protocol.plan(load_study("glue", [*AUTO, f"out={tmp_path}"]))
    assert again.runs == final.runs and again.stops == final.stops and again.waiting == 0


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_diverged_runs_are_data_and_the_study_completes(glue_dir, tmp_path, capsys):
    """full FT's space forces divergence (lr 1e30..1e31): both its trials end `diverged` at the trivial score, one is
    picked, its final runs diverge too and are data; every method gets final runs, the report shows it, and EVP counts
    both diverged trials."""
    from peftbench.reports import write_report

    out = tmp_path / "s"
    args = ["study", "glue", "tasks=[rte]", "methods=[full,bitfit]", "select=holdout", "holdout=0.25", "trials=2",
            "space.full.lr=loguniform(1e30,1e31)", "seeds=[1,2]", f"out={out}", f"data_dir={glue_dir}",
            "train_size=12", "model=tiny", "epochs=3", "log_every=1", "tracking.mode=disabled"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "scored as the trivial prediction" in said and "0 failed" in said
    sel = [read_record(out / "rte/full/select" / f"t{k}/seed0/result.json") for k in range(2)]
    assert [r["status"] for r in sel] == ["diverged", "diverged"]
    assert all(f"at step {r['diverged_at_step']} " in r["error"] for r in sel)
    assert sel[0]["metrics"] == sel[1]["metrics"]  # the same trivial prediction on the same holdout
    finals = [read_record(out / "rte" / m / "final" / f"seed{s}/result.json") for m in ("full", "bitfit")
              for s in (1, 2)]
    assert [r["status"] for r in finals] == ["diverged", "diverged", "completed", "completed"]
    md = write_report([out], tmp_path / "rep").read_text()
    assert "(2 diverged)" in md  # full's cell: both of its final runs
    evp = md.split("## Expected Validation Performance")[1].split("##")[0]
    assert "| rte, 12 rows (accuracy) | full | 1 | 2 |" in evp and "(2 here)" in evp


def test_final_waits_for_selection_and_picks_the_first_best(tmp_path):
    study = load_study("glue", ["tasks=[rte]", "methods=[full]", "select=holdout", "seeds=[1,2]", f"out={tmp_path}",
                                "model=tiny", "lrs=[1e-4,2e-4,3e-4]"])
    first = protocol.plan(study)
    assert [str(f.relative_to(tmp_path)) for f, _ in first.runs] == [
        "rte/full/select/lr0.0001/seed0", "rte/full/select/lr0.0002/seed0", "rte/full/select/lr0.0003/seed0"]
    assert first.waiting == 1
    done = fake_runs(study, lambda phase, m, seed: 60.0 if phase == "final" else {0: 50.0}.get(seed, 50.0))
    finals = [(f, o) for f, o in done.runs if "final" in f.parts]
    assert [f.name for f, _ in finals] == ["seed1", "seed2"]
    assert "lr=0.0001" in finals[0][1]  # all three tie on the holdout: the first (lowest rate) wins


# ---------------------------------------------------------------- trials
def test_trials_are_reproducible_and_drawn_from_the_space(tmp_path):
    over = ["tasks=[rte]", "methods=[full,lora]", "trials=3", "seeds=[1]", f"out={tmp_path}", "model=tiny",
            "space.lora.lr=loguniform(1e-4,1e-3)", "space.lora.epochs=int(2,4)"]
    a, b = plan(load_study("glue", over)), plan(load_study("glue", over))
    assert a == b and [f.parts[-2] for f, _ in a] == ["t0", "t1", "t2"] * 2
    lora = [dict(o.split("=", 1) for o in over_ if o.split("=")[0] in ("lr", "epochs")) for f, over_ in a[3:]]
    assert all(1e-4 <= float(x["lr"]) <= 1e-3 and int(x["epochs"]) in (2, 3, 4) for x in lora)
    full = [float(dict(o.split("=", 1) for o in over_)["lr"]) for _, over_ in a[:3]]
    assert all(1e-5 <= x <= 2e-4 for x in full) and len(set(full)) == 3  # configs/spaces.yaml's full range
    d = search.space("lora", {"lora": {"epochs": "int(2,4)"}})
    seen = []
    tpe = search.draws("lora", d, 4, "tpe", lambda k, p: seen.append(k) or [1.0, 2.0][k] if k < 2 else None)
    assert len(tpe) == 3 and tpe == search.draws("lora", d, 4, "tpe", lambda k, p: [1.0, 2.0][k] if k < 2 else None)


def test_sizes_data_seed_is_apart_from_the_training_seed(glue_dir, tmp_path):
    study = load_study("glue", ["tasks=[rte]", "methods=[full]", "seeds=[1,2]", "sizes=[8]", "data_seeds=[0,5]",
                                f"out={tmp_path}", "model=tiny"])
    runs = plan(study)
    assert [str(f.relative_to(tmp_path)) for f, _ in runs] == [
        "rte/full/8/d0/seed1", "rte/full/8/d0/seed2", "rte/full/8/d5/seed1", "rte/full/8/d5/seed2"]
    assert "data_seed=5" in runs[2][1]
    tok = __import__("peftbench.models.load", fromlist=["load_tokenizer"]).load_tokenizer(load_config(["model=tiny"]).model)
    ids = {}
    for seed in (1, 2):
        for ds in (0, 5):
            cfg = load_config(["model=tiny", f"data_dir={glue_dir}", "task=rte", "train_size=8", f"seed={seed}",
                               f"data_seed={ds}"])
            ids[seed, ds] = glue.load(cfg, tok).meta["train_ids"].tolist()
    assert ids[1, 0] == ids[2, 0] and ids[1, 5] == ids[2, 5] and ids[1, 0] != ids[1, 5]
    # no data_seed: the training seed draws the subset, as before (committed runs keep their identity)
    old = load_config(["model=tiny", "task=rte", "train_size=8", "seed=3"])
    same = lambda over: identity(old, CPU) == identity(load_config(over), CPU)  # noqa: E731
    assert same(["model=tiny", "task=rte", "train_size=8", "seed=3", "data_seed=null"])
    assert not same(["model=tiny", "task=rte", "train_size=8", "seed=3", "data_seed=3"])
    plain = load_config(["model=tiny", "task=rte"])
    assert identity(plain, CPU) == identity(load_config(["model=tiny", "task=rte", "data_seed=7", "protocol={phase:final}"]),
                                            CPU)


# ---------------------------------------------------------------- one clear line per bad value
@pytest.mark.parametrize("args,message", [
    (["select=test"], "select='test' is unknown: use select=holdout"),
    (["holdout=1.5"], "holdout=1.5: give a fraction of train in (0,1)"),
    (["holdout=-3"], "holdout=-3: give a fraction"),
    (["data_seed=-1"], "data_seed=-1 is not a whole number >= 0"),
    (["data_seeds=[1,1]", "sizes=[8]"], "data_seeds=[1, 1]: give distinct whole numbers"),
    (["data_seeds=[1]"], "data_seeds repeats the subsample of each size: add sizes"),
    (["trials=0"], "trials=0 is not a whole number >= 1"),
    (["trials=2", "lrs=[1e-3]"], "trials and lrs both given"),
    (["trials=2", "space.lora.lr=loguniform(1e-3)"], "space.lora.lr='loguniform(1e-3)': loguniform takes two bounds"),
    (["trials=2", "space.lora.lr=gauss(1,2)"], "space.lora.lr='gauss(1,2)' is not a space; write loguniform(a,b)"),
    (["trials=2", "space.lora.lr=loguniform(0,1)"], "loguniform needs a low bound above 0"),
    (["trials=2", "space.lora.lr=uniform(3,1)"], "the low bound must be below the high one"),
    (["trials=2", "space.lora.epochs=int(1.5,3)"], "int takes whole-number bounds"),
    (["trials=2", "space.lora.r=choice(4,8)"], "space.lora.r: unknown key"),
    (["trials=2", "space.nope.lr=uniform(1,2)"], "space: unknown method ['nope']"),
    (["space.lora.lr=uniform(1,2)"], "space is given but trials is not"),
    (["trials=2", "sampler=grid"], "sampler='grid' is unknown"),
    (["trials=2", "sampler=tpe"], "sampler=tpe learns from the holdout scores of earlier trials: add select=holdout"),
    (["seeds=auto"], "seeds=auto adds final seeds after a selection phase: add select=holdout"),
    (["seeds=auto", "select=holdout", "methods=[lora]"], "seeds=auto compares every method with full"),
    (["min_seeds=1"], "min_seeds=1 is not a whole number >= 2"),
    (["max_seeds=2"], "max_seeds=2 is not a whole number >= min_seeds (3)"),
    (["ci_target=1"], "ci_target is gone: seeds=auto now stops a comparison when its verdict is settled"),
    (["margin=0"], "margin=0 must be > 0"),
    (["margin=x"], "margin='x' is not a number"),
    (["alpha=0.6"], "alpha=0.6 is out of range: give a number > 0 and <= 0.5"),
    (["final_rows=some"], "final_rows='some' is unknown: use selection, all"),
    (["select=holdout", "seeds=[0,1]"], "seeds: 0 is the selection runs' seed"),
    (["select=holdout", "eval_split=dev"], "set per run by a select=holdout study"),
])
def test_bad_protocol_keys(args, message):
    with pytest.raises(UserError) as e:
        load_study("glue", ["model=tiny", *args])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_run_keys_are_one_line():
    with pytest.raises(UserError, match="eval_split='test' is unknown: use dev, holdout"):
        load_config(["model=tiny", "eval_split=test"])
    with pytest.raises(UserError, match="holdout=0 must be > 0"):
        load_config(["model=tiny", "holdout=0"])


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_each_round_is_one_launcher_submission(glue_dir, tmp_path, monkeypatch):
    """parallel=N / launcher=...: the selection round, then each final round, goes to launch_study once."""
    from peftbench.studies import launch
    from peftbench.studies.runner import run_one

    rounds = []

    def fake_launch(study, name, configs, runs):
        rounds.append(sorted(str(f.relative_to(tmp_path / "s")) for f, _ in configs))
        for folder, cfg in configs:
            run_one(folder, cfg, str(folder))
        return 0

    monkeypatch.setattr(launch, "launch_study", fake_launch)
    args = ["study", "glue", "tasks=[rte]", "methods=[full,bitfit]", "select=holdout", "holdout=6", "lrs=[1e-3]",
            "seeds=[1,2]", "parallel=2", f"out={tmp_path / 's'}", f"data_dir={glue_dir}", *TINY]
    assert main(args) == 0
    assert rounds == [["rte/bitfit/select/lr0.001/seed0", "rte/full/select/lr0.001/seed0"],
                      ["rte/bitfit/final/seed1", "rte/bitfit/final/seed2", "rte/full/final/seed1", "rte/full/final/seed2"]]
    rounds.clear()
    assert main(args) == 0 and rounds == []  # resumed: everything completed, nothing submitted
