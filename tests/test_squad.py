"""SQuAD on fixtures and the tiny model: the official metric, windows and labels, postprocessing, files, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peftbench.cli import main
from peftbench.config.compose import load_config
from peftbench.data.batches import total_steps
from peftbench.errors import UserError
from peftbench.models.load import tiny_tokenizer
from peftbench.data.tasks import squad, squad_metric
from peftbench.data.tasks.squad_metric import evaluate, exact_match_score, f1_score, normalize_answer

PARAGRAPHS = [
    ("the eiffel tower is in paris, france. it was built in 1889 by gustave eiffel's company. it is 330 metres tall "
     "and was the tallest man-made structure in the world for 41 years, until 1930.",
     [("where is the eiffel tower?", ["paris, france", "paris"]), ("when was it built?", ["1889"]),
      ("how tall is it?", ["330 metres"]), ("whose company built it?", ["gustave eiffel's company"])]),
    ("the nile is a river in africa. it flows north for about 6,650 km into the mediterranean sea. its two main "
     "branches are the white nile and the blue nile, which meet at khartoum in sudan.",
     [("where does the nile flow?", ["into the mediterranean sea"]), ("how long is the nile?", ["about 6,650 km"]),
      ("where do its branches meet?", ["khartoum", "at khartoum in sudan"]), ("what is the nile?", ["a river"])]),
    ("python was created by guido van rossum and first released in 1991. its design stresses readability, with "
     "significant indentation. version 3.0 came out in 2008 and was not fully backward compatible.",
     [("who created python?", ["guido van rossum"]), ("when was python first released?", ["1991"]),
      ("when did version 3.0 come out?", ["2008"]), ("what does its design stress?", ["readability"])]),
]
OVERRIDES = ["task=squad", "model=tiny", "task.max_length=64", "task.doc_stride=24", "tracking.mode=disabled"]


def squad_json(paragraphs=PARAGRAPHS) -> dict:
    return {"version": "1.1", "data": [{"title": "fixture", "paragraphs": [
        {"context": ctx, "qas": [{"id": f"p{p}q{q}", "question": question,
                                  "answers": [{"text": a, "answer_start": ctx.index(a)} for a in answers]}
                                 for q, (question, answers) in enumerate(qas)]}
        for p, (ctx, qas) in enumerate(paragraphs)]}]}


@pytest.fixture
def squad_dir(tmp_path: Path) -> Path:
    d = tmp_path / "squad"
    d.mkdir()
    for name in squad.FILES.values():
        (d / name).write_text(json.dumps(squad_json()))
    return d


def load(squad_dir: Path, *extra: str):
    cfg = load_config(OVERRIDES + [f"task.data_dir={squad_dir}", *extra])
    return squad.load(cfg, tiny_tokenizer()), cfg


def test_metric_on_hand_computed_cases():
    assert normalize_answer("The  Quick, brown FOX!") == "quick brown fox"
    assert normalize_answer("An apple a day keeps theory away") == "apple day keeps theory away"
    assert exact_match_score("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert exact_match_score("1,889", "1889") == 1.0  # punctuation goes, even inside numbers
    assert f1_score("in paris france", "paris") == 0.5  # p = 1/3, r = 1
    assert f1_score("paris", "paris, france") == pytest.approx(2 / 3)
    assert exact_match_score("", "the") == 1.0 and f1_score("", "the") == 0.0  # both normalize to "": EM yes, F1 no
    assert f1_score("", "paris") == 0.0 and exact_match_score("", "paris") == 0.0
    golds = {"a": ["Paris"], "b": ["paris", "city of paris"], "c": ["1889"]}
    preds = {"a": "paris.", "b": "in paris france"}  # c unanswered: scores 0 but counts
    m = evaluate(golds, preds)
    assert m["exact_match"] == pytest.approx(100 / 3)
    assert m["f1"] == pytest.approx(100 * (1 + 0.5) / 3)  # b: max(F1 vs "paris" 0.5, vs "city of paris" 1/3)


def test_schedule_reproduces_the_seed_table_and_max_steps_caps_it():
    cfg = load_config(["task=squad", "schedule=steps"])
    table = {500: 2000, 1000: 2000, 5000: 2000, 10000: 3125, 20000: 6250, 88524: 15000}
    assert {n: total_steps(cfg, n) for n in table} == table
    cfg.max_steps = 2500
    assert total_steps(cfg, 20000) == 2500 and total_steps(cfg, 500) == 2000


def test_labels_decode_to_the_gold_answer_in_every_window_that_holds_it(squad_dir):
    examples, bad = squad.read_squad(squad_dir / "train-v1.1.json")
    assert bad == [] and len(examples) == 12
    cfg = load_config(OVERRIDES)
    inputs, owner, offsets, cut = squad.train_windows(examples, tiny_tokenizer(), cfg.task)
    assert cut == 0 and len(owner) > 2 * len(examples)  # long contexts really are split into windows
    labelled = set()
    for i, (j, off) in enumerate(zip(owner, offsets)):
        s, e = inputs["start_positions"][i], inputs["end_positions"][i]
        start, text = examples[j]["spans"][0]
        inside = off[off[:, 0] >= 0]
        holds = inside[0, 0] <= start and inside[-1, 1] >= start + len(text)
        assert (s > 0) == holds, (i, s, e)
        if s > 0:
            labelled.add(j)
            assert examples[j]["context"][off[s, 0] : off[e, 1]] == text
        else:
            assert e == 0
        assert len(inputs["input_ids"][i]) <= 64
    assert labelled == set(range(len(examples)))


def test_postprocessing_rules_on_hand_made_logits():
    # [CLS] q [SEP] abc def ghi [SEP] pad pad: the padding (huge logits) lies past the offsets and never counts
    off = np.array([[-1, -1]] * 3 + [[0, 3], [4, 7], [8, 11]] + [[-1, -1]])
    meta = {"ids": ["x"], "contexts": ["abc def ghi"], "owner": np.array([0]), "offsets": [off],
            "n_best": 20, "max_answer_length": 30}
    start = np.array([0, 9, 0, 2, 3, 5, 0, 99, 99.0])
    end = np.array([0, 9, 0, 6, 4, 1, 0, 99, 99.0])
    assert squad.best_answers([start], [end], meta) == {"x": "abc"}  # ghi..abc (11) has end before start
    assert squad.best_answers([start], [end], {**meta, "n_best": 1}) == {"x": ""}  # top-1 start is a question token
    start, end = np.array([0, 0, 0, 5, 0, 1, 0.0]), np.array([0, 0, 0, 0, 0, 5, 0.0])
    assert squad.best_answers([start], [end], meta) == {"x": "abc def ghi"}
    assert squad.best_answers([start], [end], {**meta, "max_answer_length": 1}) == {"x": "ghi"}  # 6 beats abc's 5
    # two windows of one question: the best span over both wins
    meta2 = {**meta, "owner": np.array([0, 0]), "offsets": [off, off]}
    assert squad.best_answers([start, start + 1], [end, end], meta2) == {"x": "abc def ghi"}
    assert squad.best_answers([start, start * 0], [end, end * 0 + 3], meta2) == {"x": "abc def ghi"}


def oracle_outputs(data, examples: list[dict], pad: int = 3) -> dict[str, list[np.ndarray]]:
    """Logits peaked at the gold span of every window that holds it, with junk padding past each row's end."""
    by_id = {e["id"]: e for e in examples}
    starts, ends = [], []
    for j, off in zip(data.meta["owner"], data.meta["offsets"]):
        a, text = by_id[data.meta["ids"][j]]["spans"][0]
        s, e = squad.answer_tokens(off, a, a + len(text))
        sl, el = np.zeros(len(off) + pad, np.float32), np.zeros(len(off) + pad, np.float32)
        sl[len(off):] = el[len(off):] = 50.0
        if s:
            sl[s], el[e] = 10.0, 10.0
        starts.append(sl)
        ends.append(el)
    return {"start_logits": starts, "end_logits": ends}


def test_oracle_logits_give_em_100(squad_dir):
    data, _ = load(squad_dir)
    examples, _ = squad.read_squad(squad_dir / "dev-v1.1.json")
    metrics, predictions = squad.score(data, oracle_outputs(data, examples))
    assert metrics == {"exact_match": 100.0, "f1": 100.0}
    assert predictions["p0q0"] == "paris, france"


def test_load_shapes_subsets_and_eval_size(squad_dir):
    data, _ = load(squad_dir)
    assert set(data.train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "start_positions",
                                            "end_positions"}
    assert set(data.eval.column_names) == {"input_ids", "token_type_ids", "attention_mask"}
    assert data.train_examples == 12 and data.eval_examples == 12 and len(data.train) > 12
    assert len(data.eval) == len(data.meta["offsets"]) == len(data.meta["owner"])

    def windows(n, seed=42):
        d, _ = load(squad_dir, f"train_size={n}", f"seed={seed}")
        assert d.train_examples == n
        return {tuple(x) for x in d.train["input_ids"]}
    assert windows(4) == windows(4) and windows(4) < windows(8) and windows(4) != windows(4, seed=7)
    with pytest.raises(UserError, match="train_size=13 is above the 12 training questions"):
        load(squad_dir, "train_size=13")
    small, _ = load(squad_dir, "task.eval_size=5", "seed=1")
    other, _ = load(squad_dir, "task.eval_size=5", "seed=2")
    assert small.eval_examples == 5 and small.meta["ids"] == other.meta["ids"]  # one subset for every seed


def test_bad_files_are_one_clear_error_or_a_counted_skip(squad_dir, tmp_path):
    bad = tmp_path / "bad.json"
    for doc, message in [({"data": [{"paragraphs": [{"context": "x"}]}]}, "not the SQuAD v1.1 layout at data\\[0\\]"),
                         ({"rows": []}, "no `data` list"), ({"version": "v2.0", "data": []}, "only v1.1")]:
        bad.write_text(json.dumps(doc))
        with pytest.raises(UserError, match=f"{bad}.*{message}"):
            squad.read_squad(bad)
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a SQuAD JSON file"):
        squad.read_squad(bad)
    doc = squad_json()
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] += 1  # "1889" now off by one
    (squad_dir / "train-v1.1.json").write_text(json.dumps(doc))
    data, _ = load(squad_dir)
    assert data.train_examples == 11
    assert any("skipped answers whose answer_start does not match the context: 1 in" in n and "1 question(s) without a usable answer dropped" in n
               for n in data.notes)
    (squad_dir / "train-v1.1.json").unlink()
    with pytest.raises(UserError, match="train-v1.1.json not found.*task.data_dir=.*squad-devsplit"):
        load(squad_dir)


def test_missing_train_file_via_cli_is_one_line(squad_dir, tmp_path, capsys):
    (squad_dir / "train-v1.1.json").unlink()
    assert main(["train", *OVERRIDES, f"task.data_dir={squad_dir}", f"out={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("peftbench: error: SQuAD train file") and "\n" not in err


@pytest.mark.parametrize("method", ["full", "lora", "prompt"])
def test_tiny_qa_run_writes_result_and_predictions_that_rescore_equal(squad_dir, tmp_path, method):
    out = tmp_path / method
    assert main(["train", *OVERRIDES, f"task.data_dir={squad_dir}", f"out={out}", f"method={method}", "max_steps=3",
                 "batch_size=8", "method.num_virtual_tokens=4" if method == "prompt" else "seed=42"]) == 0
    rec = json.loads((out / "result.json").read_text())
    assert rec["status"] == "completed" and rec["primary_metric"] == "f1"
    assert rec["train_examples"] == 12 and rec["eval_examples"] == 12 and rec["train_windows"] > 12
    predictions = json.loads((out / "predictions.json").read_text())
    dev = json.loads((squad_dir / "dev-v1.1.json").read_text())["data"]
    assert set(predictions) == set(squad_metric.golds_of(dev))
    contexts = [p["context"] for p in dev[0]["paragraphs"]]
    assert all(any(text in c for c in contexts) for text in predictions.values())
    assert rec["metrics"] == evaluate(squad_metric.golds_of(dev), predictions)
    assert "squad: train 12 questions ->" in (out / "train.log").read_text()
