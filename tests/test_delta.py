"""Deltas on the tiny model: save -> load gives the in-memory model's outputs bit for bit, for every method; the
CLI's predict/evaluate; one base serving many tasks; LoRA merging; and every way a delta can be refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_glue
from safetensors.torch import load_file, save_file

from peftbench.engine import train as train_module
from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.engine.delta import DELTA_FILE, META_FILE, base_fingerprint, file_sha256, load_run
from peftbench.models.load import load_model, load_tokenizer
from peftbench.artifacts.multitask import MultiTask
from peftbench.engine.predict import predict as model_outputs
from peftbench.artifacts.serve import predict, read_inputs
from peftbench.data.tasks import TASKS

# method -> task: a run per method on three tasks, so the multi-task test has several tasks on one (seeded) base
RUNS = {"full": "sst2", "bitfit": "sst2", "bitfit_subset": "mrpc", "lora": "rte", "prompt": "mrpc",
        "ia3": "rte", "dora": "sst2", "vera": "mrpc", "lora_all": "rte", "ln_tuning": "sst2",
        "adapter_houlsby": "mrpc", "adapter_pfeiffer": "rte", "prefix": "sst2", "prompt_residual": "rte"}
PEFT = ["lora", "lora_all", "dora", "ia3", "vera"]  # merge=true folds these into the weights


def train_run(out: Path, data: Path, *overrides: str):
    """Train a few steps; return (config, the trained model as it was handed to save_delta)."""
    cfg = load_config(["model=tiny", f"data_dir={data}", f"out={out}", "max_steps=4", "lr=1e-2", "batch_size=8",
                       "tracking.mode=disabled", *overrides])
    seen = {}

    def spy(model, *args):
        seen["model"] = model
        return save_delta(model, *args)

    save_delta = train_module.save_delta
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "save_delta", spy)
        train_module.train(cfg)
    return cfg, seen["model"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data = write_glue(root / "data")
    out = {m: (root / m, *train_run(root / m, data, f"method={m}", f"task={t}")) for m, t in RUNS.items()}
    return data, out


def dev_outputs(model, cfg, device="cpu"):
    task = TASKS[cfg.task.kind]
    tokenizer = load_tokenizer(cfg.model)
    data = task.load(cfg, tokenizer)
    return np.stack(model_outputs(model, data.eval, 64, torch.device(device))["logits"])


@pytest.mark.parametrize("method", list(RUNS))
def test_reload_gives_the_trained_models_outputs_exactly(runs, method):
    _, r = runs
    run_dir, cfg, trained = r[method]
    loaded = load_run(run_dir)
    assert np.array_equal(dev_outputs(loaded.model, cfg), dev_outputs(trained, cfg))
    meta = json.loads((run_dir / META_FILE).read_text())
    names = set(load_file(str(run_dir / DELTA_FILE)))
    trainable = {n for n, p in trained.named_parameters() if p.requires_grad}
    if method == "prompt_residual":  # the MLP folds into the rows it produces; the run reloads as plain prompts
        assert {n for n in trainable if n.startswith("reparam.")} and meta["method"]["reparam"] == "none"
        trainable = {n for n in trainable if not n.startswith("reparam.")}
        rows = load_file(str(run_dir / DELTA_FILE))["soft_prompt.weight"]
        assert torch.equal(rows, trained.prompts().detach()) and not torch.equal(rows, trained.soft_prompt.weight)
        assert loaded.model.reparam is None
    assert names == trainable == set(meta["tensors"])
    head = {n for n in names if "classifier" in n}
    assert head, "the task head is saved with every method"
    if method == "lora":
        assert head == {"base_model.model.classifier.modules_to_save.default.weight",
                        "base_model.model.classifier.modules_to_save.default.bias"}
        assert all("lora_" in n for n in names - head) and len(names - head) == 8  # 2 layers x q,v x A,B
    if method == "bitfit":
        # 8 biases per layer, the embeddings' LayerNorm and the pooler
        assert all(n.endswith(".bias") for n in names - head) and len(names - head) == 18


def test_delta_sizes_follow_the_trained_parameters(runs):
    _, r = runs
    size = {m: (d / DELTA_FILE).stat().st_size for m, (d, _, _) in r.items()}
    full_params = sum(p.numel() for p in r["full"][2].parameters())
    assert full_params * 4 < size["full"] < full_params * 4 + 20_000  # fp32 values + a small header
    assert size["bitfit_subset"] < size["bitfit"] < size["lora"] < size["full"] / 10


def test_run_folder_holds_no_pickle(runs):
    _, r = runs
    for run_dir, _, _ in r.values():
        files = sorted(p.name for p in run_dir.rglob("*") if p.is_file())
        assert files == ["delta.json", "delta.safetensors", "predictions.json", "result.json", "train.log"]
        for name in files:
            head = (run_dir / name).read_bytes()[:4]
            if name.endswith(".safetensors"):  # starts with its header's length, which may well begin with 0x80
                assert load_file(str(run_dir / name)) and head != b"PK\x03\x04"
                continue
            assert head[:1] != b"\x80" and head != b"PK\x03\x04"  # pickle protocol byte, torch.save's zip


@pytest.mark.parametrize("method", ["bitfit", "lora", "prompt"])
def test_evaluate_reproduces_the_recorded_metrics(runs, capsys, method):
    _, r = runs
    run_dir = r[method][0]
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    recorded = json.loads((run_dir / "result.json").read_text())["metrics"]
    assert f"{recorded} (same as recorded)" in out and "on 24 dev examples" in out


def test_predict_cli_texts_pairs_and_files(runs, capsys, tmp_path):
    data, r = runs
    sst2, mrpc = load_run(r["bitfit"][0]), load_run(r["bitfit_subset"][0])
    texts = ["a great , moving film", "boring mess"]
    assert main(["predict", str(r["bitfit"][0]), "--text", texts[0], "--text", texts[1]]) == 0
    want = predict(sst2, texts)
    assert capsys.readouterr().out.splitlines() == [
        f"{w['label']}\t{w['probability']:.4f}\t{t}" for w, t in zip(want, texts)]
    assert main(["predict", str(r["bitfit_subset"][0]), "--text", "He said yes.", "--text-pair", "He agreed.",
                 "--jsonl"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line == {"input": ["He said yes.", "He agreed."], **predict(mrpc, [("He said yes.", "He agreed.")])[0]}
    assert main(["predict", str(r["bitfit_subset"][0]), "--text", "He said yes.", "--text-pair", "He agreed."]) == 0
    assert capsys.readouterr().out.rstrip("\n").split("\t")[2:] == ["He said yes.", "He agreed."]  # both echoed
    # the task's own dev.tsv (GLUE columns) and JSONL with the hub's column names give the same answers
    tsv = read_inputs(data / "glue/MRPC/dev.tsv", mrpc)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"sentence1": a, "sentence2": b}) + "\n" for a, b in tsv))
    assert read_inputs(tmp_path / "in.jsonl", mrpc) == tsv and len(tsv) == 24
    assert main(["predict", str(r["bitfit_subset"][0]), "batch_size=5", "--input", str(tmp_path / "in.jsonl")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows == [f"{w['label']}\t{w['probability']:.4f}\t{' '.join(a.split())}\t{' '.join(b.split())}"
                    for w, (a, b) in zip(predict(mrpc, tsv), tsv)]  # the whole pair echoed
    logits = dev_outputs(mrpc.model, r["bitfit_subset"][1])  # predict's labels are the dev logits' argmax
    assert [w["label"] for w in predict(mrpc, tsv)] == [["not_equivalent", "equivalent"][k] for k in logits.argmax(1)]


def test_one_base_serves_every_task(runs):
    data, r = runs
    hub = MultiTask()
    for method, (run_dir, _, _) in r.items():
        hub.add(run_dir, name=method)
    assert len(hub.bases) == 1
    inputs = {"sst2": read_inputs(data / "glue/SST-2/dev.tsv", load_run(r["bitfit"][0])),
              "mrpc": read_inputs(data / "glue/MRPC/dev.tsv", load_run(r["prompt"][0])),
              "rte": read_inputs(data / "glue/RTE/dev.tsv", load_run(r["lora"][0]))}
    alone = {m: predict(load_run(d), inputs[RUNS[m]]) for m, (d, _, _) in r.items()}
    for method in ["lora", "bitfit", "prompt", "full", "bitfit_subset", "lora", "bitfit"]:  # any order, repeats
        assert hub.predict(method, inputs[RUNS[method]]) == alone[method], method
    # the encoders share the base's storage; deltas got their own tensors and left the base as loaded
    encoder, _, fingerprint = hub.bases["seq_cls"]
    word = encoder.embeddings.word_embeddings.weight
    models = {m: hub.runs[m].model for m in r}
    assert models["bitfit"].bert.embeddings.word_embeddings.weight is word
    assert models["lora"].base_model.model.bert.embeddings.word_embeddings.weight is word
    assert models["bitfit"].bert.pooler.dense.bias is not encoder.pooler.dense.bias
    torch.manual_seed(42)  # the tiny base of seed 42, loaded fresh: the shared one still equals it
    fresh = load_model(r["bitfit"][1].model, "seq_cls").base_model.state_dict()
    assert all(torch.equal(fresh[k], v) for k, v in encoder.state_dict().items())
    assert base_fingerprint(models["bitfit"]) != fingerprint  # a task's own view does include its biases


@pytest.mark.parametrize("method", PEFT)
def test_peft_merge_matches_unmerged(runs, capsys, method):
    _, r = runs
    run_dir, cfg, _ = r[method]
    plain, merged = load_run(run_dir), load_run(run_dir, merge=True)
    assert not hasattr(merged.model, "peft_config")
    assert not any(k in n for n, _ in merged.model.named_parameters() for k in ("lora_", "ia3_", "vera_"))
    a, b = dev_outputs(plain.model, cfg), dev_outputs(merged.model, cfg)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    if method == "lora":
        lora_b = [p for n, p in plain.model.named_parameters() if "lora_B" in n]
        assert all(p.abs().max() > 1e-3 for p in lora_b)  # the adapters did learn something to merge
        assert main(["evaluate", str(run_dir), "merge=true"]) == 0
        assert "on 24 dev examples" in capsys.readouterr().out
    torch.manual_seed(42)  # the runs' tiny base: every method here changes the value projection when merged
    base = load_model(cfg.model, "seq_cls").bert.encoder.layer[0].attention.self.value.weight
    assert not torch.equal(merged.model.bert.encoder.layer[0].attention.self.value.weight, base)


def one_line_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_deltas_are_refused(runs, capsys, tmp_path):
    _, r = runs
    src = r["bitfit"][0]

    def copy(name):
        shutil.copytree(src, tmp_path / name)
        return tmp_path / name

    one_line_error(capsys, ["predict", str(tmp_path / "nope"), "--text", "x"], "does not exist")
    d = copy("nodelta")
    (d / DELTA_FILE).unlink()
    one_line_error(capsys, ["predict", str(d), "--text", "x"], "has no delta.safetensors although its run completed")
    d = copy("badmeta")
    (d / META_FILE).write_text('{"method": ')
    one_line_error(capsys, ["predict", str(d), "--text", "x"], "delta.json is damaged (not JSON: ")
    d = copy("truncated")
    blob = (d / DELTA_FILE).read_bytes()
    (d / DELTA_FILE).write_bytes(blob[: len(blob) // 2])
    one_line_error(capsys, ["evaluate", str(d)], "is corrupted or truncated")
    d = copy("flipped")  # one value changed: only the checksum can tell
    (d / DELTA_FILE).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    one_line_error(capsys, ["predict", str(d), "--text", "x"], "is corrupted or truncated")
    d = copy("badheader")  # no checksum to go by: safetensors' own parse error, caught
    meta = json.loads((d / META_FILE).read_text())
    del meta["sha256"]
    (d / META_FILE).write_text(json.dumps(meta))
    (d / DELTA_FILE).write_bytes(b"\xff" * 8 + blob[8:])
    one_line_error(capsys, ["predict", str(d), "--text", "x"], "is not a readable safetensors file")
    d = copy("renamed")
    tensors = load_file(str(d / DELTA_FILE))
    tensors["bert.pooler.dense.bias_renamed"] = tensors.pop("bert.pooler.dense.bias")
    save_file(tensors, str(d / DELTA_FILE))
    meta["sha256"] = file_sha256(d / DELTA_FILE)
    (d / META_FILE).write_text(json.dumps(meta))
    one_line_error(capsys, ["predict", str(d), "--text", "x"], "does not match the model rebuilt from delta.json: "
                   "1 saved tensor(s) with no parameter (e.g. bert.pooler.dense.bias_renamed); 1 trainable")
    one_line_error(capsys, ["predict", str(src), "--text", "a", "--text-pair", "b"], "takes one text per input")
    one_line_error(capsys, ["predict", str(src), "merge=true", "--text", "a"], "merge=true applies to peft runs only")
    one_line_error(capsys, ["evaluate", str(src), "lr=3"], "'lr=3': expected one of data_dir=...")


def test_a_delta_for_another_base_is_refused(tmp_path, capsys, glue_dir):
    from transformers import BertConfig, BertForSequenceClassification

    from peftbench.models.load import tiny_tokenizer

    tok = tiny_tokenizer()
    for seed in (1, 2):  # two base folders: same architecture, different weights
        torch.manual_seed(seed)
        BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64)).save_pretrained(
            tmp_path / f"base{seed}")
        tok.save_pretrained(tmp_path / f"base{seed}")
    run_dir = tmp_path / "run"
    train_run(run_dir, glue_dir, "method=bitfit", "task=sst2", "model.tiny=null",
              f"model.name_or_path={tmp_path / 'base1'}", "max_steps=2")
    assert main(["predict", str(run_dir), "--text", "warm and witty"]) == 0
    capsys.readouterr()
    fp = json.loads((run_dir / META_FILE).read_text())["base_fingerprint"]
    err = one_line_error(capsys, ["predict", str(run_dir), f"model.name_or_path={tmp_path / 'base2'}", "--text", "x"],
                         f"the delta was trained on base {fp} but model 'tiny' ({tmp_path / 'base2'}) is base ")
    assert err.split(" is base ")[1][:32] != fp
    hub = MultiTask(model_overrides={"name_or_path": str(tmp_path / "base2")})
    with pytest.raises(Exception, match="the delta was trained on base"):
        hub.add(run_dir)


CONTEXTS = [
    "the eiffel tower is in paris, france. it was built in 1889 and is 330 metres tall, the tallest structure "
    "in the world for 41 years, until 1930, when the chrysler building in new york was finished.",
    "python was created by guido van rossum and first released in 1991. version 3.0 came out in 2008 and was "
    "not fully backward compatible with the 2.x releases, which were kept alive until 2020.",
]
QAS = [[("where is the eiffel tower?", "paris, france"), ("when was it built?", "1889"), ("until when?", "1930")],
       [("who created python?", "guido van rossum"), ("when did 3.0 come out?", "2008"), ("until?", "2020")]]


def write_squad(data: Path) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    doc = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": c, "qas": [{"id": f"{p}-{q}", "question": qq, "answers": [{"text": a, "answer_start": c.index(a)}]}
                               for q, (qq, a) in enumerate(qas)]} for p, (c, qas) in enumerate(zip(CONTEXTS, QAS))]}]}
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (data / name).write_text(json.dumps(doc))
    return data


def test_qa_runs_predict_the_answers_their_evaluation_scored(tmp_path, capsys):
    data = write_squad(tmp_path / "squad")
    run_dir = tmp_path / "run"
    train_run(run_dir, data, "task=squad", "method=lora", f"task.data_dir={data}", "task.max_length=48",
              "task.doc_stride=16", "lr=5e-2")
    gold = json.loads((run_dir / "predictions.json").read_text())
    run = load_run(run_dir)
    pairs = [(qq, c) for c, qas in zip(CONTEXTS, QAS) for qq, _ in qas]
    ids = [f"{p}-{q}" for p, qas in enumerate(QAS) for q in range(len(qas))]
    answers = predict(run, pairs)
    assert [a["answer"] for a in answers] == [gold[i] for i in ids]  # several windows per context, same rule
    assert all(c[a["start"]:].startswith(a["answer"]) for a, (_, c) in zip(answers, pairs))
    assert main(["predict", str(run_dir), "--question", pairs[0][0], "--context", pairs[0][1]]) == 0
    assert capsys.readouterr().out == f"{answers[0]['answer']}\t{answers[0]['score']:.4f}\t{pairs[0][0]}\t{pairs[0][1]}\n"
    assert main(["evaluate", str(run_dir)]) == 0
    assert "(same as recorded)" in capsys.readouterr().out
    hub = MultiTask()
    hub.add(run_dir)
    assert set(hub.bases) == {"qa"} and hub.predict("squad", pairs) == answers


@pytest.mark.parametrize("method", ["ia3", "dora", "vera", "lora_all", "ln_tuning", "adapter_houlsby",
                                    "adapter_pfeiffer", "prefix", "prompt_residual"])
def test_qa_deltas_of_every_method_reload_exactly(tmp_path, method):
    data = write_squad(tmp_path / "squad")
    run_dir = tmp_path / "run"
    cfg, trained = train_run(run_dir, data, "task=squad", f"method={method}", f"task.data_dir={data}",
                             "task.max_length=48", "task.doc_stride=16", "max_steps=2")
    loaded = load_run(run_dir)
    tokenizer = load_tokenizer(cfg.model)
    windows = TASKS["squad"].load(cfg, tokenizer).eval
    want, got = (model_outputs(m, windows, 64, torch.device("cpu")) for m in (trained, loaded.model))
    assert np.array_equal(np.stack(got["start_logits"]), np.stack(want["start_logits"]))
    assert np.array_equal(np.stack(got["end_logits"]), np.stack(want["end_logits"]))
    assert any("qa_outputs" in n for n in load_file(str(run_dir / DELTA_FILE)))  # the QA head trains and is saved
