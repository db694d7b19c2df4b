"""The README's quickstart numbers, regenerated: `peftbench quickstart` on the real data and MiniLM prints the
README's lines and writes the README's table. To the printed digit on the machine the README names (its CPU and ISA,
the same torch/transformers/peft); elsewhere each accuracy within the README's stated tolerance (the seed spread)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from peftbench.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TIME = re.compile(r" \(\d+ s\)$")
ACCURACY = re.compile(r"accuracy (\d+\.\d+)")


def section() -> str:
    return README.read_text(encoding="utf-8").split("## Quickstart", 1)[1].split("\n## ", 1)[0]


def readme_quickstart() -> tuple[list[str], list[str]]:
    """The quickstart section's printed run lines (their times cut) and its table rows, as the README has them."""
    printed = re.search(r"```text\n(.*?)```", section(), re.S).group(1)
    # in the order the runs ended (two train at once); a run's [k/5] is its place in the plan
    lines = sorted(TIME.sub("", line) for line in printed.splitlines() if line.startswith("["))
    rows = [line for line in section().splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return lines, rows


def measured_on() -> tuple[dict[str, str], dict[str, float]]:
    """The README's `Measured on:` facts (cpu, isa, threads, torch, transformers, peft) and each method's tolerance
    in points (twice its standard deviation over 5 seeds)."""
    text = " ".join(section().split())
    line = re.search(r"Measured on: (.*?)\.(?: |$)", text).group(1)
    facts = dict(re.match(r"(\w+) (.+)", part.strip()).groups() for part in line.split(";"))
    spread = re.search(r"standard deviation over 5 seeds .*?: (.*?) points", text).group(1)
    return facts, {m: float(v) for m, v in re.findall(r"(\w+) ±(\d+\.\d+)", spread)}


def ran_on(rec: dict) -> dict[str, str]:
    """What a run's result.json says it ran on, in the README's terms: the CPU model, its kernel ISA flags, torch's
    CPU threads, and the package versions."""
    here, versions = rec["machine"], rec["versions"]
    return {"cpu": here["cpu"], "isa": ",".join(here["cpu_flags"] or []) or "none",
            "threads": str(here.get("cpu_threads")), "torch": versions["torch"],
            "transformers": versions["transformers"], "peft": versions["peft"]}


def test_the_readme_section_parses():
    lines, rows = readme_quickstart()
    assert len(lines) == 5 and all(": accuracy " in line and "majority class 50.92" in line for line in lines)
    assert [r.split("|")[1].strip() for r in rows] == ["full", "bitfit", "bitfit_subset", "lora", "prompt"]
    facts, tolerance = measured_on()
    assert set(facts) == {"cpu", "isa", "threads", "torch", "transformers", "peft"}
    assert list(tolerance) == ["full", "bitfit", "bitfit_subset", "lora", "prompt"] and min(tolerance.values()) > 0


@pytest.mark.integration
@pytest.mark.first  # about 4 minutes on one core: started first, so the other worker runs the rest meanwhile
def test_a_fresh_quickstart_prints_the_readmes_numbers(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # One run at a time, in this process and on its one core: the preset pins each run's threads (threads=1), so
    # the digits are the README's whichever number of runs trains at once (`parallel`, 2 in the preset).
    assert main(["quickstart", f"data_dir={shared_data}", "parallel=1"]) == 0
    printed = sorted(TIME.sub("", line) for line in capsys.readouterr().out.splitlines()
                     if re.match(r"\[\d/5\] ", line))
    lines, rows = readme_quickstart()
    report = (tmp_path / "quickstart" / "report" / "report.md").read_text().splitlines()
    header = next(i for i, line in enumerate(report) if line.startswith("| method | sst2 (accuracy)"))
    cells = [c.strip() for c in report[header].strip("|").split("|")]
    drop = cells.index("avg")  # the README leaves out the average of one task (it is the task's own cell)
    table = []
    for line in report[header + 2:header + 7]:
        row = [c.strip() for c in line.strip("|").split("|")]
        table.append("| " + " | ".join(row[:drop] + row[drop + 1:]) + " |")
    facts, tolerance = measured_on()
    machines = [ran_on(json.loads(p.read_text())) for p in (tmp_path / "quickstart").rglob("result.json")]
    assert len(machines) == 5 and all(m["threads"] == "1" for m in machines)
    if all(m == facts for m in machines):  # the README's machine, threads and packages: every digit
        assert printed == lines
        assert table == rows
        return
    # another CPU or other package versions: the same runs, each accuracy within the seed spread
    assert [line.split(":")[0] for line in printed] == [line.split(":")[0] for line in lines]  # the same runs
    got = [float(ACCURACY.search(line).group(1)) for line in printed]
    want = [float(ACCURACY.search(line).group(1)) for line in lines]
    limits = list(tolerance.values())
    assert all(abs(g - w) <= lim for g, w, lim in zip(got, want, limits, strict=True)), (got, want, tolerance)
    trainable = lambda rs: [r.split("|")[1:2] + r.split("|")[-2:-1] for r in rs]  # noqa: E731  (method, trainable %)
    assert trainable(table) == trainable(rows)
