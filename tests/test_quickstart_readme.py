"""The README's quickstart numbers, regenerated: `peftbench quickstart` on the real data and MiniLM prints the
README's lines and writes the README's table, to the printed digit (the times aside)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from peftbench.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TIME = re.compile(r" \(\d+ s\)$")


def readme_quickstart() -> tuple[list[str], list[str]]:
    """The quickstart section's printed run lines (their times cut) and its table rows, as the README has them."""
    section = README.read_text(encoding="utf-8").split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    printed = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    lines = [TIME.sub("", line) for line in printed.splitlines() if line.startswith("[")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return lines, rows


def test_the_readme_section_parses():
    lines, rows = readme_quickstart()
    assert len(lines) == 5 and all(": accuracy " in line and "majority class 50.92" in line for line in lines)
    assert [r.split("|")[1].strip() for r in rows] == ["full", "bitfit", "bitfit_subset", "lora", "prompt"]


@pytest.mark.integration
def test_a_fresh_quickstart_prints_the_readmes_numbers(shared_data, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the README's run: 2 threads (prompt tuning's score moves with the thread count: 68.12 on 1)
    try:
        assert main(["quickstart", f"data_dir={shared_data}"]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = [TIME.sub("", line) for line in capsys.readouterr().out.splitlines() if re.match(r"\[\d/5\] ", line)]
    lines, rows = readme_quickstart()
    assert printed == lines
    report = (tmp_path / "quickstart" / "report" / "report.md").read_text().splitlines()
    header = next(i for i, line in enumerate(report) if line.startswith("| method | sst2 (accuracy)"))
    cells = [c.strip() for c in report[header].strip("|").split("|")]
    drop = cells.index("avg")  # the README leaves out the average of one task (it is the task's own cell)
    table = []
    for line in report[header + 2:header + 7]:
        row = [c.strip() for c in line.strip("|").split("|")]
        table.append("| " + " | ".join(row[:drop] + row[drop + 1:]) + " |")
    assert table == rows
