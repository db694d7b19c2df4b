"""The README stays a short, true product page: its length, its links and the docs nav point at files that exist,
and every `peftbench COMMAND` in its code blocks is a real subcommand. (`mkdocs build --strict` in .ci/run checks
every page's links and anchors.)"""

from __future__ import annotations

import pytest

import argparse
import re
from pathlib import Path

import yaml

from peftbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMING = {"quickstart", "list"}  # subcommands being added on other branches; the README already shows them
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"(?<![\w./-])peftbench\s+([a-z][\w-]*)")


def relative_links(text: str) -> list[str]:
    links = [m.group(1) for m in LINK.finditer(text)]
    return [link for link in links if not re.match(r"[a-z]+:|#", link)]


def code_blocks(text: str, lang: str = r"[^\n]*") -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def subcommands() -> set[str]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [f for v in node.values() for f in nav_files(v)]
    return [f for item in node for f in nav_files(item)]


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= 320, f"README.md has {lines} lines: move detail into docs/ (the product page stays <= 320)"


def test_readme_links_point_at_files():
    links = relative_links(README.read_text())
    assert len(links) > 10  # the check reads the links at all
    missing = [link for link in links if not (ROOT / link.split("#")[0]).exists()]
    assert missing == []


def test_link_finder_on_a_known_text():
    text = "[a](docs/x.md#y) ![b](img.png) [c](https://e.org) [d](#top)"
    assert relative_links(text) == ["docs/x.md#y", "img.png"]
    assert COMMAND.findall("peftbench train x=1 && python -m peftbench.cli study  # peftbench --help, `peftbench`") == ["train"]


def test_nav_points_at_files():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    files = nav_files(config["nav"])
    assert "index.md" in files and "api.md" in files
    missing = [f for f in files if not (ROOT / config.get("docs_dir", "docs") / f).is_file()]
    assert missing == []


def test_readme_commands_are_real_subcommands():
    blocks = "\n".join(code_blocks(README.read_text(), "(?:bash|text)?"))  # shell lines, not the Python example
    used = set(COMMAND.findall(blocks))
    assert {"train", "study", "report", "params"} <= used
    assert used - subcommands() - COMING == set()


def _build(root: Path) -> "subprocess.CompletedProcess[str]":
    import os
    import subprocess
    import sys

    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(root / "site")],
                          cwd=root, env=env, capture_output=True, text=True)


@pytest.mark.slow  # trains end to end for seconds: outside the fast tier
def test_a_broken_link_fails_the_strict_docs_build(tmp_path):
    """.ci/run's `mkdocs build --strict` (no --quiet, which hid every warning): a copy of the docs builds, and the
    same copy with one broken link does not."""
    import shutil

    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "src").symlink_to(ROOT / "src")  # the API page's code and the snippets the pages include
    clean = _build(tmp_path)
    assert clean.returncode == 0, clean.stderr[-2000:]
    page = tmp_path / "docs" / "tasks.md"
    page.write_text(page.read_text() + "\nSee [the gone page](no-such-page.md).\n")
    broken = _build(tmp_path)
    assert broken.returncode != 0
    assert "contains a link 'no-such-page.md', but the target is not found" in broken.stderr, broken.stderr[-2000:]


def test_ci_installs_what_the_readme_says():
    """CI installs with the README's own line (a fresh venv), so the README's install + test command is what CI runs."""
    install = README.read_text().split("## Install", 1)[1]
    line = next(l for l in code_blocks(install)[0].splitlines() if l.startswith("pip install"))
    ci = (ROOT / ".ci" / "run").read_text()
    assert line in ci.splitlines()
    test = README.read_text().split("## Test", 1)[1]
    command = code_blocks(test)[0].splitlines()[0].split("  #")[0].strip()
    assert command.startswith("python -m pytest -q")
    assert "python3 -m venv" in ci and ci.rstrip().splitlines()[-1] == command
