"""Token classification (task=ner / task=tagging): CoNLL and JSONL readers, the sub-word alignment against the
tokenizer's word_ids(), seqeval's entity scores on a hand-scored case, every method on a tiny model, predict's spans,
export, the report's table and all-O baseline, the hub branch on a local repo, and bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import TINY_METHOD_ARGS, fast_sample
from peftbench.cli import main
from peftbench.config.compose import group_options, load_config
from peftbench.data.tasks import tokens
from peftbench.errors import UserError
from peftbench.models.load import tiny_tokenizer

RUN = ["model=tiny", "max_steps=2", "tracking.mode=disabled", "forgetting=false"]
# two dev sentences scored by hand below: gold entities PER(0-1), LOC(3) | ORG(1)
DEV = "-DOCSTART- -X- O\n\nada NN B-PER\nlee NN I-PER\nin NN O\nrome NN B-LOC\n\nthe DT O\nacme NN B-ORG\nsold VB O\n"
TRAIN = "".join(f"{w} NN {t}\n" + ("\n" if i % 4 == 3 else "")
                for i, (w, t) in enumerate([("ada", "B-PER"), ("lee", "I-PER"), ("in", "O"), ("rome", "B-LOC"),
                                            ("the", "O"), ("acme", "B-ORG"), ("sold", "O"), ("oslo", "B-LOC")] * 3))


@pytest.fixture
def conll(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "train.conll").write_text(TRAIN)
    (tmp_path / "dev.conll").write_text(DEV)
    return {"train": tmp_path / "train.conll", "dev": tmp_path / "dev.conll"}


def ner(files: dict[str, Path], *extra: str) -> list[str]:
    return ["task=ner", f"task.train={files['train']}", f"task.dev={files['dev']}", *extra]


def test_conll_reader_skips_docstart_and_reads_the_tag_column(conll):
    words, tags, starts = tokens.read_conll(conll["dev"], "task.dev", -1)
    assert words == [["ada", "lee", "in", "rome"], ["the", "acme", "sold"]]
    assert tags == [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "O"]]
    assert starts == [3, 8]
    assert tokens.read_conll(conll["dev"], "task.dev", 1)[1][1] == ["DT", "NN", "VB"]  # another column as the tag


def test_seqeval_scores_of_a_hand_scored_case():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["O", "O", "O"]]  # PER cut short (wrong), LOC right, ORG missed
    # predicted entities PER(0-0), LOC(3): 1 of 2 right; gold 3: P 1/2, R 1/3, F1 2PR/(P+R) = 0.4; words 5 of 7
    assert tokens.metrics_of(gold, pred, list(tokens.METRICS)) == {
        "f1": 40.0, "precision": 50.0, "recall": 33.3333, "accuracy": 71.4286}


def test_alignment_follows_word_ids_first_subtoken_labelled():
    tok = tiny_tokenizer()  # character-level: "ada" is a ##d ##a
    words, tags = [["ada", "in"], ["x"]], [[1, 0], [2]]
    enc, firsts = tokens.align(tok, words, tags, 64)
    assert enc["labels"][0] == [-100, 1, -100, -100, 0, -100, -100]  # [CLS] a ##d ##a i ##n [SEP]
    assert firsts == [[1, 4], [1]]
    own = tok(words, is_split_into_words=True, truncation=True, max_length=64)
    for i, row in enumerate(tags):
        ids, seen = own.word_ids(i), set()
        for pos, w in enumerate(ids):  # transformers' rule: the first token of each word, -100 elsewhere
            assert enc["labels"][i][pos] == (row[w] if w is not None and w not in seen else -100)
            seen.add(w)
    enc, firsts = tokens.align(tok, [["ada", "in", "rome"]], [[1, 0, 2]], 6)  # [CLS] a ##d ##a i [SEP]: cut
    assert firsts == [[1, 4, -1]] and enc["labels"][0] == [-100, 1, -100, -100, 0, -100]


def test_byte_level_bpe_words_keep_their_leading_space():
    """RoBERTa/ModernBERT-style tokenizers: a word inside a sentence is tokenized with the space before it (Ġ), as in
    pretraining, and still labelled on its first token; a word with a space in it (JSONL) is one word."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["ada lee went to rome"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    enc, firsts = tokens.align(tok, [["ada", "lee", "rome"]], [[1, 0, 2]], 32)
    assert tok.convert_ids_to_tokens(enc["input_ids"][0]) == ["<s>", "ada", "Ġlee", "Ġrome", "</s>"]
    assert firsts == [[1, 2, 3]] and enc["labels"][0] == [-100, 1, 0, 2, -100]
    enc, firsts = tokens.align(tiny_tokenizer(), [["new york", "x"]], [[1, 0]], 32)  # n ##e ##w y ##o ##r ##k x
    assert firsts == [[1, 8]] and enc["labels"][0] == [-100, 1] + [-100] * 6 + [0, -100]


def test_score_reads_each_words_first_subtoken_and_cut_words_are_outside(conll):
    cfg = load_config(RUN + ner(conll, "task.max_length=10"))
    data = tokens.load(cfg, tiny_tokenizer())
    names = list(cfg.task.labels)
    assert names == ["B-LOC", "B-ORG", "B-PER", "I-PER", "O"]
    # [CLS] a ##d ##a l ##e ##e i ##n r... : max_length=10 keeps text positions 1-8, so "rome" (at 9) is cut off;
    # "the acme sold" keeps the first sub-token of "sold" (at 8)
    assert data.meta["firsts"][0][-1] == -1 and data.meta["firsts"][1] == [1, 4, 8]
    want = [["B-PER", "O", "O", "B-LOC"], ["O", "O", "O"]]  # the hand-scored prediction above
    logits = []
    for first, row in zip(data.meta["firsts"], want):
        x = np.zeros((16, len(names)), dtype=np.float32)
        x[:, names.index("B-ORG")] = 1  # every other position says B-ORG: ignored
        for p, t in zip(first, row):
            if p >= 0:
                x[p] = 0
                x[p, names.index(t)] = 5
        logits.append(x)
    metrics, pred = tokens.score(data, {"logits": logits})
    assert pred == [["B-PER", "O", "O", "O"], ["O", "O", "O"]]  # rome: cut off, so O; B-ORG elsewhere: unread
    # the hand case less its one right entity (LOC): nothing right, P = R = F1 = 0; words right 4 of 7
    assert metrics == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "accuracy": 57.1429}


def test_jsonl_and_conll_give_the_same_run(conll, tmp_path):
    for split in ("train", "dev"):
        words, tags, _ = tokens.read_conll(conll[split], "x", -1)
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"tokens": w, "tags": t}) + "\n"
                                                         for w, t in zip(words, tags)))
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *RUN, "method=lora", *ner(conll), f"out={a}"]) == 0
    assert main(["train", *RUN, "method=lora", *ner({s: tmp_path / f"{s}.jsonl" for s in ("train", "dev")}),
                 f"out={b}"]) == 0
    ra, rb = (json.loads((x / "result.json").read_text()) for x in (a, b))
    assert ra["metrics"] == rb["metrics"] and ra["primary_metric"] == "f1" and ra["eval_examples"] == 2
    assert json.loads((a / "predictions.json").read_text())["predictions"] == \
        json.loads((b / "predictions.json").read_text())["predictions"]


@pytest.mark.parametrize("method", fast_sample(group_options("method"), offset=1))
def test_every_method_trains_a_token_head(method, conll):
    from peftbench.engine.train import train

    out = conll["train"].parent / "run"
    rec = train(load_config(RUN + ner(conll) + [f"method={method}", f"out={out}", *TINY_METHOD_ARGS.get(method, [])]))
    assert rec["status"] == "completed" and set(rec["metrics"]) == set(tokens.METRICS)
    preds = json.loads((out / "predictions.json").read_text())["predictions"]
    assert [len(p) for p in preds] == [4, 3]  # one tag per dev word


def test_predict_prints_spans_and_export_keeps_the_tags(conll, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "model=tiny", "tracking.mode=disabled", "forgetting=false", "method=full", "lr=3e-3",
                 "epochs=30", "batch_size=2", *ner(conll), f"out={run}"]) == 0
    rec = json.loads((run / "result.json").read_text())
    assert rec["metrics"]["f1"] == 100.0  # the dev sentences' words all occur in train, always with the same tag
    capsys.readouterr()
    assert main(["predict", str(run), "--text", "ada lee in rome", "--jsonl"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["tags"] == ["B-PER", "I-PER", "O", "B-LOC"] and got["answer"] == "[ada lee]PER in [rome]LOC"
    assert got["spans"] == [{"type": "PER", "text": "ada lee", "start": 0, "end": 1},
                            {"type": "LOC", "text": "rome", "start": 3, "end": 3}]
    assert main(["predict", str(run), "--text", "the acme sold"]) == 0
    assert capsys.readouterr().out.split("\t")[0] == "the [acme]ORG sold"
    assert main(["export", str(run), "--format", "merged", "--out", str(tmp_path / "merged")]) == 0
    from transformers import pipeline

    tagged = pipeline("token-classification", model=str(tmp_path / "merged"))("ada lee in rome")
    assert tagged[0]["entity"] == "B-PER" and tagged[0]["word"] == "a"
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| full | **100.00 (n=1)** |" in report and "## Learned nothing\n\nRuns" in report
    from peftbench.reports.baselines import baseline

    assert baseline(rec) == 0.0 and baseline(rec, "accuracy") == pytest.approx(100 * 3 / 7)  # 3 of 7 dev words O


def test_holdout_selection_scores_held_out_sentences(conll, tmp_path):
    from peftbench.engine.train import train

    rec = train(load_config(RUN + ner(conll) + ["method=bitfit", "holdout=2", "eval_split=holdout",
                                                f"out={tmp_path / 'h'}"]))
    assert rec["eval_examples"] == 2 and rec["train_examples"] == 4 and rec["holdout"]


def test_hub_branch_reads_a_classlabel_sequence(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    names = ["O", "B-PER", "I-PER", "B-LOC"]
    feats = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    repo = tmp_path / "conll2003" / "data"
    repo.mkdir(parents=True)
    rows = {"tokens": [["ada", "lee", "in", "rome"], ["rome"]], "ner_tags": [[1, 2, 0, 3], [3]]}
    for split in ("train", "validation"):
        Dataset.from_dict(rows, features=feats).to_parquet(repo / f"{split}-00000-of-00001.parquet")
    cfg = load_config(RUN + ["task=conll2003", f"task.hub={repo.parent}", "method=bitfit", f"out={tmp_path / 'r'}"])
    assert cfg.task.tags == "ner_tags"
    words, tags, hub_names = tokens.read_split(cfg.task, "train")
    assert hub_names == names and tags[0] == ["B-PER", "I-PER", "O", "B-LOC"]
    from peftbench.engine.train import train

    rec = train(cfg)
    assert rec["status"] == "completed" and rec["eval_examples"] == 2
    assert json.loads((tmp_path / "r" / "delta.json").read_text())["label_names"] == names  # the hub's id order


BAD = [
    ("train.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n', "row 1: 2 words but 1 tags: give one tag per word"),
    ("dev.conll", "ada B-PER\nzed B-XYZ\n", "sentence 1: unknown tag 'B-XYZ'"),
    ("train.conll", "ada NN B-PER\nlee I-PER\n", ":2: 2 columns, the file's first line has 3"),
    ("train.jsonl", '{"words": ["a"], "tags": ["O"]}\n', "no column 'tokens' (task.tokens=tokens)"),
]


@pytest.mark.parametrize("name,text,message", BAD)
def test_bad_token_data_is_one_line_and_nothing_trains(conll, tmp_path, capsys, name, text, message):
    split = name.split(".")[0]
    bad = tmp_path / "bad" / name
    bad.parent.mkdir()
    bad.write_text(text)
    files = {**conll, split: bad}
    out = tmp_path / "out"
    assert main(["train", *RUN, "method=lora", *ner(files), f"out={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    # nothing trained: no delta, and the run's record (if the folder was made) says failed
    assert not (out / "delta.safetensors").exists()
    assert json.loads((out / "result.json").read_text())["status"] == "failed" if out.exists() else True


def test_a_tag_column_past_the_line_is_one_line(conll, capsys, tmp_path):
    assert main(["train", *RUN, "method=lora", *ner(conll), "task.tag_column=5", f"out={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "task.tag_column=5 names no tag column" in err
    with pytest.raises(UserError, match="no 'NONE' tag \(task.outside\)"):
        tokens.resolve(load_config(RUN + ner(conll, "task.outside=NONE")))
