"""`peftbench quickstart`, `peftbench list`, and the report of one study's runs (`report --study` and the quickstart).

The quickstart is the main job in miniature: the study preset configs/study/quickstart.yaml (the reference study's five
methods on an SST-2 slice, MiniLM), run by the study machinery (completed runs are skipped), then the report of its runs.
`list` reads what the configs say about themselves: a method's `trains:` field, any other config's first comment.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..config.compose import CONFIG_DIR, group_options
from ..errors import UserError

GROUPS = {"methods": ("method", "method=NAME"), "tasks": ("task", "task=NAME"), "models": ("model", "model=NAME"),
          "studies": ("study", "peftbench study NAME")}


def study_report(name: str, overrides: list[str], out: str | Path, overwrite: bool = False) -> Path:
    """OUT/report.md (+ figures, explorer.html) from the runs study `name` plans and has completed, and only those:
    two presets may share one folder (all_minilm and glue_minilm do)."""
    from ..reports import write_report
    from .grid import load_study, plan

    study = load_study(name, overrides)
    runs = [folder for folder, _ in plan(study)]
    found = [f for f in runs if (f / "result.json").is_file()]
    if not found:
        raise UserError(f"report --study {name}: none of its {len(runs)} planned runs has a result.json under "
                        f"{study.out}; run `peftbench study {name}` first, or give the study's out folder")
    source = f"the runs of study `{name}` in `{study.out}` ({len(found)} of its {len(runs)} planned runs found)"
    return write_report(found, out, source=source, overwrite=overwrite)


def run_quickstart(overrides: list[str], dry_run: bool = False) -> int:
    """Train the quickstart study's runs that are not completed yet, write its report, print where everything is."""
    from .grid import load_study, run_study

    study = load_study("quickstart", overrides)  # bad input fails here, before anything is trained
    code = run_study("quickstart", overrides, dry_run=dry_run,
                     command=shlex.join(["peftbench", "quickstart", *overrides]))
    if dry_run:
        return code
    out = Path(study.out)
    report = study_report("quickstart", overrides, out / "report")
    figures = sorted(p.name for p in report.parent.glob("*.png"))
    print(f"\nruns:     {out}/<task>/<method>/<lr>/seed<seed>/ (result.json, train.log, the delta)\n"
          f"report:   {report}\n"
          f"figures:  {', '.join(str(report.parent / f) for f in figures)}\n"
          f"explorer: {report.parent / 'explorer.html'} (interactive; open it in a browser)\n"
          f"again:    the same command skips the completed runs; `peftbench study quickstart` and "
          f"`peftbench report --study quickstart` are its two halves")
    return code


def _summary(path: Path, group: str) -> str:
    """A method's `trains:` field; otherwise the config's first comment line (an ellipsis when it goes on)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if group == "method":
        trains = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("trains:")), None)
        if trains:
            return trains
    first = lines[0].lstrip("#").strip() if lines and lines[0].startswith("#") else ""
    goes_on = len(lines) > 1 and lines[1].startswith("#") and not first.endswith((".", ")", "`"))
    return first.rstrip(",;") + (" …" if goes_on else "")


def list_configs(groups: list[str] | None = None) -> str:
    """Every method, task, model and study preset, one line each, grouped."""
    unknown = [g for g in groups or [] if g not in GROUPS]
    if unknown:
        raise UserError(f"list: unknown group {unknown}; pick from {', '.join(GROUPS)} (or none for all)")
    out = []
    for title in groups or list(GROUPS):
        group, how = GROUPS[title]
        names = sorted(group_options(group), key=lambda n: (n != "full", n))  # the baseline first, as studies do
        width = max(map(len, names))
        out += [f"{title} ({len(names)}), {how}:"]
        out += [f"  {n:<{width}}  {_summary(CONFIG_DIR / group / f'{n}.yaml', group)}" for n in names]
        out.append("")
    return "\n".join(out).rstrip()
