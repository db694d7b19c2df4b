"""The README's own-data lines, run as written on the tiny model: the 4-line task file, the study, the report; the
report names the task by its name and holds every method's score (a results table, as GLUE tasks get). Also a
regression task in the same table, and every figure's texts inside its PNG."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest

from peftbench.cli import main
from peftbench.reports import figures

README = Path(__file__).resolve().parents[1] / "README.md"
WORDS = ["good", "great", "fine", "bad", "awful", "poor", "nice", "dull"]


def own_data_section() -> tuple[str, list[str]]:
    """The task file and the command lines of the README's "A study on your own CSV", as printed there."""
    text = README.read_text(encoding="utf-8").split("### A study on your own CSV", 1)[1].split("\n## ", 1)[0]
    yaml = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    bash = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#", 1)[0].strip() for line in bash.splitlines() if line.startswith("peftbench ")]
    return yaml, commands


def write_csv(path: Path, n: int, regression: bool = False) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "label"])
        for i in range(n):
            w.writerow([f"{WORDS[i % 8]} film number {i}", (i % 8) / 7 if regression else int(i % 8 < 4)])


def table(md: str, header_start: str) -> dict[str, list[str]]:
    """The rows of the first table whose header starts with `header_start`, by their first cell."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_the_readme_own_data_lines_run_and_the_report_has_every_score(tmp_path, monkeypatch):
    yaml, commands = own_data_section()
    assert len(yaml.strip().splitlines()) == 4 and "name: my_task" in yaml  # the file itself, not `task.train:` keys
    assert [c.split()[1] for c in commands] == ["study", "report"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_task.yaml").write_text(yaml)
    write_csv(tmp_path / "train.csv", 48)
    write_csv(tmp_path / "dev.csv", 16)
    for command in commands:
        args = shlex.split(command)[1:]
        assert main(args + (["model=tiny"] if args[0] == "study" else [])) == 0, command  # the tiny model, no more
    out = re.search(r"--out (\S+)", commands[1]).group(1)
    md = (tmp_path / out / "report.md").read_text()
    results = table(md, "| method | my_task (accuracy)")
    scores = {}
    for path in (tmp_path / "studies" / "mine" / "my_task").rglob("result.json"):
        rec = json.loads(path.read_text())
        scores[rec["run"]["method"]] = rec["metrics"]["accuracy"]
    assert sorted(scores) == sorted(["full", "bitfit", "bitfit_subset", "lora", "prompt"])
    for method, score in scores.items():
        assert results[method][0].strip("*_").startswith(f"{score:.2f} (n=1)"), (method, results[method])
    assert "## Results — tiny" in md and "#### Decision rule" in md and "(part1_results.png)" in md
    assert (tmp_path / out / "part1_results.png").stat().st_size > 5_000


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_regression_task_gets_its_table_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "train.csv", 32, regression=True)
    write_csv(tmp_path / "dev.csv", 16, regression=True)
    (tmp_path / "scores.yaml").write_text("name: scores\ntrain: train.csv\ndev: dev.csv\ntext: sentence\n")
    assert main(["study", "glue", "tasks=[scores.yaml]", "methods=[full,bitfit]", "model=tiny", "max_steps=2",
                 "out=studies/reg", "tracking.mode=disabled"]) == 0
    assert main(["report", "studies/reg", "--out", "rep"]) == 0
    rows = table((tmp_path / "rep" / "report.md").read_text(), "| method | scores (pearson)")
    assert sorted(rows) == ["bitfit", "full"] and all(re.match(r"[*_]*-?\d+\.\d\d \(n=1\)", r[0]) for r in rows.values())


@pytest.mark.parametrize("tasks", [["sst2"], ["sst2", "mrpc", "rte"]])
def test_no_figure_text_is_cut_off_and_the_legend_lists_only_what_is_drawn(tmp_path, monkeypatch, tasks):
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: (fig.tight_layout(), saved.append(fig)))
    methods = ["full", "bitfit", "bitfit_subset", "lora", "prompt"]
    rec = lambda m, v: {"metrics": {"accuracy": v}, "trainable_percent": 1.0 + len(m), "peak_memory_bytes": 2**30,
                        "train_flops": 1e12, "train_time_s": 10.0}
    by = {m: {t: [rec(m, 60.0 + i + j)] for j, t in enumerate(tasks)} for i, m in enumerate(methods)}
    metric = {t: "accuracy" for t in tasks}
    means = {m: {t: 60.0 + i + j for j, t in enumerate(tasks)} for i, m in enumerate(methods)}
    for m in methods:
        means[m]["avg"] = sum(means[m][t] for t in tasks) / len(tasks)
    figures.parameter_efficiency(by, methods, tasks, metric, means, tmp_path / "a.png")
    figures.part1_results(by, methods, tasks, metric, tmp_path / "b.png", {t: 50.0 for t in tasks})
    for fig in saved:
        assert figures.outside(fig) == []
    legend = [t.get_text() for t in saved[0].axes[0].get_legend().get_texts()]
    markers = {tuple(c.get_offsets()[0]) for c in saved[0].axes[0].collections}
    if len(tasks) == 1:  # one task: a star per method, no task marker hiding under it, no "average" of one task
        assert legend == methods and len(markers) == len(methods)
    else:
        assert legend == methods + [f"{t} (accuracy)" for t in tasks] + ["average over tasks"]
        assert len(saved[0].axes[0].collections) == len(methods) * (len(tasks) + 1)
