"""Own-data keys checked against each other and against the data they describe, before a model loads.

A key that contradicts another key or the data is a UserError (one line: what, where, what to do); a legal but risky
choice is one `peftbench: warning:` line on stderr (and in train.log), printed once per process:

  from the config alone (`config_errors`, at load_config time):
    task.hub_config without task.hub; task.text_pair = task.text, task.label = a text column; task.metric not a metric of the task's kind (qa: f1,
    exact_match) or not among task.metrics (GLUE: among the scored names, e.g. accuracy_mm); task.metrics mixing
    class and regression metrics; a class or regression metric against an explicit task.problem; task.labels with
    one class or a repeated one, or set for a regression; task.label_names repeated, set for a regression, or not
    one per class of task.labels
  from the data (`classification`, at the end of classification.resolve):
    errors    a class / regression metric on labels found to be the other kind; a class of task.labels in no row of
              train or dev; task.label_names not one per class found; a regression whose training targets are all one
              value
    warnings  a class with fewer than MIN_CLASS_ROWS training rows; a class of task.labels only in dev (never
              trained); f1 on more than 2 classes (macro) or on 2 string classes (which is positive); accuracy with a
              majority class of IMBALANCED or more; a dev set of one class (or one regression target); whole numbers
              read as many classes (a regression?); decimals forced into classes; a text column of numbers or with
              empty texts; dev = train (the same file, or many of dev's rows in train)
  QA (`qa`, in squad.load): dev = train; eval_size above the dev questions; gold answers longer than max_answer_length.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path
from omegaconf import DictConfig

from ..errors import UserError

CLASS_METRICS = ("accuracy", "f1", "mcc")
REGRESSION_METRICS = ("pearson", "spearman")
QA_METRICS = ("f1", "exact_match")
TOKEN_METRICS = ("f1", "precision", "recall", "accuracy")
MULTILABEL_METRICS = ("micro_f1", "macro_f1", "exact_match")  # tasks/multilabel.py (sklearn)  # tasks/tokens.py: seqeval's entity scores, word accuracy
DEFAULTS = {"classification": ["accuracy", "f1"], "regression": ["pearson", "spearman"]}  # glue.encoded's defaults
MIN_CLASS_ROWS = 10     # a class with fewer training rows is hardly learnable
IMBALANCED = 0.9        # a majority class this large makes accuracy a poor yardstick
MANY_CLASSES = 10       # more whole-number classes than this may be scores (a regression)
DEV_IN_TRAIN = 0.1      # this share of dev rows also in train: the dev score measures memory

_said: set[str] = set()


def warn(line: str) -> None:
    """One warning line on stderr and in the run log, once per process (a study checks each task before its runs)."""
    logging.getLogger("peftbench").warning(line)
    if line not in _said:
        _said.add(line)
        print(f"peftbench: warning: {line}", file=sys.stderr, flush=True)


def _list(value) -> list:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _metrics(task: DictConfig) -> list[str]:
    return [str(m) for m in _list(task.get("metrics"))]


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _repeated(values: list) -> list:
    return [v for v, n in Counter(map(str, values)).items() if n > 1]


def config_errors(task: DictConfig) -> None:
    """What the task keys say about each other, knowable before any data is read."""
    kind, metric = task.get("kind"), task.get("metric")
    if "train" in task and task.get("hub_config") and not task.get("hub"):  # own data (classification, qa)
        raise UserError(f"task.hub_config={task.hub_config!r} names a config of a hub dataset, but task.hub is null: "
                        "set task.hub=ID, or drop task.hub_config")
    if kind == "squad":
        if metric is not None and metric not in QA_METRICS:
            raise UserError(f"task.metric={metric!r}: a QA task scores {', '.join(QA_METRICS)}; use one of them")
        return
    if kind == "glue":
        names = _metrics(task) or ["accuracy", "f1"]
        scored = [m + s for s in (_list(task.get("dev_suffixes")) or [""]) for m in names]
        if metric is not None and metric not in scored:
            raise UserError(f"task.metric={metric!r} is not scored by task {task.name}, which reports "
                            f"{', '.join(scored)}: use one of them, or add it to task.metrics=[...]")
        return
    if kind == "multilabel":
        scored = _metrics(task) or list(MULTILABEL_METRICS)
        wrong = [m for m in scored if m not in MULTILABEL_METRICS]
        if wrong:
            raise UserError(f"task.metrics={scored}: a multi-label task scores {', '.join(MULTILABEL_METRICS)}; "
                            f"drop {wrong}")
        if metric is not None and metric not in scored:
            raise UserError(f"task.metric={metric!r} is not scored by task {task.name}, which reports "
                            f"{', '.join(scored)}: use one of them, or add it to task.metrics=[...]")
        used = [task.get("text"), task.get("text_pair")]
        both = [c for c in _list(task.get("label_columns")) or [task.get("label")] if c in used]
        if both:
            raise UserError(f"label column(s) {both} are also text columns (task.text / task.text_pair): a label "
                            "must be a column of its own")
        return
    if kind == "tokens":
        scored = _metrics(task) or list(TOKEN_METRICS)
        wrong = [m for m in scored if m not in TOKEN_METRICS]
        if wrong:
            raise UserError(f"task.metrics={scored}: a token task scores {', '.join(TOKEN_METRICS)}; drop {wrong}")
        if metric is not None and metric not in scored:
            raise UserError(f"task.metric={metric!r} is not scored by task {task.name}, which reports "
                            f"{', '.join(scored)}: use one of them, or add it to task.metrics=[...]")
        if task.get("tokens") == task.get("tags"):
            raise UserError(f"task.tags={task.tags!r} is also task.tokens: the tags must be a column of their own")
        return
    if kind != "classification":
        return
    text, pair, label = task.get("text"), task.get("text_pair"), task.get("label")
    if pair is not None and pair == text:
        raise UserError(f"task.text_pair={pair!r} is the same column as task.text: name the second sentence's "
                        "column, or drop task.text_pair for single sentences")
    if label in (text, pair):
        raise UserError(f"task.label={label!r} is also task.{'text' if label == text else 'text_pair'}: the label "
                        "must be a column of its own")
    metrics = _metrics(task)
    known = CLASS_METRICS + REGRESSION_METRICS
    if metric is not None and metric not in known:
        raise UserError(f"task.metric={metric!r} is unknown: use one of {', '.join(known)}")
    if metrics and metric is not None and metric not in metrics:
        raise UserError(f"task.metric={metric!r} is not in task.metrics={metrics}: add it there, or pick one of them")
    if metric is not None and not metrics and metric == "mcc":
        raise UserError("task.metric='mcc' is not scored: with task.metrics=null a classification scores accuracy "
                        "and f1; add task.metrics=[mcc] (or [accuracy,f1,mcc])")
    chosen = set(metrics) | ({metric} if metric else set())
    if chosen & set(CLASS_METRICS) and chosen & set(REGRESSION_METRICS):
        raise UserError(f"task.metrics / task.metric mix class metrics ({', '.join(sorted(chosen & set(CLASS_METRICS)))})"
                        f" and regression ones ({', '.join(sorted(chosen & set(REGRESSION_METRICS)))}): a task is one"
                        " or the other; keep one kind")
    problem = task.get("problem", "auto")
    if problem != "auto":
        metric_fits(task, problem, f"task.problem={problem}")
    labels, names = _list(task.get("labels")), _list(task.get("label_names"))
    if problem == "regression" and (labels or names):
        key = "task.labels" if labels else "task.label_names"
        raise UserError(f"{key} names classes, but task.problem=regression predicts a number: drop {key}, or set "
                        "task.problem=classification")
    for key, values in (("task.labels", labels), ("task.label_names", names)):
        if _repeated(values):
            raise UserError(f"{key} repeats {_repeated(values)}: each class is listed once, in id order")
    if len(labels) == 1:
        raise UserError(f"task.labels={labels} has one class: a classifier needs at least 2")
    if labels and names and len(labels) != len(names):
        raise UserError(f"task.label_names has {len(names)} names for the {len(labels)} classes of task.labels: give "
                        "one name per class, in the same order")


def metric_fits(task: DictConfig, problem: str, why: str) -> None:
    """A class metric on a regression, or a regression metric on classes, is an error naming why it is which."""
    chosen = _metrics(task) + ([task.metric] if task.get("metric") else [])
    wrong = [m for m in chosen if m in (REGRESSION_METRICS if problem == "classification" else CLASS_METRICS)]
    if wrong:
        fits = CLASS_METRICS if problem == "classification" else REGRESSION_METRICS
        other = "regression" if problem == "classification" else "classification"
        raise UserError(f"task.metric(s) {wrong} are for a {other}, but this task is a {problem} ({why}): use "
                        f"{', '.join(fits)}, or set task.problem={other} if that is what the labels are")


def classification(task: DictConfig, problem: str, names: list[str], train_labels: list, dev_labels: list,
                   train_texts: list[list[str]], dev_texts: list[list[str]], given: bool, found: str) -> None:
    """The resolved task against its rows: errors raise, warnings print. `given`: task.labels named the classes;
    `found`: why the problem is what it is (for the messages)."""
    train_src = str(task.train) if task.get("train") else f"hub {task.hub}"
    metric_fits(task, problem, found)
    if problem == "regression":
        if task.get("labels") or task.get("label_names"):
            raise UserError(f"task.label_names names classes, but the labels in column '{task.label}' are numbers to "
                            f"predict ({found}): drop task.label_names, or set task.problem=classification")
        if len(set(train_labels)) < 2:
            raise UserError(f"{train_src}: every training target in column '{task.label}' is {train_labels[0]}: "
                            "nothing to regress; check task.label")
        if len(set(dev_labels)) < 2:
            warn(f"every dev target in column '{task.label}' is {dev_labels[0]}: pearson and spearman are 0 for any "
                 "model")
    else:
        counts, dev_counts = Counter(train_labels), Counter(dev_labels)
        label_names = _list(task.get("label_names"))
        if label_names and len(label_names) != len(names):
            raise UserError(f"task.label_names has {len(label_names)} names, but the data has {len(names)} classes "
                            f"{names}: give one name per class, in id order")
        if given:
            absent = [n for i, n in enumerate(names) if not counts[i] and not dev_counts[i]]
            if absent:
                raise UserError(f"task.labels lists {absent}, which no row of train or dev has in column "
                                f"'{task.label}' (it holds {sorted({names[i] for i in counts})}): fix task.labels")
            untrained = [n for i, n in enumerate(names) if not counts[i]]
            if untrained:
                warn(f"class(es) {untrained} of task.labels are in dev but in no training row: the model can never "
                     "predict them")
        small = [f"{names[i]} ({n})" for i, n in sorted(counts.items()) if n < MIN_CLASS_ROWS]
        if small:
            warn(f"class(es) with fewer than {MIN_CLASS_ROWS} training rows: {', '.join(small[:5])}"
                 + (f" and {len(small) - 5} more" if len(small) > 5 else "") + ": too few to learn from")
        primary = task.get("metric") or (_metrics(task) or ["accuracy"])[0]
        if primary == "f1" and len(names) > 2:
            warn(f"task.metric=f1 over {len(names)} classes is macro-F1 (the mean of each class's F1), not one "
                 "class's F1")
        if primary == "f1" and len(names) == 2 and not given and not all(n.lstrip("+-").isdigit() for n in names):
            warn(f"task.metric=f1 scores '{names[1]}' (the second of the sorted labels {names}) as the positive "
                 f"class: task.labels=[{names[1]},{names[0]}] makes '{names[0]}' the positive one")
        for split, c in (("training", counts), ("dev", dev_counts)):
            top, n = c.most_common(1)[0]
            if primary == "accuracy" and n / sum(c.values()) >= IMBALANCED:
                warn(f"class '{names[top]}' is {100 * n / sum(c.values()):.0f}% of the {split} rows: accuracy "
                     f"rewards always predicting it; task.metric=f1 or mcc (with task.metrics) say more")
                break
        if len(dev_counts) == 1:
            warn(f"the dev set holds one class only ('{names[next(iter(dev_counts))]}'): f1 and mcc say little")
        numbers = all(n.lstrip("+-").isdigit() for n in names)
        if not given and task.get("problem", "auto") == "auto" and numbers and len(names) > MANY_CLASSES:
            warn(f"column '{task.label}' holds {len(names)} different whole numbers, each read as a class: if they are "
                 "scores, set task.problem=regression")
        decimals = [n for n in names if not n.lstrip("+-").isdigit() and _number(n)]
        if task.get("problem") == "classification" and decimals:
            warn(f"task.problem=classification makes each of the {len(decimals)} decimal values in column "
                 f"'{task.label}' a class of its own")
    text_checks(task, train_texts, dev_texts)


def text_checks(task: DictConfig, train_texts: list[list[str]], dev_texts: list[list[str]]) -> None:
    """Text columns (numbers read as text by classification.read_columns are strings here) and dev/train overlap."""
    keys = [("task.text", task.text)] + ([("task.text_pair", task.text_pair)] if task.get("text_pair") else [])
    for (key, name), values in zip(keys, train_texts):
        if values and all(v.strip().lstrip("+-").replace(".", "", 1).isdigit() for v in values):
            warn(f"{key}={name!r} holds numbers, not text (row 1: {values[0]!r}): is it the text column?")
        empty = sum(1 for v in values if not v.strip())
        if empty:
            warn(f"{empty} training row(s) have an empty {key} (column '{name}')")
    same_file = task.get("train") and task.get("dev") and Path(str(task.train)).resolve() == Path(str(task.dev)).resolve()
    if same_file:
        warn(f"task.dev is task.train's file ({task.dev}): the dev score then measures memory, not generalization")
        return
    seen = set(zip(*train_texts))
    shared = sum(1 for row in zip(*dev_texts) if row in seen)
    if dev_texts and dev_texts[0] and shared / len(dev_texts[0]) >= DEV_IN_TRAIN:
        warn(f"{shared} of the {len(dev_texts[0])} dev rows also appear in train (the same text): the dev score "
             "partly measures memory")


def qa(task: DictConfig, train: list[dict], dev: list[dict], train_src: str, dev_src: str) -> None:
    """Warnings for a QA task's data (its errors are squad.read_split's)."""
    if train_src == dev_src:
        warn(f"the QA dev set is the training file ({dev_src}): the dev score then measures memory")
    if task.get("eval_size") is not None and task.eval_size > len(dev):
        warn(f"task.eval_size={task.eval_size} is above the {len(dev)} answerable dev questions: all are scored")
    long = sum(1 for e in dev if e["answers"] and min(len(a.split()) for a in e["answers"]) > task.max_answer_length)
    if long:
        warn(f"{long} dev question(s) have only answers longer than task.max_answer_length={task.max_answer_length} "
             "words: they can never be matched exactly; raise task.max_answer_length")
