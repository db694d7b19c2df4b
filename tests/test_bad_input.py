"""The catalog of bad inputs: every command (train, study, report, predict, evaluate, params, data) answers each with
exit code 2 and ONE line on stderr naming what is wrong, and nothing on disk is lost, changed or half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from peftbench.cli import main
from peftbench.engine.rundir import LOCK
from peftbench.data.tasks.squad import check_answers

CUDA = torch.cuda.is_available()  # the device cases hold where there is none (CI)
TINY = ["model=tiny", "max_steps=2", "tracking.mode=disabled", "eval_batch_size=32"]  # + task=rte method=bitfit


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace: GLUE fixture data, one completed run, a report, a SQuAD folder with bad answers, a locked folder."""
    from conftest import write_glue

    root = tmp_path_factory.mktemp("ws")
    write_glue(root / "data")
    assert main(["train", *TINY, "task=rte", "method=bitfit", f"data_dir={root / 'data'}", f"out={root / 'run'}"]) == 0
    assert main(["report", str(root / "run"), "--out", str(root / "report")]) == 0
    squad = root / "squad"
    squad.mkdir()
    ctx = "The cat sat on the mat."
    doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": [
        {"id": f"q{i}", "question": "where?", "answers": [{"text": "mat", "answer_start": 99}]} for i in range(3)]}]}]}
    (squad / "train-v1.1.json").write_text(json.dumps(doc))
    (squad / "dev-v1.1.json").write_text(json.dumps(doc))
    (root / "broken-squad").mkdir()
    (root / "broken-squad" / "train-v1.1.json").write_text('{"data": [')
    (root / "broken-squad" / "dev-v1.1.json").write_text('{"data": [')
    (root / "locked").mkdir()
    (root / "locked" / LOCK).write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid(),
                                                     "started_at": "now"}))
    (root / "inputs.jsonl").write_text('{"sentence1": "a"}\nnot json\n')
    # run folders another command must refuse to read: one training now, one stopped, one without its delta, one whose
    # record is torn; each a copy of the completed run with that one thing changed
    rec = json.loads((root / "run" / "result.json").read_text())
    for name, status, keep in [("running", "running", True), ("stopped", "failed", False),
                               ("nodelta", "completed", False), ("torn", "completed", True)]:
        (root / name).mkdir()
        for f in ("delta.safetensors", "delta.json") if keep else ():
            (root / name / f).write_bytes((root / "run" / f).read_bytes())
        (root / name / "result.json").write_text(json.dumps({**rec, "status": status, "error": "Interrupted: stopped "
                                                              "by signal 15 at step 1"} if status == "failed" else
                                                             {**rec, "status": status}))
    (root / "running" / LOCK).write_text((root / "locked" / LOCK).read_text())
    (root / "stopped" / "checkpoint.pt").write_bytes(b"state")
    (root / "torn" / "result.json").write_text('{"status": "comp')
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=99)).save_pretrained(root / "gpt2")
    BertModel(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(root / "no-tokenizer")  # weights, no tokenizer files
    (root / "empty").mkdir()
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# {ws}, {data} and {run} stand for the workspace, its GLUE data and its completed run
CASES = [
    # train: numbers
    (["train", *TINY, "seed=1.5"], "seed=1.5 is not a whole number"),
    (["train", *TINY, "seed=-1"], "seed=-1 is out of range"),
    (["train", *TINY, "train_size=10.5"], "train_size=10.5 is not a whole number"),
    (["train", *TINY, "batch_size=0"], "batch_size=0 must be > 0"),
    (["train", *TINY, "epochs=2.5"], "epochs=2.5 is not a whole number"),
    (["train", *TINY, "max_steps=abc"], "max_steps='abc' is not a whole number"),
    (["train", *TINY, "method=lora", "method.r=8.0"], "method.r=8.0 is not a whole number"),
    (["train", *TINY, "method=prompt", "method.num_virtual_tokens=2.5"], "method.num_virtual_tokens=2.5 is not"),
    (["train", *TINY, "lr=-1"], "lr=-1 must be > 0"),
    (["train", *TINY, "log_every=0"], "log_every=0 must be > 0"),
    (["train", *TINY, "eval_every=-5"], "eval_every=-5 must be >= 0"),
    (["train", *TINY, "precision=fp8"], "precision='fp8' is unknown"),
    # train: names, keys, files
    (["train", *TINY, "task=nope"], "unknown task 'nope'"),
    (["train", *TINY, "not_a_key=1"], "config: "),
    (["train", *TINY, "data_dir={ws}/nowhere"], "data file"),
    (["train", *TINY, "model.name_or_path=/no/such/model", "model.tiny=null"], "model folder /no/such/model does not"),
    (["train", *TINY, "train_size=25"], "train_size=25 is above the 24 training rows"),
    (["train", *TINY, "task=squad", "task.data_dir={ws}/squad"], "none of its 3 questions has an answer"),
    (["train", *TINY, "task=squad", "task.data_dir={ws}/broken-squad"], "not a SQuAD JSON file"),
    # train: the run folder belongs to one run
    (["train", *TINY, "out={ws}/run"], "holds a completed run"),
    (["train", *TINY, "out={ws}/run", "resume=true", "lr=0.5"], "holds a completed run"),
    (["train", *TINY, "out={ws}/locked", "overwrite=true"], "is in use by a running run: pid"),
    # train: every knob's type and range (schema.py), and nothing silent
    (["train", *TINY, "model.name_or_path={ws}/gpt2", "model.tiny=null"],
     "is GPT2Model (model_type gpt2), a decoder-only language model: peftbench fine-tunes encoders"),
    (["train", *TINY, "model.name_or_path={ws}/no-tokenizer", "model.tiny=null"], "has no tokenizer files"),
    (["train", *TINY, "compile=true", "compile_mode=nosuch"], "compile_mode='nosuch' is unknown: use default,"),
    *([] if CUDA else [(["train", *TINY, "device=cuda"], "device=cuda, but torch sees no CUDA GPU here")]),
    (["train", *TINY, "resume=true"], "has no checkpoint.pt to resume from"),
    (["train", *TINY, "task.max_length=100000"], "task.max_length=100000 is above the 512 positions of model 'tiny'"),
    (["train", *TINY, "task.max_length=4"], "task.max_length=4 must be >= 8"),
    (["train", *TINY, "warmup_ratio=1.5"], "warmup_ratio=1.5 is out of range: give a number >= 0 and <= 1"),
    (["train", *TINY, "weight_decay=-0.1"], "weight_decay=-0.1 must be >= 0"),
    (["train", *TINY, "max_grad_norm=0"], "max_grad_norm=0 must be > 0"),
    (["train", *TINY, "schedule=weekly"], "schedule='weekly' is unknown: use epochs, steps"),
    (["train", *TINY, "device=tpu"], "device='tpu' is unknown: use auto, cpu, cuda"),
    (["train", *TINY, "tracking.mode=cloud"], "tracking.mode='cloud' is unknown"),
    (["train", *TINY, "group_by_length=maybe"], "group_by_length='maybe' is not true or false"),
    (["train", *TINY, "pad_multiple=0"], "pad_multiple=0 must be >= 1"),
    (["train", *TINY, "steps.epochs_equiv=0"], "steps.epochs_equiv=0 must be > 0"),
    (["train", *TINY, "+colour=red"], "unknown key(s) ['colour']"),
    (["train", *TINY, "model.tiny.model_type=gpt2"], "model.tiny.model_type='gpt2' is unknown: use bert,"),
    (["train", *TINY, "method=lora", "method.dropout=1"], "method.dropout=1 is out of range"),
    (["train", *TINY, "method=lora", "method.alpha=0"], "method.alpha=0 must be > 0"),
    (["train", *TINY, "method=lora", "method.target_roles=[]"], "method.target_roles=[] is empty"),
    (["train", *TINY, "method=lora", "method.target_roles=[qkv]"], "method.target_roles has unknown item(s) ['qkv']"),
    (["train", *TINY, "method=bitfit", "method.biases=some"], "method.biases='some' is unknown: use all, or a list"),
    (["train", *TINY, "method=prompt", "method.init=zeros"], "method.init='zeros' is unknown: use normal, vocab"),
    (["train", *TINY, "method=prompt", "method.position=middle"], "method.position='middle' is unknown"),
    (["train", *TINY, "method=prefix", "method.projection=-1"], "method.projection=-1 must be >= 0"),
    (["train", *TINY, "method=adapter_houlsby", "method.activation=gelu2"], "method.activation='gelu2' is unknown"),
    (["train", *TINY, "method=adapter_houlsby", "method.positions=[]"], "method.positions=[] is empty"),
    (["train", *TINY, "task=squad", "task.doc_stride=0"], "task.doc_stride=0 must be > 0"),
    (["train", *TINY, "task=mnli", "task.metrics=[bleu]"], "task.metrics has unknown item(s) ['bleu']"),
    # study
    (["study", "nope"], "unknown study 'nope'"),
    (["study", "glue", "--dry-run", "model=tiny", "tasks=[rte]", "data_dir={data}", "task.max_length=9999"],
     "task.max_length=9999 is above the 512 positions of model 'tiny'"),
    (["study", "glue", "model=tiny", "tasks=[rte]", "data_dir={data}", "warmup_ratio=2"], "warmup_ratio=2 is out of"),
    *([] if CUDA else [(["study", "glue", "model=tiny", "tasks=[rte]", "data_dir={data}", "device=cuda"],
                        "device=cuda, but torch sees no CUDA GPU here")]),
    (["study", "glue", "seeds=[1.5]"], "seeds: 1.5 is not an integer"),
    (["study", "glue", "method=lora"], "write methods=[...] instead"),
    (["study", "glue", "sizes=[0]"], "not a positive integer"),
    (["study", "glue", "launcher=nope"], "unknown launcher 'nope'"),
    (["study", "glue", "model=tiny", "tasks=[rte]", "data_dir={ws}/nowhere", "out={ws}/study"], "task rte: data file"),
    (["study", "glue", "--dry-run", "model=tiny", "tasks=[rte]", "data_dir={data}", "train_size=99"],
     "task rte: train_size=99 is above its 24 training examples"),
    # report
    (["report", "{ws}/nowhere", "--out", "{ws}/r2"], "is not a folder"),
    (["report", "{ws}/empty", "--out", "{ws}/r2"], "no result.json under"),
    # predict
    (["predict", "{ws}/nowhere", "--text", "x"], "nowhere does not exist: give the out= folder"),
    (["predict", "{run}"], "nothing to predict"),
    (["predict", "{run}", "--text", "a", "--text-pair", "b", "--text-pair", "c"], "one --text-pair per --text"),
    (["predict", "{run}", "colour=red", "--text", "a"], "'colour=red': expected one of"),
    (["predict", "{run}", "--input", "{ws}/missing.jsonl"], "input file"),
    (["predict", "{run}", "--input", "{ws}/inputs.jsonl"], "inputs.jsonl:2: not a JSON object"),
    (["predict", "{run}", "batch_size=0", "--text", "a"], "batch_size=0 must be > 0"),
    (["predict", "{run}", "merge=perhaps", "--text", "a"], "merge='perhaps' is not true or false"),
    # evaluate
    (["evaluate", "{ws}/nowhere"], "nowhere does not exist: give the out= folder"),
    (["evaluate", "{run}", "data_dir={ws}/nowhere"], "data file"),
    (["evaluate", "{run}", "colour=red"], "'colour=red': expected one of"),
    (["evaluate", "{run}", "eval_batch_size=-1"], "eval_batch_size=-1 must be > 0"),
    *([] if CUDA else [(["evaluate", "{run}", "device=cuda"], "device=cuda, but torch sees no CUDA GPU here")]),
    # params
    (["params", "model=nope"], "unknown model 'nope'"),
    (["params", "oops"], "is not key=value"),
    (["params", "model=tiny", "method=lora", "method.r=0"], "method.r=0 must be > 0"),
    (["params", "model.name_or_path={ws}/gpt2", "model.config_file=null", "model.package=null"],
     "is GPT2Model (model_type gpt2), a decoder-only language model"),
    # what export, predict, evaluate and report read: a finished run folder, not one in use, stopped, torn or delta-less
    (["predict", "{ws}/running", "--text", "a", "--text-pair", "b"], "running is in use by a running run (pid"),
    (["predict", "{ws}/locked", "--text", "a", "--text-pair", "b"], "locked is in use by a running run"),
    (["evaluate", "{ws}/stopped"], "holds an unfinished run (status failed: Interrupted: stopped by signal 15 at step "
                                   "1): resume it (the same command with resume=true) first"),
    (["evaluate", "{ws}/torn"], "torn has a damaged result.json, so it is not a finished run folder"),
    (["evaluate", "{ws}/empty"], "empty has no result.json, so it is not a finished run folder"),
    (["export", "{ws}/nodelta", "--format", "merged", "--out", "{ws}/e"], "nodelta has no delta.safetensors or "
                                                                          "delta.json although its run completed"),
    (["export", "{ws}/running", "--format", "merged", "--out", "{ws}/e"], "is in use by a running run"),
    (["report", "{ws}/running", "--out", "{ws}/r2"], "report: " + "{ws}/running is in use by a running run"),
    (["report", "{ws}/stopped", "--out", "{ws}/r2"], "holds an unfinished run (status failed"),
    # ... and where export and report write: not inside a run folder, not a file, not someone's full folder
    (["export", "{run}", "--format", "merged", "--out", "{run}/export"], "export --out {run}/export is inside the run "
                                                                          "folder {run}, which holds one run's files"),
    (["report", "{run}", "--out", "{run}"], "report --out {run} is inside the run folder {run}"),
    (["export", "{run}", "--format", "merged", "--out", "{ws}/data"], "export --out {ws}/data exists and is not "
                                                                      "empty: give a new folder, or add --overwrite"),
    (["report", "{run}", "--out", "{ws}/data"], "report --out {ws}/data exists and is not empty"),
    (["export", "{run}", "--format", "merged", "--out", "{ws}/inputs.jsonl"], "inputs.jsonl is a file: give a folder"),
    (["report", "{run}", "--out", "{ws}/inputs.jsonl/r"], "cannot be written ({ws}/inputs.jsonl is not a writable"),
    # data
    (["data", "{ws}/d", "tasks=[nope]"], "unknown task ['nope']"),
    (["data", "{ws}/d", "overwrite=maybe"], "write overwrite=true or overwrite=false"),
]


def test_the_catalog_is_long_enough():
    assert len(CASES) >= 30 and {c[0][0] for c in CASES} >= {"train", "study", "report", "predict", "evaluate",
                                                              "export", "params", "data"}


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(c[0][:1] + c[0][-1:])[:40] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_lost(ws, capsys, argv, message, tmp_path):
    fill = lambda a: a.replace("{ws}", str(ws)).replace("{data}", str(ws / "data")).replace("{run}", str(ws / "run"))
    argv, message = [fill(a) for a in argv], fill(message)
    if argv[0] in ("train", "study") and not any(a.startswith("out=") for a in argv):
        argv.append(f"out={tmp_path / 'new'}")  # a fresh folder, outside the workspace
    if argv[0] == "train":
        for key, default in (("data_dir", ws / "data"), ("task", "rte"), ("method", "bitfit")):
            if not any(a.startswith(f"{key}=") for a in argv):
                argv.append(f"{key}={default}")
    before = snapshot(ws)
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and err.startswith("peftbench: error: ") and message in err, err
    after = snapshot(ws)
    assert {k: after.get(k) for k in before} == before  # nothing in the workspace lost or changed
    new = set(after) - set(before)
    assert not any(".tmp" in n for n in new), new  # nothing half-written
    for name in new:  # a run that failed while reading its data leaves a failed record and its log, nothing else
        assert name.rsplit("/", 1)[-1] in ("result.json", "train.log"), name
        if name.endswith("result.json"):
            assert json.loads(after[name])["status"] == "failed"
    # nor a completed-looking record anywhere a bad run could write (its own out=, a study's folders)
    assert not [p for p in tmp_path.rglob("result.json") if json.loads(p.read_text()).get("status") == "completed"]


@pytest.mark.parametrize("start,text,reason", [
    (99, "mat", "answer_start 99 is outside its 23-character context"),
    (-3, "at.", "answer_start -3 is outside its 23-character context"),
    (4, "mat", "the context at answer_start 4 reads 'cat', not the answer 'mat'"),
    (4, "", "an answer text is empty"),
])
def test_each_bad_squad_answer_is_named(start, text, reason):
    spans, bad = check_answers("q7", "The cat sat on the mat.", [text, "cat"], [start, 4])
    assert spans == [(4, "cat")] and bad == [f"question q7: {reason}"]


# ---- tasks: one's own data and the new GLUE layouts; each bad input is one line, exit 2 -------------------

@pytest.fixture(scope="module")
def own_ws(tmp_path_factory) -> Path:
    """Own-data files (CSV, JSONL, an empty one, a task YAML), SQuAD-layout JSON, STS-B with a bad score."""
    from conftest import write_glue

    root = tmp_path_factory.mktemp("own")
    good = "sentence,label\n" + "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(8))
    (root / "train.csv").write_text(good)
    (root / "dev.csv").write_text(good)
    (root / "dev_new_label.csv").write_text(good + "odd one,maybe\n")
    (root / "header_only.csv").write_text("sentence,label\n")
    (root / "scores.csv").write_text("sentence,score\n" + "".join(f"text {i},{i * 0.5}\n" for i in range(6))
                                     + "text x,high\n")
    (root / "my_task.yaml").write_text("train: train.csv\ndev: dev.csv\ntext: sentence\nlabl: label\n")
    write_glue(root / "data")
    stsb = root / "data" / "glue" / "STS-B"
    stsb.mkdir(parents=True)
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tmain\tMSRvid\t2012\t0001\tnone\tnone\tA plane.\tA jet.\t{}\n"
    (stsb / "train.tsv").write_text(head + row.format("4.2") + row.format("n/a"))
    (stsb / "dev.tsv").write_text(head + row.format("1.0"))
    from glue_layouts import mnli

    (root / "data" / "glue" / "MNLI").mkdir()
    for name in ("train", "dev"):  # dev.tsv: MNLI's dev is dev_matched.tsv + dev_mismatched.tsv
        (root / "data" / "glue" / "MNLI" / f"{name}.tsv").write_text("\n".join(mnli(6, name == "dev")) + "\n")
    return root


OWN = ["task=classification", "task.train={own}/train.csv", "task.dev={own}/dev.csv", "task.text=sentence",
       "task.label=label"]
OWN_CASES = [
    ([*OWN[:3], "task.text=review", "task.label=label"],
     "no column 'review' (task.text=review); its columns are ['sentence', 'label']"),
    ([*OWN[:4], "task.label=stars"], "no column 'stars' (task.label=stars); its columns are ['sentence', 'label']"),
    ([*OWN, "task.text_pair=second"], "no column 'second' (task.text_pair=second)"),
    ([*OWN[:2], "task.dev={own}/dev_new_label.csv", *OWN[3:]], "label 'maybe' never appears in the training data"),
    (["task=classification", "task.train={own}/scores.csv", "task.dev={own}/scores.csv", "task.text=sentence",
      "task.label=score"], "regression target 'high' in column 'score' is not a number"),
    ([*OWN[:2], "task.dev={own}/header_only.csv", *OWN[3:]], "header_only.csv has no rows (dev split)"),
    (["task=classification", "task.train={own}/nope.csv", *OWN[2:]], "nope.csv not found: set task.train="),
    (["task=classification", "task.text=sentence"], "task=classification needs its data: set task.train=FILE"),
    ([*OWN, "task.problem=ordinal"], "task.problem='ordinal' is unknown: use auto, classification, regression"),
    (["task={own}/my_task.yaml"], "my_task.yaml: unknown key(s) ['labl']"),
    (["task={own}/missing.yaml"], "task file {own}/missing.yaml not found"),
    (["task=qa", "task.train={own}/none.json", "task.dev={own}/none.json"], "QA train file {own}/none.json not found"),
    (["task=qa"], "task=qa needs its data: set task.train=FILE and task.dev=FILE"),
    (["task=stsb", "data_dir={own}/data"], "train.tsv:3: regression target 'n/a' in column score is not a number"),
    (["task=mnli", "data_dir={own}/data"], "dev_matched.tsv not found"),
]


@pytest.mark.parametrize("argv,message", OWN_CASES, ids=[c[0][-1][:40] for c in OWN_CASES])
def test_bad_own_data_is_one_line_exit_2(own_ws, capsys, argv, message, tmp_path):
    argv = ["train", *TINY, "method=bitfit", f"out={tmp_path / 'new'}", *(a.replace("{own}", str(own_ws)) for a in argv)]
    before = snapshot(own_ws)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("peftbench: error: ") and message.replace("{own}", str(own_ws)) in err, err
    assert snapshot(own_ws) == before


def test_bad_own_data_is_named_by_the_study_preflight_before_any_run(own_ws, capsys, tmp_path):
    argv = ["study", "glue", "tasks=[classification]", "methods=[bitfit]", "seeds=[1]", f"out={tmp_path / 'st'}",
            *TINY, *(a.replace("{own}", str(own_ws)) for a in OWN[1:2]), f"task.dev={own_ws}/dev_new_label.csv",
            *OWN[3:]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "task classification:" in err and "label 'maybe' never appears" in err and err.count("\n") == 0, err
    assert not (tmp_path / "st").exists()  # nothing ran


# ---- own data: YAML syntax errors, a file for `data`, zero-run studies, empty predict texts, and every
# own-data key cross-checked with its data (tasks/crosscheck.py): a contradiction is one line, exit 2 ----------------

@pytest.fixture(scope="module")
def check_ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("check")
    rows = "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(24))
    (root / "train.csv").write_text("sentence,label\n" + rows)
    (root / "three.csv").write_text("sentence,label\n" + "".join(f"t {i},{'abc'[i % 3]}\n" for i in range(24)))
    (root / "scores.csv").write_text("sentence,score\n" + "".join(f"t {i},{i * 0.5}\n" for i in range(12)))
    (root / "flat.csv").write_text("sentence,score\n" + "".join(f"t {i},2.5\n" for i in range(12)))
    (root / "broken.yaml").write_text("name: x\ntrain: train.csv\n  dev: [dev.csv\n")
    (root / "broken_study.yaml").write_text("methods: [lora\ntasks: [rte]\n")
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "The cat sat on the mat.", "qas": [
        {"id": f"q{i}", "question": "where?", "answers": [{"text": "the mat", "answer_start": 15}]}
        for i in range(3)]}]}]}
    (root / "qa.json").write_text(json.dumps(squad))
    return root


C = ["task=classification", "task.train={c}/train.csv", "task.dev={c}/train.csv", "task.text=sentence",
     "task.label=label"]
SCORES = ["task=classification", "task.train={c}/scores.csv", "task.dev={c}/scores.csv", "task.text=sentence",
          "task.label=score"]
THREE = ["task=classification", "task.train={c}/three.csv", "task.dev={c}/three.csv", "task.text=sentence",
         "task.label=label"]
CROSS_CASES = [
    (["task={c}/broken.yaml"], "broken.yaml:3:6: YAML syntax error (mapping values are not allowed here)"),
    ([*C, "task.text_pair=sentence"], "task.text_pair='sentence' is the same column as task.text"),
    ([*C[:4], "task.label=sentence"], "task.label='sentence' is also task.text"),
    ([*SCORES, "task.metric=accuracy"], "task.metric(s) ['accuracy'] are for a classification, but this task is a "
                                        "regression (column 'score' of {c}/scores.csv holds decimals)"),
    ([*C, "task.metric=pearson"], "task.metric(s) ['pearson'] are for a regression, but this task is a classification"),
    ([*C, "task.metric=bleu"], "task.metric='bleu' is unknown: use one of accuracy, f1, mcc, pearson, spearman"),
    ([*C, "task.metrics=[accuracy]", "task.metric=f1"], "task.metric='f1' is not in task.metrics=['accuracy']"),
    ([*C, "task.metric=mcc"], "task.metric='mcc' is not scored: with task.metrics=null"),
    ([*C, "task.metrics=[accuracy,pearson]"], "mix class metrics (accuracy) and regression ones (pearson)"),
    ([*C, "task.problem=regression", "task.metric=accuracy"], "this task is a regression (task.problem=regression)"),
    ([*C, "task.problem=regression", "task.labels=[neg,pos]"], "task.labels names classes, but task.problem=regression"),
    ([*C, "task.labels=[neg,pos,meh]"], "task.labels lists ['meh'], which no row of train or dev has"),
    ([*THREE, "task.labels=[a,b]"], "row 3: label 'c' is not one of task.labels=['a', 'b']: add it to task.labels"),
    ([*C, "task.labels=[neg]"], "task.labels=['neg'] has one class"),
    ([*C, "task.labels=[neg,pos,neg]"], "task.labels repeats ['neg']"),
    ([*C, "task.label_names=[bad,good,ugly]"], "task.label_names has 3 names, but the data has 2 classes"),
    ([*C, "task.labels=[neg,pos]", "task.label_names=[bad]"], "task.label_names has 1 names for the 2 classes"),
    ([*C, "task.label_names=[bad,bad]"], "task.label_names repeats ['bad']"),
    (["task=classification", "task.train={c}/flat.csv", "task.dev={c}/flat.csv", "task.text=sentence",
      "task.label=score"], "every training target in column 'score' is 2.5: nothing to regress"),
    (["task=qa", "task.train={c}/qa.json", "task.dev={c}/qa.json", "task.metric=accuracy"],
     "task.metric='accuracy': a QA task scores f1, exact_match"),
    ([*SCORES, "task.label_names=[low,high]"], "task.label_names names classes, but the labels in column 'score' are "
                                               "numbers to predict (column 'score' of {c}/scores.csv holds decimals)"),
    ([*C, "task.hub_config=sst2"], "task.hub_config='sst2' names a config of a hub dataset, but task.hub is null"),
    (["task=rte", "task.metric=mcc"], "task.metric='mcc' is not scored by task rte, which reports accuracy, f1"),
    (["task=mnli", "task.metric=f1"], "is not scored by task mnli, which reports accuracy, accuracy_mm"),
]


@pytest.mark.parametrize("argv,message", CROSS_CASES, ids=[c[0][-1][:40] for c in CROSS_CASES])
def test_own_data_keys_contradicting_the_data_are_one_line_exit_2(check_ws, capsys, argv, message, tmp_path):
    argv = ["train", *TINY, "method=bitfit", f"out={tmp_path / 'new'}", *(a.replace("{c}", str(check_ws)) for a in argv)]
    before = snapshot(check_ws)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("peftbench: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("peftbench: error: ") and \
        message.replace("{c}", str(check_ws)) in lines[0], err
    assert snapshot(check_ws) == before
    assert not (tmp_path / "new" / "delta.json").exists()  # nothing trained


SILENT_CASES = [  # each exited 0 or ended in a traceback before
    (["study", "glue", "seeds=[]"], "seeds=[] is empty, so the study plans no runs: give at least one, e.g. seeds=[42]"),
    (["study", "glue", "methods=[]"], "methods=[] is empty, so the study plans no runs"),
    (["study", "glue", "tasks=[]"], "tasks=[] is empty, so the study plans no runs"),
    (["study", "scaling", "sizes=[]"], "sizes=[] is empty, so the study plans no runs"),
    (["study", "glue", "model=tiny", "tasks=[rte]", "methods=[bitfit]", "data_dir={data}", "sizes=[500]"],
     "study glue plans no runs: every size in sizes=[500] is above"),
    (["study", "glue", "model=tiny", "tasks=[{check}/broken.yaml]", "methods=[bitfit]"],
     "task file {check}/broken.yaml:3:6: YAML syntax error"),
    (["study", "{check}/broken_study.yaml"], "study file {check}/broken_study.yaml:2:6: YAML syntax error"),
    (["predict", "{run}", "--text", "", "--text-pair", "b"], "input 1: the text is empty: give a text to predict"),
    (["predict", "{run}", "--text", "   ", "--text-pair", "b"], "input 1: the text is empty (only spaces)"),
    (["predict", "{run}", "--text", "a", "--text-pair", "b", "--text", "c", "--text-pair", ""],
     "input 2: the text pair is empty"),
    (["data", "{check}/train.csv"], "train.csv is a file, not a folder: give a folder"),
    (["data", "{check}/train.csv/sub", "tasks=[rte]"], "cannot make the folder {check}/train.csv/sub/glue/RTE"),
]


@pytest.mark.parametrize("argv,message", SILENT_CASES, ids=[" ".join(c[0][:2])[:40] for c in SILENT_CASES])
def test_silent_cases_are_one_line_exit_2(ws, check_ws, capsys, argv, message, tmp_path):
    argv = [a.replace("{check}", str(check_ws)) for a in argv]
    test_bad_input_is_one_line_exit_2_and_nothing_lost(ws, capsys, argv, message.replace("{check}", str(check_ws)),
                                                       tmp_path)


def _table(path: Path, header: str, rows: list[str]) -> str:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return str(path)


WARN_CASES = [  # (train rows, dev rows, extra overrides, the warning's excerpt): legal, so the run goes on
    ([f"t{i},{'ab'[i % 2]}" for i in range(12)], None, [], "class(es) with fewer than 10 training rows: a (6), b (6)"),
    ([f"t{i},{'ab'[i % 2]}" for i in range(40)], ["d1,a", "d2,c"], ["task.labels=[a,b,c]"],
     "class(es) ['c'] of task.labels are in dev but in no training row"),
    ([f"t{i},{'abc'[i % 3]}" for i in range(60)], None, ["task.metric=f1"], "task.metric=f1 over 3 classes is macro-F1"),
    ([f"t{i},{'ab'[i % 2]}" for i in range(40)], None, ["task.metric=f1"],
     "task.metric=f1 scores 'b' (the second of the sorted labels ['a', 'b']) as the positive class"),
    ([f"t{i},{'a' if i % 20 else 'b'}" for i in range(400)], None, [], "class 'a' is 95% of the training rows"),
    ([f"t{i},{'ab'[i % 2]}" for i in range(40)], ["d1,a", "d2,a"], [], "the dev set holds one class only ('a')"),
    ([f"t{i},{i % 12}" for i in range(240)], None, [], "column 'label' holds 12 different whole numbers, each read as a class"),
    ([f"{i},{'ab'[i % 2]}" for i in range(40)], None, [], "task.text='sentence' holds numbers, not text (row 1: '0')"),
    ([f"t{i},{'ab'[i % 2]}" for i in range(40)] + [",a"], None, [], "1 training row(s) have an empty task.text"),
    ([f"t{i},{'ab'[i % 2]}" for i in range(40)], "same", [], "task.dev is task.train's file"),
    ([f"t{i},{'ab'[i % 2]}" for i in range(40)], ["t1,b", "t2,a", "new,a"], [], "2 of the 3 dev rows also appear in train"),
    ([f"t{i},{(i % 4) * 0.5}" for i in range(40)], None, ["task.problem=classification"],
     "task.problem=classification makes each of the 4 decimal values in column 'label' a class of its own"),
]


@pytest.mark.parametrize("train,dev,extra,warning", WARN_CASES, ids=[c[3][:40] for c in WARN_CASES])
def test_risky_own_data_choices_warn_and_go_on(tmp_path, capsys, train, dev, extra, warning):
    from peftbench.config.compose import load_config
    from peftbench.config import crosscheck
    from peftbench.data.tasks import classification

    crosscheck._said.clear()  # once per process: this test wants to see each line
    train_file = _table(tmp_path / "train.csv", "sentence,label", train)
    dev_file = train_file if dev == "same" else _table(tmp_path / "dev.csv", "sentence,label",
                                                       dev or [f"d{i},{train[i].split(',')[1]}" for i in range(6)])
    cfg = load_config(["model=tiny", "task=classification", f"task.train={train_file}", f"task.dev={dev_file}",
                       "task.text=sentence", *extra])
    classification.resolve(cfg)  # no error
    err = capsys.readouterr().err
    assert f"peftbench: warning: {warning}" in err, err


def test_risky_qa_choices_warn(capsys):
    from omegaconf import OmegaConf

    from peftbench.config import crosscheck

    crosscheck._said.clear()
    dev = [{"answers": ["one two three four"]}, {"answers": ["short"]}]
    crosscheck.qa(OmegaConf.create({"eval_size": 5, "max_answer_length": 3}), dev, dev, "qa.json", "qa.json")
    err = capsys.readouterr().err.splitlines()
    assert err == ["peftbench: warning: the QA dev set is the training file (qa.json): the dev score then measures memory",
                   "peftbench: warning: task.eval_size=5 is above the 2 answerable dev questions: all are scored",
                   "peftbench: warning: 1 dev question(s) have only answers longer than task.max_answer_length=3 "
                   "words: they can never be matched exactly; raise task.max_answer_length"]


def test_a_warned_run_still_trains_and_logs_the_warning(tmp_path, capsys):
    from peftbench.config import crosscheck

    crosscheck._said.clear()
    data = _table(tmp_path / "train.csv", "sentence,label", [f"t{i},{'ab'[i % 2]}" for i in range(12)])
    out = tmp_path / "run"
    assert main(["train", *TINY, "method=bitfit", "task=classification", f"task.train={data}", f"task.dev={data}",
                 "task.text=sentence", f"out={out}"]) == 0
    err = capsys.readouterr().err
    assert "peftbench: warning: task.dev is task.train's file" in err
    assert "WARNING task.dev is task.train's file" in (out / "train.log").read_text()


def test_the_primary_metric_is_one_that_is_scored(tmp_path):
    """task.metrics=[mcc] alone made accuracy the primary metric, which was then not scored (the verdict: no metric)."""
    from peftbench.config.compose import load_config
    from peftbench.data.tasks import classification

    data = _table(tmp_path / "train.csv", "sentence,label", [f"t{i},{'ab'[i % 2]}" for i in range(40)])
    cfg = load_config(["model=tiny", "task=classification", f"task.train={data}", f"task.dev={data}",
                       "task.text=sentence", "task.metrics=[mcc]"])
    classification.resolve(cfg)
    assert cfg.task.metric == "mcc" and list(cfg.task.metrics) == ["mcc"]
