"""Token classification (NER, tagging) on a user's own files or a hub dataset: `task=ner` / `task=tagging`.

Files: CoNLL-style columns (one word per line, whitespace-separated columns, the word first and the tag in
`task.tag_column`, a blank line between sentences, `-DOCSTART-` lines skipped) or JSON Lines with a list of words
(`task.tokens`) and a list of tags (`task.tags`) per row; a hub dataset has the same two columns (tags as strings or
a ClassLabel sequence, e.g. CoNLL-2003's `ner_tags`). Tags are classes in sorted order (or `task.labels`' order).

Words are labelled as transformers' token-classification example does: a word's first sub-token carries its tag, its
other sub-tokens and the special tokens -100 (ignored by the loss); `align` says how tokens are matched to words.
Scoring reads the prediction at each word's first sub-token; a word cut off by `task.max_length` is predicted `O`
(`task.outside`), so the scored sentences are always the whole dev sentences. Metrics (percent): `f1`, `precision`,
`recall` are seqeval's entity-level scores (CoNLL's: an entity counts when its type and all its words are right),
`accuracy` the share of words tagged right.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ...errors import UserError

HEAD = "token_cls"
METRICS = ("f1", "precision", "recall", "accuracy")
JSON_SUFFIXES = (".jsonl", ".json")


def source(task: DictConfig, split: str) -> str:
    return str(task.get(split)) if task.get(split) else f"hub {task.hub}" + (f"/{task.hub_config}" if task.hub_config else "")


def read_conll(path: Path, key: str, column: int) -> tuple[list[list[str]], list[list[str]], list[int]]:
    """Words, tags and the first line number of each sentence of a CoNLL-style file."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid UTF-8 at byte {e.start}: re-save the file as UTF-8") from None
    words, tags, starts, width = [[]], [[]], [], None
    for n, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words[-1]:
                words.append([])
                tags.append([])
            continue
        if width is None:
            width = len(fields)
            if not -width <= column < width or width < 2:
                raise UserError(f"{path}:{n}: {width} column(s), so task.tag_column={column} names no tag column "
                                f"({key}): a CoNLL line is the word, then its tag(s); set task.tag_column to the tag's "
                                "column (0-based, -1: the last)")
        if len(fields) != width:
            raise UserError(f"{path}:{n}: {len(fields)} columns, the file's first line has {width}: every line of a "
                            "CoNLL file holds the same columns (a word with a space in it?)")
        if not words[-1]:
            starts.append(n)
        words[-1].append(fields[0])
        tags[-1].append(fields[column])
    if not words[-1]:
        words.pop()
        tags.pop()
    if not words:
        raise UserError(f"{path} has no sentences ({key}): expected lines 'WORD ... TAG', a blank line between sentences")
    return words, tags, starts


def read_split(task: DictConfig, split: str) -> tuple[list[list[str]], list[list[str]], list[str] | None]:
    """Words and tags (as strings) of each sentence of `split` ("train" | "dev"), and the hub's tag names if any."""
    key = f"task.{split}"
    hub_names = None
    if task.get(split):
        path = Path(str(task[split])).expanduser()
        if not path.is_file():
            raise UserError(f"data file {path} not found: set {key}= to a CoNLL-style file or a JSONL file")
        if path.suffix.lower() in JSON_SUFFIXES:
            from .tables import column, read_table

            table = read_table(path, key)
            words = column(table, task.tokens, "task.tokens", str(path))
            tags = column(table, task.tags, "task.tags", str(path))
            rows = list(range(1, len(words) + 1))
            where = [f"{path}: row {i}" for i in rows]
        else:
            words, tags, starts = read_conll(path, key, int(task.tag_column))
            where = [f"{path}:{n}" for n in starts]
    elif task.get("hub"):
        from datasets import ClassLabel

        from .hub import load_split

        hub = [task.hub, task.hub_config] if task.get("hub_config") else task.hub
        ds = load_split(hub, "train" if split == "train" else task.hub_dev)
        for col, k in ((task.tokens, "task.tokens"), (task.tags, "task.tags")):
            if col not in ds.column_names:
                raise UserError(f"{source(task, split)}: no column '{col}' ({k}={col}); its columns are "
                                f"{ds.column_names}: set {k}= to one of them")
        inner = getattr(ds.features[task.tags], "feature", None)
        hub_names = list(inner.names) if isinstance(inner, ClassLabel) else None
        words, tags = ds[task.tokens], ds[task.tags]
        if hub_names:
            tags = [[hub_names[t] for t in row] for row in tags]
        where = [f"{source(task, split)}: row {i}" for i in range(1, len(words) + 1)]
    else:
        raise UserError(f"task={task.name} needs its data: set task.train=FILE and task.dev=FILE (CoNLL-style columns "
                        "or JSONL with tokens and tags), or task.hub=ID")
    if not words:
        raise UserError(f"{source(task, split)} has no sentences ({split} split)")
    for w, t, at in zip(words, tags, where):
        if not isinstance(w, (list, tuple)) or not isinstance(t, (list, tuple)):
            raise UserError(f"{at}: '{task.tokens}' and '{task.tags}' must each be a list (of words, of tags)")
        if len(w) != len(t):
            raise UserError(f"{at}: {len(w)} words but {len(t)} tags: give one tag per word")
        if not w:
            raise UserError(f"{at}: a sentence with no words: drop the row")
        bad = next((x for x in w if not isinstance(x, str) or not x.strip()), None)
        if bad is not None:
            raise UserError(f"{at}: word {bad!r} is not a non-empty string: fix the row")
    return [list(map(str, w)) for w in words], [[str(x).strip() for x in t] for t in tags], hub_names


def tag_ids(tags: list[list[str]], names: list[str], where: str, given: bool) -> list[list[int]]:
    index = {n: i for i, n in enumerate(names)}
    out = []
    for i, row in enumerate(tags, start=1):
        unknown = next((t for t in row if t not in index), None)
        if unknown is not None:
            fix = "add it to task.labels" if given else "it never appears in the training data: fix the row or set " \
                                                        "task.labels=[...] to every tag"
            raise UserError(f"{where}: sentence {i}: unknown tag '{unknown}' (tags: {names}): {fix}")
        out.append([index[t] for t in row])
    return out


def resolve(cfg: DictConfig) -> tuple[list[list[str]], list[list[int]], list[list[str]], list[list[int]]]:
    """Both splits read and their tags as ids; the task config gets its labels, label names and metric."""
    task = cfg.task
    train_words, train_tags, hub_names = read_split(task, "train")
    dev_words, dev_tags = ([], []) if cfg.get("eval_split") == "holdout" else read_split(task, "dev")[:2]
    given = bool(task.get("labels"))
    names = [str(x) for x in task.labels] if given else hub_names or sorted({t for row in train_tags for t in row})
    if len(names) < 2:
        raise UserError(f"{source(task, 'train')}: every tag is {names}: a tagger needs at least 2 tags")
    metrics = list(task.get("metrics") or METRICS)
    if any(m in ("f1", "precision", "recall") for m in metrics) and task.outside not in names:
        raise UserError(f"{source(task, 'train')}: no '{task.outside}' tag (task.outside) among {names}: entity "
                        "scores need BIO tags (B-PER, I-PER, O); for other tags use task=tagging (accuracy)")
    train_ids = tag_ids(train_tags, names, source(task, "train"), given)
    dev_ids = tag_ids(dev_tags, names, source(task, "dev"), True)  # a dev tag the model cannot predict: an error
    task.labels = names
    if not task.get("label_names"):
        task.label_names = names
    task.metrics = metrics
    if not task.get("metric"):
        task.metric = metrics[0]
    return train_words, train_ids, dev_words, dev_ids


def align(tokenizer, words: list[list[str]], tags: list[list[int]], max_length: int) -> tuple[dict, list[list[int]]]:
    """The tokenizer's output with `labels` (each word's tag on its first sub-token, -100 elsewhere), and per
    sentence the token position of each word's first sub-token (-1: the word was cut off by max_length).

    A sentence is tokenized as its words joined by spaces, and each token goes to the word its character offset falls
    in: for WordPiece and SentencePiece tokenizers this is `is_split_into_words`' `word_ids()`, and byte-level BPE
    ones (RoBERTa, ModernBERT) see the words with the leading space they had in pretraining."""
    from bisect import bisect_right

    if not getattr(tokenizer, "is_fast", False):
        raise UserError("token classification needs a fast tokenizer (character offsets): this model's tokenizer is a "
                        "slow one; give model.tokenizer= a folder with a tokenizer.json")
    texts, ends = [], []
    for row in words:
        pos, row_ends = 0, []
        for w in row:
            pos += len(w)
            row_ends.append(pos)
            pos += 1
        texts.append(" ".join(row))
        ends.append(row_ends)
    enc = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    labels, firsts = [], []
    for i, row in enumerate(tags):
        first = [-1] * len(row)
        lab = [-100] * len(enc["input_ids"][i])
        for pos, ((a, b), special) in enumerate(zip(enc["offset_mapping"][i], enc["special_tokens_mask"][i])):
            if special or b <= a:
                continue
            w = bisect_right(ends[i], a)  # the first word ending after the token's first character
            if w < len(row) and first[w] == -1:
                first[w] = pos
                lab[pos] = row[w]
        labels.append(lab)
        firsts.append(first)
    keep = ("input_ids", "token_type_ids", "attention_mask")
    return {**{k: v for k, v in enc.items() if k in keep}, "labels": labels}, firsts


def load(cfg: DictConfig, tokenizer):
    from ..batches import Packed
    from . import TaskData, train_rows

    train_words, train_ids, dev_words, dev_ids = resolve(cfg)
    keep, held, desc = train_rows(cfg, len(train_ids), unit="training sentences")
    on_holdout = cfg.get("eval_split") == "holdout"
    if on_holdout:
        dev_words, dev_ids = [train_words[i] for i in held], [train_ids[i] for i in held]
    train_words, train_ids = [train_words[i] for i in keep], [train_ids[i] for i in keep]
    pad = tokenizer.pad_token_id
    columns, _ = align(tokenizer, train_words, train_ids, cfg.task.max_length)
    eval_columns, firsts = align(tokenizer, dev_words, dev_ids, cfg.task.max_length)
    keys = ("input_ids", "token_type_ids", "attention_mask", "labels")
    data = TaskData(train=Packed.from_lists({k: v for k, v in columns.items() if k in keys}, pad, pads={"labels": -100}),
                    eval=Packed.from_lists({k: v for k, v in eval_columns.items() if k in keys}, pad,
                                           pads={"labels": -100}),
                    num_labels=len(cfg.task.labels), train_examples=len(train_ids), eval_examples=len(dev_ids),
                    meta={"tags": dev_ids, "firsts": firsts, "names": list(cfg.task.labels),
                          "metrics": list(cfg.task.metrics), "outside": cfg.task.outside, "holdout": desc,
                          "train_ids": keep, "holdout_ids": held, "split": "holdout" if on_holdout else "dev"})
    cut = sum(f.count(-1) for f in firsts)
    data.notes.append(f"{cfg.task.name}: {len(cfg.task.labels)} tags {list(cfg.task.labels)}; train "
                      f"{len(train_ids)} sentences from {source(cfg.task, 'train')}, "
                      + (f"holdout {len(dev_ids)} sentences of it" if on_holdout else
                         f"dev {len(dev_ids)} sentences from {source(cfg.task, 'dev')}")
                      + (f"; {cut} dev words past task.max_length={cfg.task.max_length} are predicted "
                         f"'{cfg.task.outside}'" if cut else ""))
    return data


def metrics_of(gold: list[list[str]], pred: list[list[str]], names: list[str]) -> dict[str, float]:
    """`names` (of METRICS) in percent: seqeval's entity-level scores in its default (CoNLL) mode, word accuracy."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    fns = {"f1": f1_score, "precision": precision_score, "recall": recall_score, "accuracy": accuracy_score}
    out = {}
    for name in names:
        kwargs = {} if name == "accuracy" else {"zero_division": 0}
        value = float(fns[name](gold, pred, **kwargs))
        out[name] = round(100 * value, 4) if math.isfinite(value) else 0.0
    return out


def score(data, outputs: dict[str, list[np.ndarray]]) -> tuple[dict[str, float], list[list[str]]]:
    """The metrics over the eval sentences, and each sentence's predicted tags (one per word)."""
    names, outside = data.meta["names"], data.meta["outside"]
    pred = [[names[int(logits[p].argmax())] if p >= 0 else outside for p in first]
            for logits, first in zip(outputs["logits"], data.meta["firsts"])]
    gold = [[names[t] for t in row] for row in data.meta["tags"]]
    return metrics_of(gold, pred, data.meta["metrics"]), pred


def write_predictions(out: Path, data, predictions: list[list[str]]) -> None:
    """predictions.json: each scored sentence's predicted tags, in file order (dev; the holdout in selection runs)."""
    from ...record import write_json_atomic

    split = data.meta.get("split", "dev")
    rows = [int(i) for i in data.meta["holdout_ids"]] if split == "holdout" else None
    write_json_atomic(Path(out) / "predictions.json", {"split": split, "rows": rows, "predictions": predictions})


def spans(words: list[str], tags: list[str]) -> list[dict[str, Any]]:
    """The entities of a tagged sentence (seqeval's reading of BIO tags): type, words, first and last word index."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [{"type": kind, "text": " ".join(words[start : end + 1]), "start": start, "end": end}
            for kind, start, end in get_entities(list(tags))]


def pool_size(cfg: DictConfig) -> int | None:
    """Training sentences (a study's sizes are checked against it); None from the hub."""
    if not cfg.task.get("train"):
        return None
    return len(read_split(cfg.task, "train")[0])
