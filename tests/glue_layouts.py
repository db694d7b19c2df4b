"""Fixture files in the EXACT layouts of the six GLUE tasks beyond SST-2/MRPC/RTE (no real copies exist here), and a
local copy of the hub's `nyu-mll/glue` configs for them, as download_glue_data.py and the hub lay them out:

- CoLA/{train,dev}.tsv: NO header; source, label (0/1), the original mark ("*" = unacceptable, else empty), sentence.
- MNLI/train.tsv: index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse
  sentence2_parse sentence1 sentence2 label1 gold_label; dev_matched.tsv / dev_mismatched.tsv: label1..label5 then
  gold_label.
- QQP: id qid1 qid2 question1 question2 is_duplicate.  STS-B: index genre filename year old_index source1 source2
  sentence1 sentence2 score.  QNLI: index question sentence label (entailment/not_entailment).  WNLI: index
  sentence1 sentence2 label (0/1).
- hub: <config>/<split>-00000-of-00001.parquet, label a ClassLabel (STS-B: float32), MNLI's validation_matched and
  validation_mismatched splits, text columns as the hub names them (MNLI premise/hypothesis).
"""

from __future__ import annotations

from pathlib import Path

NLI = ["entailment", "neutral", "contradiction"]


def _rows(n: int) -> range:
    return range(n)


def cola(n: int = 16) -> list[str]:
    return [f"gj04\t{i % 2}\t{'' if i % 2 else '*'}\tThe {'cat' if i % 2 else 'cats'} sleeps number {i}." for i in _rows(n)]


def mnli(n: int = 18, dev: bool = False) -> list[str]:
    head = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
            "sentence2_parse\tsentence1\tsentence2\t" + ("label1\tlabel2\tlabel3\tlabel4\tlabel5\t" if dev else "label1\t")
            + "gold_label")
    body = []
    for i in _rows(n):
        g = NLI[i % 3]
        extra = "\t".join([g] * (5 if dev else 1))
        body.append(f"{i}\t{1000 + i}\t{1000 + i}e\tfiction\t( ( A man ) runs )\t( He moves )\t(ROOT (S (NP A man)))\t"
                    f"(ROOT (S He moves))\tA man runs {i} miles.\tHe {['moves', 'sits', 'flies'][i % 3]}.\t{extra}\t{g}")
    return [head, *body]


def qqp(n: int = 16) -> list[str]:
    return ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", *(
        f"{i}\t{2 * i}\t{2 * i + 1}\tHow do I learn {i}?\tWhat is the way to {'learn' if i % 2 else 'cook'} {i}?\t{i % 2}"
        for i in _rows(n))]


def stsb(n: int = 16) -> list[str]:
    return ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore", *(
        f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\tA plane is taking off {i}.\t"
        f"An air plane {'is taking off' if i % 2 else 'sits'}.\t{(i % 6) * 0.8:.3f}" for i in _rows(n))]


def qnli(n: int = 16) -> list[str]:
    return ["index\tquestion\tsentence\tlabel", *(
        f"{i}\tWhat runs {i}?\tThe {'dog runs' if i % 2 else 'sky is blue'} {i}.\t"
        f"{'entailment' if i % 2 else 'not_entailment'}" for i in _rows(n))]


def wnli(n: int = 16) -> list[str]:
    return ["index\tsentence1\tsentence2\tlabel", *(
        f"{i}\tI put the cake {i} away in the fridge. It has a lot of leftovers in it.\t"
        f"The {'fridge' if i % 2 else 'cake'} has a lot of leftovers in it.\t{i % 2}" for i in _rows(n))]


FILES = {  # folder -> {file stem: lines}
    "CoLA": lambda: {"train": cola(), "dev": cola(10)},
    "MNLI": lambda: {"train": mnli(), "dev_matched": mnli(9, True), "dev_mismatched": mnli(6, True)},
    "QQP": lambda: {"train": qqp(), "dev": qqp(10)},
    "STS-B": lambda: {"train": stsb(), "dev": stsb(10)},
    "QNLI": lambda: {"train": qnli(), "dev": qnli(10)},
    "WNLI": lambda: {"train": wnli(), "dev": wnli(10)},
}


def write_glue_all(root: Path) -> Path:
    """root/glue/<Task>/<split>.tsv for the six tasks (plus SST-2/MRPC/RTE from conftest)."""
    from conftest import write_glue

    write_glue(root)
    for folder, files in FILES.items():
        d = root / "glue" / folder
        d.mkdir(parents=True, exist_ok=True)
        for stem, lines in files().items():
            (d / f"{stem}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def hub_glue(root: Path, data_dir: Path) -> Path:
    """`root/glue` in the hub's layout for the six tasks, built from the local fixture TSVs by the local reader."""
    from datasets import ClassLabel, Dataset, Features, Value

    from peftbench.config.compose import load_config
    from peftbench.data.tasks import glue

    repo = root / "glue"
    configs = []
    for name in ("cola", "qqp", "stsb", "mnli", "qnli", "wnli"):
        cfg = load_config(["model=tiny", f"task={name}", f"data_dir={data_dir}"])
        task = cfg.task
        label = Value("float32") if glue.regression(task) else ClassLabel(names=[str(x) for x in task.labels])
        features = Features({**{c: Value("string") for c in task.hub_text_fields}, "label": label, "idx": Value("int32")})
        splits = {"train": "train", **{hub: stem for stem, hub, _ in glue.parts(task, "dev")}}
        for split, stem in splits.items():
            texts, labels = glue.read_part(cfg, stem, split)
            ds = Dataset.from_dict({**dict(zip(task.hub_text_fields, texts)), "label": labels,
                                    "idx": list(range(len(labels)))}, features=features)
            (repo / name).mkdir(parents=True, exist_ok=True)
            ds.to_parquet(str(repo / name / f"{split}-00000-of-00001.parquet"))
        configs.append(f"- config_name: {name}\n  data_files:\n" + "".join(
            f"  - split: {s}\n    path: {name}/{s}-*\n" for s in splits))
    (repo / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n# GLUE (test copy)\n")
    return repo
