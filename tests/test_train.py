"""The CLI and the loop end to end on the tiny model: result.json, determinism, schedule, clear errors."""

from __future__ import annotations

import json
import os

import numpy as np

import pytest

from peftbench.cli import main


def run(tmp_path, glue_dir, name, *extra):
    out = tmp_path / name
    code = main(["train", "model=tiny", "task=mrpc", f"data_dir={glue_dir}", f"out={out}", "max_steps=6",
                 "tracking.mode=disabled", *extra])
    assert code == 0
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("method", ["full", "bitfit", "lora", "prompt"])
def test_train_writes_a_complete_record(tmp_path, glue_dir, method):
    rec = run(tmp_path, glue_dir, method, f"method={method}")
    assert rec["status"] == "completed" and rec["error"] is None
    assert rec["run"] == {"task": "mrpc", "method": method, "model": "tiny", "seed": 42, "train_size": None,
                          "data_seed": 42}  # no data_seed given: the training seed draws the data
    assert set(rec["metrics"]) == {"accuracy", "f1"} and rec["primary_metric"] == "f1"
    assert rec["train_steps"] == 6 and rec["train_examples"] == 24 and rec["eval_examples"] == 24
    assert 0 < rec["trainable_params"] <= rec["total_params"]
    for key in ("train_time_s", "train_samples_per_s", "train_flops", "peak_memory_bytes", "delta_bytes"):
        assert rec[key] > 0, key
    assert {"python", "torch", "transformers", "peft"} <= set(rec["versions"])
    assert (tmp_path / method / "train.log").read_text().count("step 6/6") == 1
    assert (tmp_path / method / "delta.safetensors").is_file()


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_same_command_twice_gives_identical_metrics(tmp_path, glue_dir):
    a = run(tmp_path, glue_dir, "a", "method=lora", "max_steps=8")
    b = run(tmp_path, glue_dir, "b", "method=lora", "max_steps=8")
    assert a["metrics"] == b["metrics"] and a["identity"] == b["identity"]
    c = run(tmp_path, glue_dir, "c", "method=lora", "max_steps=8", "seed=7")
    assert c["identity"] != a["identity"]


def test_epoch_schedule_and_lr_override(tmp_path, glue_dir):
    rec = run(tmp_path, glue_dir, "e", "method=bitfit", "max_steps=null", "epochs=2", "batch_size=8", "lr=1e-3")
    assert rec["train_steps"] == 6 and rec["schedule"] == "epochs" and rec["lr"] == 1e-3  # 2 x ceil(24/8)


@pytest.mark.parametrize("args,message", [
    (["task=nope"], "unknown task 'nope': pick one of"),
    (["method=adapters"], "unknown method 'adapters'"),
    (["model=gpt9"], "unknown model 'gpt9'"),
    (["lr=-1"], "lr=-1 must be > 0"),
    (["batch_size=0"], "batch_size=0 must be > 0"),
    (["epochs=0"], "epochs=0 must be > 0"),
    (["method=lora", "method.r=0"], "method.r=0 must be > 0"),
    (["method=prompt", "method.num_virtual_tokens=-3"], "method.num_virtual_tokens=-3 must be > 0"),
    (["train_size=0"], "train_size=0 must be > 0"),
    (["threads=0"], "threads=0 must be > 0"),
    (["learning_rate=3"], "unknown key"),
    (["model.name_or_path=/no/such/dir", "model.tiny=null"], "model folder /no/such/dir does not exist"),
    (["data_dir=/no/such/data"], "not found: set data_dir"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = main(["train", "model=tiny", "tracking.mode=disabled", f"out={tmp_path / 'x'}", "data_dir=/tmp", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_help_lists_the_keys(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "method=full|bitfit|bitfit_subset|lora|prompt" in text and "warmup_ratio: 0.1" in text


def test_diverging_loss_ends_the_run_as_diverged_with_the_step_and_the_trivial_score(tmp_path, glue_dir, capsys):
    out = tmp_path / "nan"
    code = main(["train", "model=tiny", "task=rte", "method=full", "lr=1e30", "max_steps=10", "log_every=5",
                 f"data_dir={glue_dir}", f"out={out}", "tracking.mode=disabled"])
    err = capsys.readouterr().err
    assert code == 1 and "loss is nan at step 5" in err and "lower the learning rate" in err and "Traceback" not in err
    rec = json.loads((out / "result.json").read_text())
    assert rec["status"] == "diverged" and rec["diverged_at_step"] == 5 and "step 5" in rec["error"]
    # the trivial prediction: the training rows' majority class for every dev row, scored by the task's metrics
    from peftbench.config.compose import load_config
    from peftbench.data.tasks import glue
    from peftbench.models.load import tiny_tokenizer

    data = glue.load(load_config(["model=tiny", "task=rte", f"data_dir={glue_dir}"]), tiny_tokenizer())
    train_y, dev_y = np.asarray(data.train.columns["labels"]), data.meta["labels"]
    majority = int(np.bincount(train_y).argmax())
    assert rec["metrics"]["accuracy"] == pytest.approx(100 * float(np.mean(dev_y == majority)), abs=1e-3)


def test_unwritable_output_folder_is_one_line(tmp_path, glue_dir, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    code = main(["train", "model=tiny", f"data_dir={glue_dir}", f"out={locked / 'run'}", "tracking.mode=disabled"])
    err = capsys.readouterr().err
    locked.chmod(0o700)
    if os.geteuid() == 0:  # root ignores permission bits; a read-only path outside tmp makes the same point
        code = main(["train", "model=tiny", f"data_dir={glue_dir}", "out=/proc/peftbench-run", "tracking.mode=disabled"])
        err = capsys.readouterr().err
    assert code == 2 and "cannot write the run folder" in err and "pick another out=" in err


@pytest.mark.parametrize("files,message", [
    ([], "has no config.json"),
    (["config.json"], "has no *.safetensors weights"),
])
def test_model_folder_without_config_or_weights_is_one_line(tmp_path, glue_dir, capsys, files, message):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}")
    code = main(["train", f"model.name_or_path={folder}", "model=bert_base", f"data_dir={glue_dir}",
                 f"out={tmp_path / 'x'}", "tracking.mode=disabled"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(folder) in err and "Traceback" not in err


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_trains_close_to_fp32(tmp_path, glue_dir, precision):
    """fp16 (with its GradScaler) and bf16 (none) run the same loop; on CPU too, so CI covers both paths."""
    import torch
    from safetensors.torch import load_file

    ref = run(tmp_path, glue_dir, "fp32", "method=lora", "precision=fp32")
    rec = run(tmp_path, glue_dir, precision, "method=lora", f"precision={precision}")
    assert (ref["precision"], rec["precision"]) == ("no", precision) and rec["identity"] != ref["identity"]
    a, b = load_file(tmp_path / "fp32" / "delta.safetensors"), load_file(tmp_path / precision / "delta.safetensors")
    assert a.keys() == b.keys() and all(torch.isfinite(b[k]).all() for k in b)
    # the same training up to rounding: every tensor within a few half-precision steps of the fp32 run
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 0.05


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_it_warns_once(tmp_path, glue_dir, capsys, monkeypatch, native):
    """Emulated bf16 is slow, not wrong: the run completes, and says so on stderr and in train.log."""
    from peftbench.engine import train

    monkeypatch.setattr(train, "cpu_has_bf16", lambda: native)
    rec = run(tmp_path, glue_dir, "bf16", "method=bitfit", "precision=bf16")
    err, log = capsys.readouterr().err, (tmp_path / "bf16" / "train.log").read_text()
    assert rec["status"] == "completed" and rec["precision"] == "bf16"
    assert err.count("without native bf16") == log.count("without native bf16") == (0 if native else 1)
    run(tmp_path, glue_dir, "fp32", "method=bitfit", "precision=fp32")  # fp32 never warns
    assert "without native bf16" not in capsys.readouterr().err


def test_padding_to_a_multiple_does_not_change_what_is_trained(tmp_path, glue_dir):
    import torch
    from safetensors.torch import load_file

    # dropout off: dropout draws a mask for the padded positions too, so with it the two runs see different (equally
    # random) masks; without it the padding is masked out and the training is the same up to float rounding
    off = ["+model.tiny.hidden_dropout_prob=0.0", "+model.tiny.attention_probs_dropout_prob=0.0"]
    a = run(tmp_path, glue_dir, "p1", "method=full", "pad_multiple=1", *off)
    b = run(tmp_path, glue_dir, "p8", "method=full", "pad_multiple=8", *off)
    assert a["identity"] == b["identity"] and a["metrics"] == b["metrics"]
    assert b["train_flops"] > a["train_flops"]  # the padded tokens are counted: more work, same result
    da, db = (load_file(tmp_path / d / "delta.safetensors") for d in ("p1", "p8"))
    assert all(torch.allclose(da[k], db[k], atol=1e-5) for k in da)


def test_threads_set_torchs_count_for_the_run_and_give_it_back(tmp_path, glue_dir):
    import torch

    before = torch.get_num_threads()
    a = run(tmp_path, glue_dir, "t2", "method=bitfit", "threads=2")
    assert a["machine"]["cpu_threads"] == 2 and a["config"]["threads"] == 2
    assert torch.get_num_threads() == before  # the session's own count is back
    b = run(tmp_path, glue_dir, "t1", "method=bitfit", "threads=1")
    assert b["machine"]["cpu_threads"] == 1
    assert a["identity"] == b["identity"]  # the same experiment: only the order of the sums differs
    c = run(tmp_path, glue_dir, "t", "method=bitfit")
    assert c["machine"]["cpu_threads"] == before and c["config"]["threads"] is None
