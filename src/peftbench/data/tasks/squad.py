"""SQuAD v1.1 extractive QA: official JSON in, sliding windows with start/end labels, answers cut back out by offsets.

Preprocessing and postprocessing follow the Hugging Face reference recipe (`run_qa.py`): question + context pairs,
truncation "only_second", `max_length` / `doc_stride` windows; a window not holding the whole answer is labelled at
[CLS] (index 0). An answer is the best start + end logit over a question's windows among the top `n_best` of each,
inside the context, end >= start, at most `max_answer_length` tokens. Scores: squad_metric (the official v1.1 rules).
Unlike the reference, label search stays inside the context tokens (the reference can label an answer that ends the
window at [SEP]) and over-long questions are cut to leave room for the stride (the reference crashes on them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ...errors import UserError
from ...record import write_json_atomic
from . import squad_metric

HEAD = "qa"
FILES = {"train": "train-v1.1.json", "dev": "dev-v1.1.json"}
Example = dict[str, Any]  # id, question, context, answers (gold texts), spans ((char start, text) whose offset is right)


def _layout_error(path: Path, where: str, what: str) -> UserError:
    return UserError(f"{path}: not the SQuAD v1.1 layout at {where}: {what} (expected data[].paragraphs[].context and "
                     "qas[].{id, question, answers[].{text, answer_start}})")


def check_answers(qid: str, context: str, texts: list[str], starts: list[int]) -> tuple[list[tuple[int, str]], list[str]]:
    """The (answer_start, text) spans that sit where they say in the context, and one reason per answer that does not."""
    spans, bad = [], []
    for start, text in zip(starts, texts):
        if not text:
            bad.append(f"question {qid}: an answer text is empty")
        elif not 0 <= start <= len(context) - len(text):
            bad.append(f"question {qid}: answer_start {start} is outside its {len(context)}-character context")
        elif context[start : start + len(text)] != text:
            bad.append(f"question {qid}: the context at answer_start {start} reads "
                       f"{context[start : start + len(text)]!r}, not the answer {text!r}")
        else:
            spans.append((start, text))
    return spans, bad


def read_squad(path: Path) -> tuple[list[Example], list[str]]:
    """The questions of an official SQuAD v1.1 file, and one line per answer whose answer_start is off its context."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a SQuAD JSON file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise _layout_error(path, "the top level", "no `data` list")
    if str(doc.get("version", "1.1")).lstrip("v").startswith("2"):
        raise UserError(f"{path} is SQuAD {doc['version']}: only v1.1 (every question answerable) is supported")
    examples, bad = [], []
    for a, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise _layout_error(path, f"data[{a}]", "no `paragraphs` list")
        for p, par in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(par, dict) or not isinstance(par.get("context"), str) or not isinstance(par.get("qas"), list):
                raise _layout_error(path, where, "no `context` string or `qas` list")
            context = par["context"]
            for q, qa in enumerate(par["qas"]):
                ok = (isinstance(qa, dict) and isinstance(qa.get("id"), str) and isinstance(qa.get("question"), str)
                      and isinstance(qa.get("answers"), list)
                      and all(isinstance(x, dict) and isinstance(x.get("text"), str)
                              and isinstance(x.get("answer_start"), int) and not isinstance(x["answer_start"], bool)
                              for x in qa["answers"]))
                if not ok:
                    raise _layout_error(path, f"{where}.qas[{q}]", "a field is missing or of the wrong type")
                if qa.get("is_impossible"):
                    raise UserError(f"{path}: {where}.qas[{q}] is unanswerable (SQuAD v2): only v1.1 is supported")
                texts = [x["text"] for x in qa["answers"]]
                spans, wrong = check_answers(qa["id"], context, texts, [x["answer_start"] for x in qa["answers"]])
                bad += wrong
                examples.append({"id": qa["id"], "question": qa["question"], "context": context, "answers": texts,
                                 "spans": spans, "title": str(article.get("title", a))})
    return examples, bad


def read_hub(repo, split: str) -> tuple[list[Example], list[str]]:
    """The same examples from the hub's SQuAD parquet (id, title, context, question, answers{text, answer_start})."""
    from .hub import load_split

    ds = load_split(repo, split)
    examples, bad = [], []
    for r in ds:
        texts, starts = list(r["answers"]["text"]), list(r["answers"]["answer_start"])
        spans, wrong = check_answers(r["id"], r["context"], texts, starts)
        bad += wrong
        examples.append({"id": r["id"], "question": r["question"], "context": r["context"], "answers": texts,
                         "spans": spans, "title": r.get("title") or r["context"]})
    return examples, bad


def read_split(cfg: DictConfig, split: str) -> tuple[list[Example], list[str], str]:
    """Examples, one line per answer with a wrong offset, and where they came from: task.train / task.dev (a user's
    files, task=qa), else task.data_dir, else ${data_dir}/squad, else the hub (task.hub [+ task.hub_config])."""
    own = cfg.task.get(split)
    if own:
        path = Path(str(own)).expanduser()
        if not path.is_file():
            raise UserError(f"QA {split} file {path} not found: set task.{split}= to a JSON file in SQuAD v1.1's layout")
        examples, bad = read_squad(path)
        if not examples:
            raise UserError(f"{path} holds no questions")
        return examples, bad, str(path)
    folder = cfg.task.get("data_dir") or (Path(cfg.data_dir) / "squad" if cfg.data_dir and "train" not in cfg.task
                                          else None)  # task=qa: its own files or the hub, never ${data_dir}/squad
    if folder is None:
        if not cfg.task.get("hub"):
            raise UserError(f"task={cfg.task.name} needs its data: set task.train=FILE and task.dev=FILE (SQuAD v1.1 "
                            "JSON), or task.hub=ID [task.hub_config=NAME] (a dataset with SQuAD's columns)")
        hub = [cfg.task.hub, cfg.task.hub_config] if cfg.task.get("hub_config") else cfg.task.hub
        examples, bad = read_hub(hub, split)
        return examples, bad, "/".join(map(str, hub)) if isinstance(hub, list) else hub
    path = Path(folder) / FILES[split]
    if not path.is_file():
        hint = " (no offline train file exists for SQuAD: use task.data_dir=/path/to/shared/data/squad-devsplit, " \
               "dev questions split by article)" if split == "train" else ""
        raise UserError(f"SQuAD {split} file {path} not found: set task.data_dir to a folder holding "
                        f"{FILES['train']} and {FILES['dev']}{hint}")
    examples, bad = read_squad(path)
    if not examples:
        raise UserError(f"{path} holds no questions")
    return examples, bad, str(path)


def fit_questions(questions: list[str], tokenizer, max_length: int, doc_stride: int) -> tuple[list[str], int]:
    """Questions cut (at a token boundary) so every window keeps more than doc_stride context tokens."""
    limit = max_length - tokenizer.num_special_tokens_to_add(pair=True) - doc_stride - 1
    if limit < 1:
        raise UserError(f"task.doc_stride={doc_stride} leaves no room in task.max_length={max_length}: "
                        "use a doc_stride well below max_length (the reference uses 128 of 384)")
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out, cut = [], 0
    for q, offsets in zip(questions, enc["offset_mapping"]):
        if len(offsets) > limit:
            q, cut = q[: offsets[limit - 1][1]], cut + 1
        out.append(q)
    return out, cut


def windows(examples: list[Example], tokenizer, task: DictConfig) -> tuple[dict[str, list], np.ndarray, list[np.ndarray], int]:
    """Model inputs of every window, the question each came from, its offsets ((-1, -1) off the context), cut count."""
    questions, cut = fit_questions([e["question"].lstrip() for e in examples], tokenizer, task.max_length,
                                   task.doc_stride)
    enc = tokenizer(questions, [e["context"] for e in examples], truncation="only_second", max_length=task.max_length,
                    stride=task.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    offsets = []
    for i, off in enumerate(enc["offset_mapping"]):
        off = np.array(off, dtype=np.int64).reshape(-1, 2)
        off[np.array([s != 1 for s in enc.sequence_ids(i)])] = -1
        offsets.append(off)
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    return inputs, np.array(enc["overflow_to_sample_mapping"]), offsets, cut


def answer_tokens(offsets: np.ndarray, start_char: int, end_char: int) -> tuple[int, int]:
    """First and last token of the answer chars [start_char, end_char) if the window holds them all, else (0, 0)."""
    ctx = np.flatnonzero(offsets[:, 0] >= 0)
    if len(ctx) == 0 or offsets[ctx[0], 0] > start_char or offsets[ctx[-1], 1] < end_char:
        return 0, 0
    return int(ctx[offsets[ctx, 0] <= start_char][-1]), int(ctx[offsets[ctx, 1] >= end_char][0])


def train_windows(examples: list[Example], tokenizer, task: DictConfig) -> tuple[dict[str, list], np.ndarray, list[np.ndarray], int]:
    """`windows` plus start/end_positions from each question's first answer with a correct offset."""
    inputs, owner, offsets, cut = windows(examples, tokenizer, task)
    labels = [answer_tokens(off, examples[j]["spans"][0][0], examples[j]["spans"][0][0] + len(examples[j]["spans"][0][1]))
              for off, j in zip(offsets, owner)]
    inputs["start_positions"] = [s for s, _ in labels]
    inputs["end_positions"] = [e for _, e in labels]
    return inputs, owner, offsets, cut


def load(cfg: DictConfig, tokenizer):
    from ..batches import Packed
    from . import TaskData, subset_indices, train_rows

    task = cfg.task
    for key in ("max_length", "doc_stride", "max_answer_length", "n_best", "eval_size"):
        value = task.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise UserError(f"task.{key}={value!r} must be a positive whole number")
    train, train_bad, train_src = read_split(cfg, "train")
    pool = [e for e in train if e["spans"]]
    if not pool:
        raise UserError(f"{train_src}: none of its {len(train)} questions has an answer at its answer_start "
                        f"(first: {train_bad[0] if train_bad else 'no answers'}): fix the offsets or use another file")
    # the holdout takes whole articles (SQuAD's title; the context without one): no passage on both sides
    keep, held, desc = train_rows(cfg, len(pool), groups=[e.get("title") or e["context"] for e in pool],
                                  ids=[e["id"] for e in pool], unit=f"training questions in {train_src}")
    if cfg.get("eval_split") == "holdout":  # dev is not read at all; eval_size applies to dev only
        dev, dev_bad, dev_src = [pool[i] for i in held], [], f"the holdout of {train_src}"
    else:
        dev, dev_bad, dev_src = read_split(cfg, "dev")
        if len({e["id"] for e in dev}) != len(dev):
            raise UserError(f"{dev_src}: question ids are not unique, so predictions.json cannot key answers by id")
        dev = [e for e in dev if e["answers"]]
        if not dev:
            raise UserError(f"{dev_src}: no question has an answer to score against")
        if task.get("eval_size") is not None:  # one fixed subset for every seed, so runs stay comparable
            dev = [dev[i] for i in subset_indices(len(dev), min(task.eval_size, len(dev)), 0)]
    from ...config.crosscheck import qa

    qa(task, train, dev, train_src, dev_src)
    held_ids = None if held is None else [pool[i]["id"] for i in held]
    pool = [pool[i] for i in keep]

    train_inputs, _, _, train_cut = train_windows(pool, tokenizer, task)
    eval_inputs, owner, offsets, eval_cut = windows(dev, tokenizer, task)
    notes = [f"squad: train {len(pool)} questions -> {len(train_inputs['input_ids'])} windows "
             f"(max_length {task.max_length}, doc_stride {task.doc_stride}) from {train_src}; "
             f"eval {len(dev)} questions -> {len(eval_inputs['input_ids'])} windows from {dev_src}"]
    if train_bad or dev_bad:  # as the reference preprocessing does: skipped and counted, never a crash
        first = (train_bad or dev_bad)[0]
        notes.append(f"squad: skipped answers whose answer_start does not match the context: {len(train_bad)} in "
                     f"{train_src} ({len(train) - sum(1 for e in train if e['spans'])} question(s) without a usable "
                     f"answer dropped), {len(dev_bad)} in {dev_src} (scoring uses answer texts, so these still "
                     f"count); first: {first}")
    if train_cut or eval_cut:
        notes.append(f"squad: cut {train_cut} train and {eval_cut} eval questions to fit max_length with the stride")
    meta = {"ids": [e["id"] for e in dev], "contexts": [e["context"] for e in dev],
            "golds": {e["id"]: e["answers"] for e in dev}, "owner": owner, "offsets": offsets,
            "n_best": task.n_best, "max_answer_length": task.max_answer_length, "holdout": desc,
            "train_ids": [e["id"] for e in pool], "holdout_ids": held_ids}
    return TaskData(train=Packed.from_lists(train_inputs, tokenizer.pad_token_id),
                    eval=Packed.from_lists(eval_inputs, tokenizer.pad_token_id), num_labels=2,
                    train_examples=len(pool), eval_examples=len(dev), meta=meta, notes=notes)


def best_answers(start_logits: list[np.ndarray], end_logits: list[np.ndarray], meta: dict[str, Any]) -> dict[str, str]:
    """Question id -> answer text: the best valid span over all its windows (score = start + end logit)."""
    n_best, longest = meta["n_best"], meta["max_answer_length"]
    best: list[tuple[float, int, int] | None] = [None] * len(meta["ids"])
    for i, (j, off) in enumerate(zip(meta["owner"], meta["offsets"])):
        n = len(off)  # predict() pads rows to their batch's length: the offsets bound the real tokens
        sl, el = np.asarray(start_logits[i][:n]), np.asarray(end_logits[i][:n])
        starts = np.argsort(sl, kind="stable")[::-1][:n_best]
        ends = np.argsort(el, kind="stable")[::-1][:n_best]
        length = ends[None, :] - starts[:, None] + 1
        ok = (off[starts, 0] >= 0)[:, None] & (off[ends, 0] >= 0)[None, :] & (length >= 1) & (length <= longest)
        if not ok.any():
            continue
        scores = np.where(ok, sl[starts][:, None] + el[ends][None, :], -np.inf)
        k = int(np.argmax(scores))  # first of equals, as the reference's stable sort keeps
        score = float(scores.flat[k])
        if best[j] is None or score > best[j][0]:
            best[j] = (score, int(off[starts[k // len(ends)], 0]), int(off[ends[k % len(ends)], 1]))
    return {qid: "" if b is None else ctx[b[1] : b[2]] for qid, ctx, b in zip(meta["ids"], meta["contexts"], best)}


def score(data, outputs: dict[str, list[np.ndarray]]) -> tuple[dict[str, float], dict[str, str]]:
    """Exact match and F1 (official v1.1 rules, percent) over every eval question, and the answers by id."""
    predictions = best_answers(outputs["start_logits"], outputs["end_logits"], data.meta)
    return squad_metric.evaluate(data.meta["golds"], predictions), predictions


def trivial(data) -> dict[str, float]:
    """Exact match and F1 of the empty answer for every question (0 and 0): what a run that diverged scores."""
    return squad_metric.evaluate(data.meta["golds"], {qid: "" for qid in data.meta["golds"]})


def write_predictions(out: Path, data, predictions: dict[str, str]) -> None:
    """predictions.json in the official format {question id: answer text}: `evaluate-v1.1.py dev.json predictions.json`."""
    write_json_atomic(Path(out) / "predictions.json", predictions)


def first_sentence(context: str) -> str:
    """The context up to its first sentence end: the trivial baseline answer."""
    return re.split(r"(?<=[.!?])\s+", context.strip(), maxsplit=1)[0]


def first_sentence_predictions(examples: list[Example]) -> dict[str, str]:
    return {e["id"]: first_sentence(e["context"]) for e in examples}
