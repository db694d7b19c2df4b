"""`peftbench export`: every method's run on the tiny model, exported in every format it takes (ONNX for one method
of each kind of merge: ONNX_SAMPLE), loads in a FRESH
process with plain peft / transformers / onnxruntime (no peftbench import) and gives peftbench's logits; a format a
method has none of is refused in one line that points at the one it has; the model card parses; --push-to-hub
uploads through a stand-in HfApi."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_METHOD_ARGS
import torch
from conftest import SST2, cut_glue, write_glue
from test_delta import train_run, write_squad

from peftbench.cli import main
from peftbench.config.compose import group_options
from peftbench.engine.delta import load_run

METHODS = group_options("method")  # every packaged method: a new config is exported (or refused) here too
# what the methods of today take; a method not named here must export or refuse in one line, and a peft-backed one
# must export to peft (test_every_method_exports_or_refuses_in_one_line)
NO_PEFT = {"full", "bitfit", "bitfit_subset", "prefix", "adapter_houlsby", "adapter_pfeiffer"}
NO_MERGE = {"prompt", "prompt_residual", "prefix", "adapter_houlsby", "adapter_pfeiffer"}
# The ONNX file is torch.onnx's export of the model the merged folder holds: a plain transformers model whatever the
# method merged into it, so the exporter sees one graph. Each kind of merge is exported to ONNX (the model itself,
# tensors trained in place, peft's LoRA and IA3 merges); every other method that merges is checked as a merged folder,
# and every one that cannot merge must refuse ONNX in one line.
ONNX_SAMPLE = {"full", "bitfit", "lora", "ia3"}
TEXTS = [line.split("\t")[0].strip() for line in SST2.splitlines()[1:7]] + ["a", "warm , witty and great fun to see"]

CHECK = r'''
import json, sys
import numpy as np, torch
req = json.load(open(sys.argv[1]))
out = {}
for job in req["jobs"]:
    d, fmt = job["dir"], job["format"]
    if fmt == "onnx":
        import onnxruntime as ort
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(d)
        sess = ort.InferenceSession(d + "/model.onnx", providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        enc = tok(*job["texts"], padding=True, return_tensors="np")
        res = sess.run(None, {k: enc[k].astype(np.int64) for k in names})
        out[d] = {"logits": [r.tolist() for r in res]}
        continue
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer, pipeline
    auto = AutoModelForQuestionAnswering if job["qa"] else AutoModelForSequenceClassification
    if fmt == "peft":
        from peft import PeftModel
        cfg = json.load(open(d + "/adapter_config.json"))
        base_path = cfg["base_model_name_or_path"]
        base = auto.from_pretrained(d + "/" + base_path if not base_path.startswith("/") else base_path)
        model = PeftModel.from_pretrained(base, d).eval()
        assert "peftbench" not in sys.modules
    else:
        model = auto.from_pretrained(d).eval()
    tok = AutoTokenizer.from_pretrained(d)
    enc = tok(*job["texts"], padding=True, return_tensors="pt")
    with torch.no_grad():
        res = model(**enc)
    keys = ["start_logits", "end_logits"] if job["qa"] else ["logits"]
    out[d] = {"logits": [res[k].numpy().tolist() for k in keys]}
    if fmt == "merged" and not job["qa"]:
        pipe = pipeline("text-classification", model=d)
        out[d]["pipeline"] = [p["label"] for p in pipe(job["texts"][0] if len(job["texts"]) == 1 else
                                                        [{"text": a, "text_pair": b} for a, b in zip(*job["texts"])])]
        out[d]["id2label"] = model.config.id2label
assert "peftbench" not in sys.modules
json.dump(out, open(sys.argv[2], "w"))
'''


def fresh_process(jobs: list[dict], tmp: Path) -> dict:
    """Run CHECK in a new interpreter that never imports peftbench (PYTHONPATH cleared, cwd outside the repo)."""
    (tmp / "req.json").write_text(json.dumps({"jobs": jobs}))
    (tmp / "check.py").write_text(CHECK)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(tmp / "check.py"), str(tmp / "req.json"), str(tmp / "res.json")],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "res.json").read_text())


def peftbench_logits(run_dir: Path, columns: list[list[str]], qa: bool = False) -> list[np.ndarray]:
    """The logits `peftbench predict` computes: the run loaded by load_run, the same padded batch."""
    run = load_run(run_dir)
    enc = run.tokenizer(*columns, padding=True, return_tensors="pt")
    with torch.no_grad():
        res = run.model(**enc)
    return [res[k].numpy() for k in (["start_logits", "end_logits"] if qa else ["logits"])]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every method trained a few steps on SST-2 rows, exported in every format; then one fresh process per
    format loads them all."""
    root = tmp_path_factory.mktemp("export")
    data = write_glue(root / "data")
    results: dict[str, dict] = {}
    jobs = []
    for method in METHODS:
        run_dir = root / "runs" / method
        train_run(run_dir, data, f"method={method}", "task=sst2", *TINY_METHOD_ARGS.get(method, []))
        results[method] = {"run": run_dir, "want": peftbench_logits(run_dir, [TEXTS])}
        for fmt in ("peft", "merged", "onnx"):
            out = root / "out" / method / fmt
            if fmt == "onnx" and method not in ONNX_SAMPLE and results[method]["merged"][0] == 0:
                results[method][fmt] = (None, "", out)  # merges like one of the sample: see ONNX_SAMPLE
                continue
            code, err = export(run_dir, fmt, out)
            results[method][fmt] = (code, err, out)
            if code == 0:
                jobs.append({"dir": str(out), "format": fmt, "texts": [TEXTS], "qa": False})
    got = fresh_process(jobs, root)
    for method, fmts in results.items():
        for fmt in ("peft", "merged", "onnx"):
            code, err, out = fmts[fmt]
            fmts[fmt] = (code, err, out, got.get(str(out)))
    return results


def _main_err(argv) -> tuple[int, str]:
    import contextlib
    import io

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


def export(run_dir: Path, fmt: str, out: Path) -> tuple[int, str]:
    return _main_err(["export", str(run_dir), "--format", fmt, "--out", str(out)])


def expected(method: str, fmt: str, peft_backed: bool) -> bool | None:
    """True: must export; False: must refuse; None: a method this file does not know (either, checked by form)."""
    if method in NO_PEFT | NO_MERGE or peft_backed:
        return not (fmt == "peft" and method in NO_PEFT or fmt != "peft" and method in NO_MERGE)
    return None


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_every_method_exports_or_refuses_in_one_line(exported, method):
    r = exported[method]
    peft_backed = hasattr(load_run(r["run"]).model, "peft_config")
    for fmt in ("peft", "merged", "onnx"):
        code, err, out, got = r[fmt]
        if code is None:
            assert fmt == "onnx" and method not in ONNX_SAMPLE and r["merged"][0] == 0
            continue
        must = expected(method, fmt, peft_backed)
        if must is False or (must is None and code != 0):
            assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (fmt, err)
            assert err.startswith(f"peftbench: error: export --format {fmt}: method '{method}' "), err
            assert ("--format merged" in err or "--format peft" in err or "peftbench predict" in err), err
            assert not out.exists() or not any(out.iterdir())  # nothing half-written
            continue
        assert code == 0, (fmt, err)
        want = r["want"][0]
        logits = np.asarray(got["logits"][0])
        tol = 1e-4 if fmt == "onnx" else 1e-5
        np.testing.assert_allclose(logits, want, rtol=0, atol=tol, err_msg=f"{method} {fmt}")
        assert (logits.argmax(-1) == want.argmax(-1)).all()
        if fmt == "merged":
            assert got["id2label"] == {"0": "negative", "1": "positive"}
            assert got["pipeline"] == [["negative", "positive"][k] for k in want.argmax(-1)]
        if fmt == "peft":
            assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()


def test_the_refusals_name_the_way_out(exported):
    assert "no peft adapter type holds" in exported["bitfit"]["peft"][1]
    assert exported["bitfit"]["peft"][1].rstrip().endswith("export it with --format merged")
    err = exported["adapter_houlsby"]["merged"][1]
    assert "adds modules the architecture lacks (e.g. bert.encoder.layer.0." in err and "peftbench predict" in err
    assert "wraps the encoder in PromptModel" in exported["prompt"]["merged"][1]


def test_peft_folder_keeps_the_head_in_modules_to_save(exported):
    from safetensors.torch import load_file

    out = exported["lora"]["peft"][2]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["modules_to_save"] == ["classifier"]
    assert config["base_model_name_or_path"] == "base" and (out / "base" / "config.json").is_file()
    names = set(load_file(str(out / "adapter_model.safetensors")))
    assert any("classifier" in n for n in names) and any("lora_A" in n for n in names)


def test_model_card_parses_with_huggingface_hub(exported):
    from huggingface_hub import ModelCard

    run = exported["lora"]["run"]
    rec = json.loads((run / "result.json").read_text())
    for fmt, library in [("peft", "peft"), ("merged", "transformers"), ("onnx", "onnx")]:
        card = ModelCard.load(exported["lora"][fmt][2] / "README.md")
        meta = card.data.to_dict()
        assert meta["library_name"] == library and meta["pipeline_tag"] == "text-classification"
        pb = meta["peftbench"]
        assert (pb["method"], pb["task"], pb["format"]) == ("lora", "sst2", fmt)
        assert pb["trainable_percent"] == rec["trainable_percent"]
        assert pb["dev"] == {"metric": "accuracy", "value": rec["metrics"]["accuracy"]}  # one seed: no interval
        assert pb["train_command"].startswith("peftbench train task=sst2 method=lora model=tiny ")
        assert "max_steps=4" in pb["train_command"] and "lr=0.01" in pb["train_command"]
        assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == rec["metrics"]["accuracy"]


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_card_gives_the_seed_interval_of_sibling_runs(tmp_path):
    data = write_glue(tmp_path / "data")
    for seed in (1, 2, 3):
        train_run(tmp_path / "study" / f"seed{seed}", data, "method=bitfit", "task=sst2", f"seed={seed}")
    train_run(tmp_path / "study" / "other", data, "method=bitfit", "task=sst2", "seed=4", "lr=0.5")  # not a sibling
    code, err = _main_err(["export", str(tmp_path / "study" / "seed1"), "--format", "merged", "--out",
                           str(tmp_path / "out")])
    assert code == 0, err
    from huggingface_hub import ModelCard

    dev = ModelCard.load(tmp_path / "out" / "README.md").data.to_dict()["peftbench"]["dev"]
    values = [json.loads((tmp_path / "study" / f"seed{s}" / "result.json").read_text())["metrics"]["accuracy"]
              for s in (1, 2, 3)]
    from scipy.stats import t

    half = t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert dev["seeds"] == 3 and dev["seed_mean"] == pytest.approx(np.mean(values))
    assert dev["interval95"] == pytest.approx([np.mean(values) - half, np.mean(values) + half])


def test_push_to_hub_uploads_the_folder_through_hfapi(exported, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, folder_path, repo_id, **kw):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return f"https://huggingface.co/{repo_id}/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    code = main(["export", str(exported["lora"]["run"]), "--format", "peft", "--out", str(tmp_path / "o"),
                 "--push-to-hub", "me/sst2-lora"])
    assert code == 0
    assert calls[0] == ("create_repo", "me/sst2-lora", {"repo_type": "model", "exist_ok": True})
    assert calls[1][:2] == ("upload_folder", "me/sst2-lora")
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= set(calls[1][2])

    class Down(FakeApi):
        def create_repo(self, repo_id, **kw):
            raise OSError("no network\nmore")

    monkeypatch.setattr(huggingface_hub, "HfApi", Down)
    code, err = _main_err(["export", str(exported["lora"]["run"]), "--format", "merged", "--out", str(tmp_path / "p"),
                           "--push-to-hub", "me/x"])
    assert code == 2 and err.count("\n") == 1 and "upload failed (no network)" in err
    assert (tmp_path / "p" / "model.safetensors").is_file()  # the export stays on disk


def test_bad_export_arguments_are_one_line(exported, tmp_path):
    run = str(exported["lora"]["run"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    for argv, msg in [(["export", run, "--format", "merged", "--out", str(tmp_path / "full")],
                       "exists and is not empty: give a new folder, or add --overwrite"),
                      (["export", str(tmp_path / "nope"), "--format", "peft", "--out", str(tmp_path / "o")],
                       "does not exist"),
                      (["export", run, "--format", "peft", "--out", str(tmp_path / "o"), "merge=true"],
                       "expected one of model.name_or_path=...")]:
        code, err = _main_err(argv)
        assert code == 2 and msg in err and err.count("\n") == 1, err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_qa_and_pair_runs_export_in_every_format(tmp_path):
    squad = write_squad(tmp_path / "squad")
    data = write_glue(tmp_path / "data")
    qa = tmp_path / "qa"
    train_run(qa, squad, "task=squad", "method=lora", f"task.data_dir={squad}", "task.max_length=48",
              "task.doc_stride=16", "max_steps=2")
    pair = tmp_path / "pair"
    train_run(pair, data, "task=mrpc", "method=ia3", "max_steps=2")
    qa_cols = [["where is it?", "when was it built?"], ["paris, france, since 1889", "it was built in 1889"]]
    pair_cols = [["he said yes", "it rains"], ["he agreed", "it is dry"]]
    jobs = []
    for name, run, cols, is_qa in [("qa", qa, qa_cols, True), ("pair", pair, pair_cols, False)]:
        for fmt in ("peft", "merged", "onnx"):
            code, err = _main_err(["export", str(run), "--format", fmt, "--out", str(tmp_path / f"{name}-{fmt}")])
            assert code == 0, err
            jobs.append({"dir": str(tmp_path / f"{name}-{fmt}"), "format": fmt, "texts": cols, "qa": is_qa})
    got = fresh_process(jobs, tmp_path)
    for job in jobs:
        run = qa if job["qa"] else pair
        want = peftbench_logits(run, job["texts"], job["qa"])
        tol = 1e-4 if job["format"] == "onnx" else 1e-5
        for w, g in zip(want, got[job["dir"]]["logits"]):
            np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=tol, err_msg=job["dir"])
        if job["format"] == "merged" and not job["qa"]:
            assert got[job["dir"]]["id2label"] == {"0": "not_equivalent", "1": "equivalent"}
    from huggingface_hub import ModelCard

    assert ModelCard.load(tmp_path / "qa-merged" / "README.md").data.pipeline_tag == "question-answering"


@pytest.mark.integration
def test_minilm_sst2_lora_exports_load_in_plain_libraries(shared_data, tmp_path):
    """The real base: a MiniLM LoRA run on an SST-2 slice, in each format, loaded in a fresh process; the peft
    folder names the base by its hub id and is loaded on the local copy of it."""
    from peftbench.config.compose import load_config
    from peftbench.models.load import resolve_path
    from peftbench.data.tasks.glue import read_tsv
    from peftbench.engine.train import train

    run = tmp_path / "run"
    data = cut_glue(shared_data, tmp_path / "data", "SST-2", 32)  # the exports are compared on 16 dev sentences
    rec = train(load_config(["model=minilm_l6", "method=lora", "task=sst2", f"data_dir={data}", "train_size=64",
                             "epochs=1", "lr=2e-3", f"out={run}", "tracking.mode=disabled", "forgetting=false"]))
    assert rec["status"] == "completed"
    texts = read_tsv(shared_data / "glue/SST-2/dev.tsv", ["sentence"], "label", ["0", "1"])[0][0][:16]
    jobs = []
    for fmt in ("peft", "merged", "onnx"):
        code, err = _main_err(["export", str(run), "--format", fmt, "--out", str(tmp_path / fmt)])
        assert code == 0, err
        jobs.append({"dir": str(tmp_path / fmt), "format": fmt, "texts": [texts], "qa": False})
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    config["base_model_name_or_path"] = resolve_path(load_config(["model=minilm_l6"]).model)  # offline: the local copy
    (tmp_path / "peft" / "adapter_config.json").write_text(json.dumps(config))
    got = fresh_process(jobs, tmp_path)
    want = peftbench_logits(run, [texts])[0]
    for job in jobs:
        logits = np.asarray(got[job["dir"]]["logits"][0])
        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-4 if job["format"] == "onnx" else 1e-5)
        assert (logits.argmax(-1) == want.argmax(-1)).all()
