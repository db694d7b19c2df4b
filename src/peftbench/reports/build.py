"""`peftbench report DIR... --out OUT`: OUT/report.md and PNG figures, built from result.json files only.

Sections: methods overview, the results table of every task but a SQuAD size curve: GLUE's and the user's own
classification, regression and QA tasks, each named by its task name (best overall in bold, best PEFT in italics;
with a learning-rate grid, each method at its best rate per task, the whole grid, the reference study's rate beside the
tuned one), every method vs full
FT per task with a paired 95% interval, costs, SQuAD scaling (full vs bitfit per training size, tie rule,
crossover on log(size), data regimes and a decision rule derived from the measured winners), forgetting (how far
each method moved the encoder on a fixed text sample, forgetting.py), learning curves of
runs trained with eval_every, runs that learned nothing (not ≥ CLEAR points above the majority-class baseline),
failed and unfinished runs. Every number comes from a record; nothing is typed in by hand. The GLUE and scaling
sections are glue.py and scaling.py; the pieces they share (cells, flags, the learning-rate choice)
are cells.py.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..engine.folders import check_out, staged
from ..errors import UserError
from ..record import SCORED, read_record
from . import explorer, protocol
from .baselines import baseline
from .cells import CLEAR, FLAG, TASK_ORDER, cell, learned_nothing, order, rate
from .figures import ORDER, family
from .glue import glue_section
from ..stats import mean_std
from .scaling import scaling_section


def collect(dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Every readable result.json under `dirs`; a completed run found twice (same identity, same protocol role) counts
    once, the latest."""
    records, seen = [], set()
    for d in dirs:
        if not Path(d).is_dir():
            raise UserError(f"report: {d} is not a folder; give the study or run folders holding result.json files")
        for path in sorted(Path(d).rglob("result.json")):
            if path.resolve() not in seen and (rec := read_record(path)) is not None:
                seen.add(path.resolve())
                records.append({**rec, "_path": str(path.parent)})
    latest: dict[str, dict] = {}
    for r in records:
        if r["status"] in SCORED:  # a holdout study's final run and a select=dev grid's run can be one experiment:
            p = r.get("protocol") or {}  # each stays in its own section
            key = (r["identity"], p.get("select"), p.get("phase"))
            if key not in latest or r.get("finished_at", "") > latest[key].get("finished_at", ""):
                latest[key] = r
    return list(latest.values()) + [r for r in records if r["status"] not in SCORED]


def methods_section(recs: list[dict]) -> list[str]:
    rows = defaultdict(list)
    for r in recs:
        rows[(r["run"]["model"], r["run"]["method"], r["trainable_params"], r["total_params"])].append(r)
    lines = ["## Methods", "", "| model | method | trainable params | % of total | what trains | tasks |",
             "|---|---|---:|---:|---|---|"]
    rank = lambda m: ORDER.index(m) if m in ORDER else len(ORDER)
    lines[2] = "| model | method | family | trainable params | % of total | what trains | tasks |"
    lines[3] = "|---|---|---|---:|---:|---|---|"
    for (model, method, trainable, total), rs in sorted(rows.items(), key=lambda kv: (kv[0][0], rank(kv[0][1]), kv[0])):
        tasks = ", ".join(order({x["run"]["task"] for x in rs}, TASK_ORDER))
        lines.append(f"| {model} | {method} | {family(method)} | {trainable:,} | {100 * trainable / total:.3g}% | "
                     f"{rs[0]['config']['method'].get('trains', '')} | {tasks} |")
    return lines + [""]


def curves_section(recs: list[dict]) -> list[str]:
    """Dev score at every `eval_every` step and at the end, mean over the seeds of one task/method/size/rate."""
    groups = defaultdict(list)
    for r in recs:
        if r.get("history"):
            groups[(r["run"]["task"], r["run"]["method"], r["run"]["train_size"] or 0, r.get("lr") or 0.0)].append(r)
    if not groups:
        return []
    lines = ["## Learning curves", "", "Runs trained with `eval_every`: the dev score at each eval step and at the "
             "end (the last row, the number the tables use), mean ± std over seeds. "
             f"{FLAG}: runs not {CLEAR:g} point above the baseline at that step.", ""]
    rank = {t: i for i, t in enumerate(TASK_ORDER)}
    for (task, method, size, lr), rs in sorted(groups.items(), key=lambda kv: (rank.get(kv[0][0], len(rank)), kv[0])):
        metric, b = rs[0]["primary_metric"], baseline(rs[0])
        title = f"**{task} / {method}**" + (f", train_size {size:,}" if size else "") + (f", lr {rate(lr)}" if lr else "")
        lines += [title + f": {metric}" + (f", baseline {b:.2f}" if b is not None else ""), "",
                  "| step | epoch | " + metric + " | " + FLAG + " |", "|---:|---:|---:|---:|"]
        curve = defaultdict(list)  # step -> this step's score of each run
        for r in rs:
            for point in [*r["history"], {"step": r["train_steps"], **r["metrics"]}]:
                curve[point["step"]].append((point[metric], r["epochs_run"] * point["step"] / r["train_steps"]))
        for step, points in sorted(curve.items()):
            vals = [v for v, _ in points]
            low = sum(b is not None and v < b + CLEAR for v in vals)
            lines.append(f"| {step:,} | {points[0][1]:.1f} | {cell(vals)} | {low or ''} |")
        lines.append("")
    return lines


def forgetting_section(recs: list[dict]) -> list[str]:
    """1 − CKA and the MLM loss change per model/method/task, mean ± std over the runs that recorded them."""
    groups = defaultdict(list)
    for r in recs:
        if (r.get("forgetting") or {}).get("cka") is not None:
            groups[(r["run"]["model"], r["run"]["method"], r["run"]["task"])].append(r["forgetting"])
    if not groups:
        return []

    def text(vals: list[float], fmt: str) -> str:
        if not vals:
            return "—"
        m, s, _ = mean_std(vals)
        return f"{m:{fmt}}" + ("" if s is None else f" ± {s:.2g}")
    lines = ["## Forgetting", "", "How far training moved the encoder, on a fixed general-domain sample no task trains "
             "on: 1 − linear CKA between the base's and the tuned encoder's mean-pooled sentence vectors (0: unmoved), "
             "and the change of the checkpoint's masked-LM loss (tuned − base; — where it has no MLM head). Mean ± std "
             "over seeds.", "",
             "| model | method | task | 1 − CKA | MLM loss Δ | runs |", "|---|---|---|---:|---:|---:|"]
    rank, tasks = (lambda m: ORDER.index(m) if m in ORDER else len(ORDER)), {t: i for i, t in enumerate(TASK_ORDER)}
    for (model, method, task), fs in sorted(groups.items(), key=lambda kv: (kv[0][0], rank(kv[0][1]),
                                                                           tasks.get(kv[0][2], len(tasks)), kv[0])):
        deltas = [f["mlm_loss_delta"] for f in fs if f.get("mlm_loss_delta") is not None]
        lines.append(f"| {model} | {method} | {task} | {text([1 - f['cka'] for f in fs], '.3g')} | "
                     f"{text(deltas, '+.3g')} | {len(fs)} |")
    notes = sorted({f"{k[0]}: {f['mlm_note']}" for k, fs in groups.items() for f in fs
                    if f.get("mlm_loss_delta") is None and f.get("mlm_note")})
    return lines + ([""] + [f"No MLM loss for {n}." for n in notes] if notes else []) + [""]


def section_kind(rec: dict, done: list[dict]) -> str:
    """"scaling" for QA runs of a task trained at several sizes (the SQuAD size curve; SQuAD itself always), else
    "glue": the per-task results table, for GLUE and for any task of the user's own (classification, regression,
    QA), named by the task's name."""
    task = rec["run"]["task"]
    if rec["config"]["task"].get("kind") == "squad":
        sizes = {r["run"]["train_size"] for r in done if r["run"]["task"] == task}
        if task == "squad" or len(sizes) > 1:
            return "scaling"
    return "glue"


def write_report(dirs: list[str | Path], out: str | Path, source: str | None = None, overwrite: bool = False) -> Path:
    """Read the records under `dirs`, write OUT/report.md and its figures; returns the report's path.

    `source` says in the header where the runs came from (default: the list of `dirs`). OUT is new, empty, an earlier
    report (its files are replaced, other files stay) or `overwrite`; the files are written aside, then moved in."""
    check_out(out, "report", overwrite, replaces="report.md")
    records = collect(dirs)
    if not records:
        raise UserError(f"report: no result.json under {', '.join(map(str, dirs))}; run a study or `peftbench train` first")
    with staged(Path(out), whole=overwrite) as tmp:
        _write(records, tmp, source or ", ".join(f"`{d}`" for d in dirs))
    return Path(out) / "report.md"


def _write(records: list[dict[str, Any]], out: Path, source: str) -> None:
    done = [r for r in records if r["status"] in SCORED]
    other = [r for r in records if r["status"] not in SCORED]
    diverged = sum(r["status"] == "diverged" for r in done)
    lines = ["# peftbench report", "", f"{len(done)} completed runs"
             + (f" ({diverged} diverged: scored as the trivial prediction)" if diverged else "")
             + f", {len(other)} failed or unfinished, read from {source}.", ""]
    if done:
        lines += methods_section(done)
    scored = [r for r in done if not protocol.is_selection(r)]  # holdout-scored selection runs: EVP only
    groups = defaultdict(list)
    for r in scored:
        kind = section_kind(r, scored)
        size = r["run"]["train_size"] if kind == "glue" else None
        groups[(kind, r["run"]["model"], size, protocol.select_of(r))].append(r)
    for kind in ("glue", "scaling"):
        keys = sorted((k for k in groups if k[0] == kind), key=lambda k: (k[1], k[2] or 0, k[3]))
        for key in keys:
            _, model, size, select = key
            tag = "" if len(keys) == 1 else f"_{model}" + (f"_n{size}" if size else "") + (
                f"_{select}" if select != "dev" else "")
            own = any(r["config"]["task"].get("kind") != "glue" for r in groups[key])
            title = ("Results" if own else "GLUE") if kind == "glue" else "SQuAD low-data scaling"
            lines += [f"## {title} — {model}" + (f", train_size {size:,}" if size else "")
                      + (f", select={select}" if select != "dev" else ""), "", protocol.caption(groups[key]), ""]
            section = glue_section if kind == "glue" else scaling_section
            lines += section(groups[key], out, tag)
    lines += protocol.protocol_sections(done, out)
    lines += forgetting_section(scored)
    lines += curves_section(scored)
    flagged = [r for r in scored if learned_nothing(r)]
    lines += ["## Learned nothing", "", f"Runs whose primary metric is not at least {CLEAR:g} point above the best "
              "constant prediction on their eval set (majority-class accuracy; F1 of predicting the positive class "
              "everywhere; SQuAD: the context's first sentence as the answer; token tasks: every word `O`; "
              "multi-label: the training data's most frequent label set on every row).", ""]
    lines += [f"- `{r['_path']}`: {r['primary_metric']} {r['metrics'][r['primary_metric']]:.2f} vs baseline "
              f"{baseline(r):.2f}" + (f" (lr {rate(r['lr'])})" if r.get("lr") is not None else "")
              for r in flagged] or ["None."]
    lines += ["", "## Failed and unfinished runs", ""]
    lines += [f"- `{r['_path']}`: {r['status']}" + (f" — {r['error']}" if r.get("error") else "") for r in other] or ["None."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    explorer.write_explorer(scored, out / "explorer.html")  # the same runs, interactive (explorer.py)
