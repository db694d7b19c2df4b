"""GLUE sentence(-pair) classification: SST-2, MRPC, RTE are rows of a table (their task configs).

Local files are read in GLUE's TSV layout as `download_glue_data.py` writes it: UTF-8 (MRPC starts with a BOM),
tab-separated, quote characters are text (no CSV quoting), labels as written ("0"/"1" or RTE's strings).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torchmetrics.functional.classification import binary_f1_score, multiclass_accuracy, multiclass_f1_score

from ..errors import UserError

HEAD = "seq_cls"


def read_tsv(path: Path, text_fields: list[str], label_field: str, labels: list[str]) -> tuple[list[list[str]], list[int]]:
    """Texts (one list per field) and class ids; every problem is one UserError naming file and line."""
    if not path.is_file():
        raise UserError(f"data file {path} not found: set data_dir to the folder holding {path.parent.parent.name}/{path.parent.name}/")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 at byte {e.start}: re-save the file as UTF-8") from None
    if not rows:
        raise UserError(f"{path} is empty: expected a header line with {text_fields + [label_field]}")
    header = rows[0]
    missing = [c for c in text_fields + [label_field] if c not in header]
    if missing:
        raise UserError(f"{path}:1: missing column(s) {missing}; the header has {header}")
    cols = [header.index(c) for c in text_fields]
    label_col = header.index(label_field)
    label_id = {name: i for i, name in enumerate(labels)}
    texts: list[list[str]] = [[] for _ in text_fields]
    ids: list[int] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserError(f"{path}:{lineno}: {len(row)} fields, the header has {len(header)}")
        label = row[label_col].strip()
        if label not in label_id:
            raise UserError(f"{path}:{lineno}: label '{label}' is not one of {labels}")
        for t, c in zip(texts, cols):
            t.append(row[c])
        ids.append(label_id[label])
    if not ids:
        raise UserError(f"{path} has a header but no rows")
    return texts, ids


def read_split(cfg: DictConfig, split: str) -> tuple[list[list[str]], list[int]]:
    task = cfg.task
    if cfg.data_dir is None:  # the hub: GLUE's own columns and integer labels
        from .hub import load_split

        columns = load_split(task.hub, split).to_dict()  # whole columns at once (iterating one is row by row)
        return [columns[c] for c in task.hub_text_fields], columns["label"]
    return read_tsv(Path(cfg.data_dir) / task.dir / f"{split}.tsv", list(task.text_fields), task.label_field,
                    [str(x) for x in task.labels])


def load(cfg: DictConfig, tokenizer):
    from ..data import Packed
    from . import TaskData, subset_indices

    train_texts, train_labels = read_split(cfg, "train")
    if cfg.train_size is not None and cfg.train_size > len(train_labels):
        raise UserError(f"train_size={cfg.train_size} is above the {len(train_labels)} training rows of {cfg.task.name}")
    keep = subset_indices(len(train_labels), cfg.train_size, cfg.seed)
    train_texts = [[t[i] for i in keep] for t in train_texts]
    train_labels = [train_labels[i] for i in keep]
    eval_texts, eval_labels = read_split(cfg, "dev")

    def encode(texts: list[list[str]], labels: list[int]) -> Packed:
        enc = tokenizer(*texts, truncation=True, max_length=cfg.task.max_length)
        return Packed.from_lists({**enc, "labels": labels}, tokenizer.pad_token_id)

    return TaskData(train=encode(train_texts, train_labels), eval=encode(eval_texts, eval_labels),
                    num_labels=len(cfg.task.labels), train_examples=len(train_labels),
                    eval_examples=len(eval_labels), meta={"labels": np.array(eval_labels)})


def score(data, outputs: dict[str, list[np.ndarray]]) -> tuple[dict[str, float], list[int]]:
    """Accuracy and F1 (binary: of class 1, as GLUE reports MRPC; else macro) in percent."""
    preds = torch.from_numpy(np.stack(outputs["logits"]).argmax(-1))
    target = torch.from_numpy(data.meta["labels"])
    k = data.num_labels
    acc = multiclass_accuracy(preds, target, num_classes=k, average="micro")
    f1 = binary_f1_score(preds, target) if k == 2 else multiclass_f1_score(preds, target, num_classes=k, average="macro")
    return {"accuracy": round(100 * acc.item(), 4), "f1": round(100 * f1.item(), 4)}, preds.tolist()
