"""Proof on real data (MiniLM + /work/shared/data): a GLUE task written out as one's own file and trained as
task=classification (SST-2 as CSV; MRPC as JSONL with text_pair), and SQuAD's devsplit through task=qa, give the SAME
dev metrics and the SAME trained tensors as the built-in task on the same seed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import cut_glue

from peftbench.cli import main
from peftbench.data.tasks import glue

pytestmark = pytest.mark.integration
RUN = ["model=minilm_l6", "method=bitfit", "seed=7", "train_size=64", "max_steps=8", "tracking.mode=disabled",
       "eval_batch_size=64"]


def same_run(a: Path, b: Path) -> None:
    ra, rb = (json.loads((x / "result.json").read_text()) for x in (a, b))
    assert ra["status"] == rb["status"] == "completed"
    assert ra["metrics"] == rb["metrics"] and ra["eval_examples"] == rb["eval_examples"]
    ta, tb = load_file(str(a / "delta.safetensors")), load_file(str(b / "delta.safetensors"))
    assert sorted(ta) == sorted(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_sst2_as_a_csv_trains_exactly_as_task_sst2(shared_data, tmp_path):
    root = cut_glue(shared_data, tmp_path / "data", "SST-2", 64)
    cfg_rows = {}
    for split in ("train", "dev"):
        texts, labels = glue.read_tsv(root / "glue/SST-2" / f"{split}.tsv", ["sentence"], "label", ["0", "1"])
        path = tmp_path / f"{split}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "y"])
            w.writerows(zip(texts[0], labels))
        cfg_rows[split] = path
    assert main(["train", *RUN, "task=sst2", f"data_dir={root}", f"out={tmp_path / 'a'}"]) == 0
    assert main(["train", *RUN, "task=classification", f"task.train={cfg_rows['train']}",
                 f"task.dev={cfg_rows['dev']}", "task.text=text", "task.label=y", f"out={tmp_path / 'b'}"]) == 0
    same_run(tmp_path / "a", tmp_path / "b")


def test_mrpc_as_jsonl_with_a_text_pair_trains_exactly_as_task_mrpc(shared_data, tmp_path):
    root = cut_glue(shared_data, tmp_path / "data", "MRPC", 40)
    files = {}
    for split in ("train", "dev"):
        texts, labels = glue.read_tsv(root / "glue/MRPC" / f"{split}.tsv", ["#1 String", "#2 String"], "Quality",
                                      ["0", "1"])
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps({"s1": a, "s2": b, "paraphrase": y}) + "\n"
                                        for a, b, y in zip(*texts, labels)))
    assert main(["train", *RUN, "task=mrpc", f"data_dir={root}", f"out={tmp_path / 'a'}"]) == 0
    assert main(["train", *RUN, "task=classification", f"task.train={files['train']}", f"task.dev={files['dev']}",
                 "task.text=s1", "task.text_pair=s2", "task.label=paraphrase", f"out={tmp_path / 'b'}"]) == 0
    same_run(tmp_path / "a", tmp_path / "b")
    assert json.loads((tmp_path / "b" / "result.json").read_text())["metrics"].keys() == {"accuracy", "f1"}


def test_squad_devsplit_through_task_qa_trains_exactly_as_task_squad(shared_data, tmp_path):
    folder = tmp_path / "squad"
    folder.mkdir()
    (folder / "train-v1.1.json").symlink_to(shared_data / "squad-devsplit" / "train-v1.1.json")
    dev = json.loads((shared_data / "squad-devsplit" / "dev-v1.1.json").read_text())
    dev["data"] = [{**dev["data"][0], "paragraphs": dev["data"][0]["paragraphs"][:3]}]  # a few questions: fast
    (folder / "dev-v1.1.json").write_text(json.dumps(dev))
    qa = ["task.max_length=192", "task.doc_stride=48", "train_size=12", "batch_size=4", "max_steps=3"]  # CPU-cheap
    assert main(["train", *RUN, *qa, "task=squad", f"task.data_dir={folder}", f"out={tmp_path / 'a'}"]) == 0
    assert main(["train", *RUN, *qa, "task=qa", f"task.train={folder / 'train-v1.1.json'}",
                 f"task.dev={folder / 'dev-v1.1.json'}", f"out={tmp_path / 'b'}"]) == 0
    same_run(tmp_path / "a", tmp_path / "b")
