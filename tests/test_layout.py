"""The package layout: imports between peftbench's own modules form no cycle (a lazy import inside a function counts
too: it only hides the circle), the report's modules live in one package, and the layers hold (import-linter's contract in pyproject.toml). A package's registry (its __init__)
and the submodules it registers may import each other: that pair is one unit."""

from __future__ import annotations

import ast
from pathlib import Path

import peftbench

SRC = Path(peftbench.__file__).parent


def module_name(path: Path) -> str:
    parts = ["peftbench", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """peftbench modules the file at `path` imports, at module level or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from . import x` imports the submodule x
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    own = lambda m: MODULES[m].name == "__init__.py" and name.startswith(m + ".")  # noqa: E731  (registry <- its own)
    return {m for m in found if m in MODULES and m != name and not own(m)}


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def test_no_import_cycles():
    graph = {name: imports(path) for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, stack + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def test_report_modules_are_one_package():
    report = {m for m in MODULES if m.startswith("peftbench.reports.")}
    assert {"peftbench.reports.build", "peftbench.reports.glue", "peftbench.reports.scaling", "peftbench.reports.cells",
            "peftbench.reports.figures", "peftbench.reports.baselines",
            "peftbench.reports.explorer"} <= report
    loose = {"report_glue", "report_scaling", "cells", "figures", "baselines", "explorer"}
    assert not loose & {p.stem for p in SRC.glob("*.py")}


def test_the_layers_hold():
    """cli -> study -> report | artifacts -> engine -> models -> data -> config -> record | stats -> errors."""
    import subprocess
    import sys

    root = SRC.parents[1]
    done = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports; "
                           f"raise SystemExit(lint_imports(config_filename={str(root / 'pyproject.toml')!r}, no_cache=True))"],
                          cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_planning_a_study_loads_no_plotting_library():
    import subprocess
    import sys

    code = ("import sys; from peftbench.studies import grid, protocol, planning, search, runner; "
            "print(sorted(m for m in ('matplotlib', 'plotly') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
