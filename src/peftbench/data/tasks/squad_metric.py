"""SQuAD v1.1 exact match and F1, rule for rule as the official `evaluate-v1.1.py` (Rajpurkar et al. 2016).

Answers are normalized (lower-case, punctuation removed, articles a/an/the removed, whitespace collapsed);
a prediction scores the max over a question's gold answers; both metrics are the mean over all questions x 100,
and a question with no prediction scores 0, as the official script counts it.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def max_over_ground_truths(fn: Callable[[str, str], float], prediction: str, ground_truths: Iterable[str]) -> float:
    return max(fn(prediction, gt) for gt in ground_truths)


def evaluate(golds: Mapping[str, list[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """{exact_match, f1} in percent over every question in `golds` (id -> its gold answer texts)."""
    em = f1 = 0.0
    for qid, answers in golds.items():
        if qid not in predictions:  # the official script: "Unanswered question ... will receive score 0."
            continue
        em += max_over_ground_truths(exact_match_score, predictions[qid], answers)
        f1 += max_over_ground_truths(f1_score, predictions[qid], answers)
    n = len(golds)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


def golds_of(dataset: list[dict[str, Any]]) -> dict[str, list[str]]:
    """id -> gold texts from the `data` list of an official SQuAD JSON file."""
    return {qa["id"]: [a["text"] for a in qa["answers"]]
            for article in dataset for paragraph in article["paragraphs"] for qa in paragraph["qas"]}
