"""Local copies of the hub's repositories, in their exact layout, for tests of the hub branches (no network).

- nyu-mll/glue: README.md whose YAML `configs` map each config to `<config>/<split>-*` parquet files, e.g.
  `sst2/train-00000-of-00001.parquet`; columns sentence (sst2) or sentence1, sentence2 (mrpc, rte), label as a
  ClassLabel, idx int32; splits train, validation, test (test labels are -1).
- rajpurkar/squad: README.md with config `plain_text` -> `plain_text/{train,validation}-*` parquet; columns id, title,
  context, question, answers {text: [str], answer_start: [int32]}.
- A model in the Hugging Face cache: HF_HOME/hub/models--ORG--NAME/{blobs/, snapshots/<rev>/, refs/main}.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value

# config -> (TSV folder, TSV text columns, hub text columns, TSV label column, class names in the hub's order)
GLUE = {
    "sst2": ("SST-2", ["sentence"], ["sentence"], "label", ["negative", "positive"], ["0", "1"]),
    "mrpc": ("MRPC", ["#1 String", "#2 String"], ["sentence1", "sentence2"], "Quality",
             ["not_equivalent", "equivalent"], ["0", "1"]),
    "rte": ("RTE", ["sentence1", "sentence2"], ["sentence1", "sentence2"], "label", ["entailment", "not_entailment"],
            ["entailment", "not_entailment"]),
}


def read_raw_tsv(path: Path, limit: int | None) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[:limit]


def glue_repo(root: Path, data_dir: Path, limit: int | None = None) -> Path:
    """`root/glue`: sst2, mrpc, rte built from data_dir's GLUE TSVs (the first `limit` rows of each split)."""
    repo = root / "glue"
    configs, infos = [], []
    for name, (folder, tsv_cols, hub_cols, label_col, names, raw_labels) in GLUE.items():
        features = Features({**{c: Value("string") for c in hub_cols}, "label": ClassLabel(names=names),
                             "idx": Value("int32")})
        splits = {}
        for split, tsv in (("train", "train"), ("validation", "dev"), ("test", "dev")):
            rows = read_raw_tsv(data_dir / "glue" / folder / f"{tsv}.tsv", limit if split != "test" else 5)
            cols = {h: [r[t] for r in rows] for h, t in zip(hub_cols, tsv_cols)}
            labels = [-1] * len(rows) if split == "test" else [raw_labels.index(r[label_col].strip()) for r in rows]
            ds = Dataset.from_dict({**cols, "label": labels, "idx": list(range(len(rows)))}, features=features)
            (repo / name).mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(repo / name / f"{split}-00000-of-00001.parquet"))
            splits[split] = (len(rows), ds.data.nbytes)
        configs.append(f"- config_name: {name}\n  data_files:\n" + "".join(
            f"  - split: {s}\n    path: {name}/{s}-*\n" for s in splits))
        infos.append(f"- config_name: {name}\n  features:\n" + "".join(
            f"  - name: {c}\n    dtype: string\n" for c in hub_cols)
            + "  - name: label\n    dtype:\n      class_label:\n        names:\n"
            + "".join(f"          '{i}': {n}\n" for i, n in enumerate(names))
            + "  - name: idx\n    dtype: int32\n  splits:\n"
            + "".join(f"  - name: {s}\n    num_bytes: {b}\n    num_examples: {n}\n" for s, (n, b) in splits.items()))
    (repo / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "dataset_info:\n" + "".join(infos)
                                    + "---\n# GLUE (a local copy in the hub's layout, for tests)\n")
    return repo


def squad_rows(path: Path, limit: int | None) -> dict[str, list]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    cols: dict[str, list] = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for article in doc["data"]:
        for par in article["paragraphs"]:
            for qa in par["qas"]:
                cols["id"].append(qa["id"])
                cols["title"].append(article.get("title", ""))
                cols["context"].append(par["context"])
                cols["question"].append(qa["question"])
                cols["answers"].append({"text": [a["text"] for a in qa["answers"]],
                                        "answer_start": [a["answer_start"] for a in qa["answers"]]})
    return {k: v[:limit] for k, v in cols.items()}


def squad_repo(root: Path, train_json: Path, dev_json: Path, limit: int | None = None) -> Path:
    """`root/squad`: the `plain_text` config of rajpurkar/squad from two official SQuAD v1.1 JSON files."""
    repo = root / "squad"
    (repo / "plain_text").mkdir(parents=True, exist_ok=True)
    features = Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                         "question": Value("string"),
                         "answers": Sequence({"text": Value("string"), "answer_start": Value("int32")})})
    for split, path in (("train", train_json), ("validation", dev_json)):
        Dataset.from_dict(squad_rows(path, limit), features=features).to_parquet(
            str(repo / "plain_text" / f"{split}-00000-of-00001.parquet"))
    (repo / "README.md").write_text(
        "---\ndataset_info:\n  config_name: plain_text\n  features:\n  - name: id\n    dtype: string\n"
        "  - name: title\n    dtype: string\n  - name: context\n    dtype: string\n  - name: question\n"
        "    dtype: string\n  - name: answers\n    sequence:\n    - name: text\n      dtype: string\n"
        "    - name: answer_start\n      dtype: int32\nconfigs:\n- config_name: plain_text\n  data_files:\n"
        "  - split: train\n    path: plain_text/train-*\n  - split: validation\n    path: plain_text/validation-*\n"
        "  default: true\n---\n# SQuAD v1.1 (a local copy in the hub's layout, for tests)\n")
    return repo


def model_cache(hf_home: Path, repo_id: str, folder: Path, revision: str = "0" * 40) -> Path:
    """HF_HOME/hub/models--ORG--NAME as huggingface_hub leaves it: blobs by hash, snapshot links, refs/main."""
    base = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (base / "blobs").mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(revision)
    snap = base / "snapshots" / revision
    for f in Path(folder).rglob("*"):
        if not f.is_file():
            continue
        blob = base / "blobs" / hashlib.sha256(str(f).encode()).hexdigest()  # names only need to be unique here
        if not blob.exists():
            os.symlink(f.resolve(), blob)
        link = snap / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return base
