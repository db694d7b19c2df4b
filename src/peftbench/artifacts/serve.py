"""Inference on a saved run: predictions for new inputs (`peftbench predict`) and re-scoring (`peftbench evaluate`).

An input is a text, a (text, text_pair) pair for sentence-pair tasks, or a (question, context) pair for QA heads.
Token classification answers {answer: the text with its tagged spans marked, score: the mean probability of the
words' tags, tags, spans}; multi-label {label: the predicted labels joined by commas, probability: the lowest of
theirs (none: 1 - the highest), labels, scores}; classification answers {label, probability} (the label's name from the run's delta.json: a user's own data
records the classes it found), a regression head {answer: the value as text, score: the value}; QA answers {answer, score, start} with the span read back from the
context through the tokenizer's offsets (windows with a stride when the context is long; the best span wins).
Both batch through predict.predict, the function training evaluates with; `evaluate_run` scores its outputs with
the task's own `score`, as training does.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Union

import numpy as np
import yaml
from omegaconf import OmegaConf

from ..engine.delta import Run, load_run
from ..engine.folders import check_run
from ..errors import UserError
from ..engine.preflight import check_device
from ..config.schema import SCHEMA, check_value
from ..record import read_record
from ..data.batches import Packed
from ..engine.predict import predict as model_outputs

Input = Union[str, tuple[str, str]]
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MAX_ANSWER_TOKENS = 30
N_BEST = 20


def n_texts(run: Run) -> int:
    """Texts per input: 2 for sentence pairs and QA (question, context), else 1."""
    task = run.meta["task"]
    if run.head == "qa":
        return 2
    if run.head == "token_cls":  # one sentence, its words split at whitespace
        return 1
    if task.get("kind") in ("classification", "multilabel"):  # a user's own data: task.text [+ task.text_pair]
        return 2 if task.get("text_pair") else 1
    return len(task.get("text_fields") or [None])


def check_inputs(run: Run, inputs: list[Input]) -> list[list[str]]:
    """Inputs as one list per text column, or a UserError naming the first bad one."""
    if not inputs:
        raise UserError("nothing to predict: give --text (and --text-pair), --question and --context, or --input FILE")
    want = n_texts(run)
    what = "a (question, context) pair" if run.head == "qa" else ("a text pair" if want == 2 else "one text")
    columns: list[list[str]] = [[] for _ in range(want)]
    for i, x in enumerate(inputs, start=1):
        parts = [x] if isinstance(x, str) else list(x)
        if len(parts) != want or not all(isinstance(p, str) for p in parts):
            raise UserError(f"input {i}: task {run.meta['task']['name']} takes {what} per input, got {x!r}")
        names = ["question", "context"] if run.head == "qa" else ["text", "text pair"]
        for col, p, name in zip(columns, parts, names):
            if not p.strip():  # a model still answers an empty text: a confident label for nothing
                raise UserError(f"input {i}: the {name} is empty{' (only spaces)' if p else ''}: give a {name} "
                                f"to {'answer from' if name == 'context' else 'predict'}")
            col.append(p)
    return columns


def predict(run: Run, inputs: list[Input], batch_size: int = 64) -> list[dict[str, Any]]:
    """One answer per input, in order."""
    columns = check_inputs(run, inputs)
    return {"qa": answer, "token_cls": tag}.get(run.head, classify)(run, columns, batch_size)


def classify(run: Run, columns: list[list[str]], batch_size: int) -> list[dict[str, Any]]:
    enc = run.tokenizer(*columns, truncation=True, max_length=run.meta["task"].get("max_length", 512))
    rows = Packed.from_lists({k: v for k, v in enc.items() if k in MODEL_INPUTS}, run.tokenizer.pad_token_id)
    logits = np.stack(model_outputs(run.model, rows, batch_size, run.device)["logits"])
    if run.meta.get("num_labels") == 1:  # a regression head (STS-B, a user's float targets): the predicted value
        return [{"answer": f"{float(x[0]):.4g}", "score": float(x[0])} for x in logits]  # the CLI prints both
    names = run.meta.get("label_names") or [str(x) for x in run.meta["task"].get("labels", [])]
    if run.head == "multilabel":  # one sigmoid per label; the labels at or above the run's threshold
        threshold = run.meta["task"].get("threshold", 0.5)
        out = []
        for p in 1 / (1 + np.exp(-logits.astype(np.float64))):
            chosen = [k for k in range(len(p)) if p[k] >= threshold]
            out.append({"label": ",".join(names[k] for k in chosen) or "(none)",
                        "probability": float(min(p[k] for k in chosen)) if chosen else float(1 - p.max()),
                        "labels": [names[k] for k in chosen], "scores": {n: float(x) for n, x in zip(names, p)}})
        return out
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = []
    for p in probs:
        k = int(p.argmax())
        out.append({"label": names[k] if k < len(names) else str(k), "probability": float(p[k])})
    return out


def tag(run: Run, columns: list[list[str]], batch_size: int) -> list[dict[str, Any]]:
    """Each sentence's words (split at whitespace) tagged as training scored them (the first sub-token's tag; a word
    past max_length gets the outside tag), the entities of BIO tags as spans, and the text marked up: `[Ada]PER
    met ...` for BIO tags, `word/TAG ...` for any other tag set."""
    from ..data.tasks.tokens import align, spans

    task = run.meta["task"]
    names = run.meta.get("label_names") or [str(x) for x in task.get("labels", [])]
    outside = task.get("outside", "O")
    words = [text.split() for text in columns[0]]
    enc, firsts = align(run.tokenizer, words, [[0] * len(w) for w in words], task.get("max_length", 512))
    rows = Packed.from_lists({k: v for k, v in enc.items() if k in MODEL_INPUTS}, run.tokenizer.pad_token_id)
    logits = model_outputs(run.model, rows, batch_size, run.device)["logits"]
    bio = outside in names and all(n == outside or n[:2] in ("B-", "I-") for n in names)
    out = []
    for ws, first, lg in zip(words, firsts, logits):
        probs = np.exp(lg - lg.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        tags = [names[int(probs[p].argmax())] if p >= 0 else outside for p in first]
        conf = [float(probs[p].max()) for p in first if p >= 0]
        found = spans(ws, tags) if bio else []
        if bio:
            marked, at = [], 0
            for sp in found:
                marked += ws[at : sp["start"]] + [f"[{sp['text']}]{sp['type']}"]
                at = sp["end"] + 1
            text = " ".join(marked + ws[at:])
        else:
            text = " ".join(f"{w}/{t}" for w, t in zip(ws, tags))
        out.append({"answer": text, "score": float(np.mean(conf)) if conf else 0.0, "tags": tags, "spans": found})
    return out


def answer(run: Run, columns: list[list[str]], batch_size: int) -> list[dict[str, Any]]:
    """The best span per question over its windows: among each window's top-n_best starts and ends, inside the
    context, 1..max_answer_length tokens, highest start + end logit (the rule SQuAD's scoring uses)."""
    questions, contexts = columns
    task = run.meta["task"]
    n_best, longest = task.get("n_best", N_BEST), task.get("max_answer_length", MAX_ANSWER_TOKENS)
    try:
        enc = run.tokenizer([q.lstrip() for q in questions], contexts, truncation="only_second",
                            max_length=task.get("max_length", 384), stride=task.get("doc_stride", 128),
                            return_overflowing_tokens=True, return_offsets_mapping=True)
    except Exception as e:  # a question longer than a window leaves no room for the context
        raise UserError(f"cannot split the inputs into windows ({str(e).splitlines()[0]}): "
                        "shorten the question") from None
    rows = Packed.from_lists({k: v for k, v in enc.items() if k in MODEL_INPUTS}, run.tokenizer.pad_token_id)
    outputs = model_outputs(run.model, rows, batch_size, run.device)
    best: list[dict[str, Any]] = [{"answer": "", "score": float("-inf"), "start": -1} for _ in questions]
    for f, ex in enumerate(enc["overflow_to_sample_mapping"]):
        off = np.array(enc["offset_mapping"][f]).reshape(-1, 2)
        in_context = np.array([s == 1 for s in enc.sequence_ids(f)])
        n = len(off)  # rows come back padded to their batch's length
        sl, el = outputs["start_logits"][f][:n], outputs["end_logits"][f][:n]
        starts = np.argsort(sl, kind="stable")[::-1][:n_best]
        ends = np.argsort(el, kind="stable")[::-1][:n_best]
        length = ends[None, :] - starts[:, None] + 1
        ok = in_context[starts][:, None] & in_context[ends][None, :] & (length >= 1) & (length <= longest)
        if not ok.any():
            continue
        scores = np.where(ok, sl[starts][:, None] + el[ends][None, :], -np.inf)
        k = int(np.argmax(scores))
        if scores.flat[k] > best[ex]["score"]:
            a, b = int(off[starts[k // len(ends)], 0]), int(off[ends[k % len(ends)], 1])
            best[ex] = {"answer": contexts[ex][a:b], "score": float(scores.flat[k]), "start": a}
    return best


def read_inputs(path: Path, run: Run) -> list[Input]:
    """Inputs from a JSONL file (one object per line) or a TSV file with a header (e.g. the task's own dev.tsv)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file {path} not found")
    task = run.meta["task"]
    if run.head == "qa":
        choices = [["question", "context"]]
    else:
        want = n_texts(run)
        own = [task["text"], *([task["text_pair"]] if task.get("text_pair") else [])] if task.get("text") else []
        choices = [list(task.get("text_fields") or []), list(task.get("hub_text_fields") or []), own,
                   ["text", "text_pair"][:want]]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 at byte {e.start}: re-save the file as UTF-8") from None
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise UserError(f"{path}:{lineno}: not a JSON object ({e})") from None
                if not isinstance(rows[-1], dict):
                    raise UserError(f"{path}:{lineno}: not a JSON object")
        keys = set().union(*rows) if rows else set()
    else:
        lines = list(csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
        header = lines[0] if lines else []
        rows = [dict(zip(header, r)) for r in lines[1:] if r]
        keys = set(header)
    cols = next((c for c in choices if c and set(c) <= keys), None)
    if cols is None:
        raise UserError(f"{path}: no input columns found; expected one of {' or '.join(map(str, choices))}")
    inputs: list[Input] = []
    for i, row in enumerate(rows, start=1):
        parts = [row.get(c) for c in cols]
        if not all(isinstance(p, str) for p in parts):
            raise UserError(f"{path}: row {i} lacks a text in {cols}")
        inputs.append(parts[0] if len(parts) == 1 else (parts[0], parts[1]))
    return inputs


EVAL_KEYS = {"data_dir", "eval_batch_size", "device", "merge", "model.name_or_path"}
PREDICT_KEYS = {"batch_size", "device", "merge", "model.name_or_path"}


def parse_options(overrides: list[str], allowed: set[str]) -> dict[str, Any]:
    opts = {}
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or key not in allowed:
            raise UserError(f"'{o}': expected one of {', '.join(f'{k}=...' for k in sorted(allowed))}")
        opts[key] = value if key in ("data_dir", "model.name_or_path") else yaml.safe_load(value)
        check_value(key, opts[key], SCHEMA.get(key) or {"type": "bool"})  # the same rules as train's (merge: a bool)
    if opts.get("device") == "cuda":
        check_device(OmegaConf.create({"device": "cuda", "precision": "auto"}))
    return opts


def load_for(run_dir: Path, opts: dict[str, Any], command: str = "predict") -> Run:
    """The CLI's load: the folder checked (a finished run, engine/folders.py), options parsed by parse_options, no
    weight-loading progress bars (stderr is for errors)."""
    from transformers.utils import logging as hf_logging

    check_run(run_dir, command)
    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # the base's "head newly initialized" report: the delta brings the head
    model = {"name_or_path": opts["model.name_or_path"]} if "model.name_or_path" in opts else None
    try:
        return load_run(run_dir, model, device=opts.get("device") or "cpu", merge=bool(opts.get("merge")))
    finally:  # in-process callers (a notebook, the tests) keep transformers' own settings
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def evaluate_run(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """Re-score the delta on the task's dev set with the run's own resolved config (result.json)."""
    from ..data.tasks import TASKS

    run_dir = Path(run_dir)
    opts = parse_options(overrides, EVAL_KEYS)
    run = load_for(run_dir, opts, "evaluate")
    rec = read_record(run_dir / "result.json")
    if rec is None:
        raise UserError(f"{run_dir}/result.json is missing or damaged: evaluate needs the run's config")
    cfg = OmegaConf.create(rec["config"])
    for key in ("data_dir", "eval_batch_size"):
        if opts.get(key) is not None:
            cfg[key] = opts[key]
    task = TASKS[cfg.task.kind]
    data = task.load(cfg, run.tokenizer)
    t0 = time.perf_counter()  # training's evaluate on one process: the same predict and score
    metrics, _ = task.score(data, model_outputs(run.model, data.eval, cfg.eval_batch_size, run.device))
    seconds = time.perf_counter() - t0
    return {"run": rec["run"], "metrics": metrics, "recorded": rec.get("metrics") or {},
            "eval_examples": data.eval_examples, "eval_time_s": round(seconds, 3)}
