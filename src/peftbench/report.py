"""`peftbench report DIR... --out OUT`: OUT/report.md and PNG figures, built from result.json files only.

Sections: methods overview, GLUE table (best overall in bold, best PEFT in italics), costs, SQuAD scaling
(full vs bitfit per training size, tie rule, crossover on log(size), data regimes and a decision rule derived
from the measured winners), runs that learned nothing (not ≥ CLEAR points above the majority-class baseline),
failed and unfinished runs. Every number comes from a record; nothing is typed in by hand.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import explorer
from . import figures
from .baselines import baseline
from .errors import UserError
from .record import NOT_IDENTITY, read_record
from .stats import TIE_ONE_SEED, bootstrap_crossing, compare, crossings, mean_std

ORDER = ["full", "bitfit", "bitfit_subset", "lora", "prompt",
         "ln_tuning", "ia3", "vera", "dora", "lora_all", "adapter_houlsby", "adapter_pfeiffer", "prefix"]
TASK_ORDER = ["sst2", "mrpc", "rte", "squad"]
PAIR = ("full", "bitfit")     # the scaling study's comparison: Δ = bitfit − full
CLEAR = 1.0                   # points a run must beat the majority-class baseline by to count as having learned
FLAG = "⚠"


def order(names, ranking=ORDER) -> list[str]:
    return sorted(set(names), key=lambda n: (ranking.index(n) if n in ranking else len(ranking), n))


def collect(dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Every readable result.json under `dirs`; a completed run found twice (same identity) counts once, the latest."""
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
        if r["status"] == "completed":
            key = r["identity"]
            if key not in latest or r.get("finished_at", "") > latest[key].get("finished_at", ""):
                latest[key] = r
    return list(latest.values()) + [r for r in records if r["status"] != "completed"]


def size_of(rec: dict[str, Any]) -> int:
    return rec["run"]["train_size"] or rec.get("train_examples") or 0


def learned_nothing(rec: dict[str, Any]) -> bool:
    b = baseline(rec)
    return b is not None and rec["metrics"][rec["primary_metric"]] < b + CLEAR


def cell(values: list[float], flagged: bool = False) -> str:
    if not values:
        return "—"
    m, s, n = mean_std(values)
    text = f"{m:.2f}" if s is None else f"{m:.2f} ± {s:.2f} (n={n})"
    return text + (f" {FLAG}" if flagged else "")


def pct(values) -> str:
    vals = sorted(set(values))
    return "—" if not vals else " / ".join(f"{v:.3g}%" for v in vals)


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": str(v)})
    return out


def mixed_keys(recs: list[dict]) -> list[str]:
    """Config keys (besides seed and output paths) that differ between runs pooled into one table cell."""
    flats = [_flat({k: v for k, v in r["config"].items() if k not in NOT_IDENTITY + ("seed",)}) for r in recs]
    keys = set().union(*flats)
    return sorted(k for k in keys if k != "task.data_dir" and len({f.get(k) for f in flats}) > 1)


def methods_section(recs: list[dict]) -> list[str]:
    rows = defaultdict(list)
    for r in recs:
        rows[(r["run"]["model"], r["run"]["method"], r["trainable_params"], r["total_params"])].append(r)
    lines = ["## Methods", "", "| model | method | trainable params | % of total | what trains | tasks |",
             "|---|---|---:|---:|---|---|"]
    rank = lambda m: ORDER.index(m) if m in ORDER else len(ORDER)
    for (model, method, trainable, total), rs in sorted(rows.items(), key=lambda kv: (kv[0][0], rank(kv[0][1]), kv[0])):
        tasks = ", ".join(order({x["run"]["task"] for x in rs}, TASK_ORDER))
        lines.append(f"| {model} | {method} | {trainable:,} | {100 * trainable / total:.3g}% | "
                     f"{rs[0]['config']['method'].get('trains', '')} | {tasks} |")
    return lines + [""]


def glue_section(recs: list[dict], out: Path, tag: str) -> list[str]:
    by = defaultdict(lambda: defaultdict(list))
    for r in recs:
        by[r["run"]["method"]][r["run"]["task"]].append(r)
    methods = order(by)
    tasks = order({t for m in by.values() for t in m}, TASK_ORDER)
    metric = {t: next(r["primary_metric"] for m in by.values() for r in m.get(t, [])) for t in tasks}
    cols = tasks + ["avg"]
    means: dict[str, dict[str, float]] = defaultdict(dict)
    texts: dict[str, dict[str, str]] = defaultdict(dict)
    notes = []
    for m in methods:
        for t in tasks:
            rs = by[m].get(t, [])
            vals = [r["metrics"][metric[t]] for r in rs]
            texts[m][t] = cell(vals, any(learned_nothing(r) for r in rs))
            if vals:
                means[m][t] = sum(vals) / len(vals)
            if len(rs) > 1 and (keys := mixed_keys(rs)):
                notes.append(f"- {t}/{m} pools runs whose configs differ in {', '.join(keys)}")
        if all(t in means[m] for t in tasks):
            means[m]["avg"] = sum(means[m][t] for t in tasks) / len(tasks)
            per_seed = defaultdict(dict)
            for t in tasks:
                for r in by[m][t]:
                    per_seed[r["run"]["seed"]][t] = r["metrics"][metric[t]]
            full_seeds = [sum(v.values()) / len(tasks) for v in per_seed.values() if len(v) == len(tasks)]
            m_, s_, n_ = mean_std(full_seeds) if full_seeds else (None, None, 0)
            texts[m]["avg"] = f"{means[m]['avg']:.2f}" + (f" ± {s_:.2f} (n={n_})" if s_ is not None else "")
        else:
            texts[m]["avg"] = "—"
    for c in cols:  # best overall in bold, best PEFT (any method but full) in italics
        have = [m for m in methods if c in means[m]]
        for pool, mark in ((have, "**"), ([m for m in have if m != "full"], "_")):
            if pool:
                best = max(pool, key=lambda m: means[m][c])
                texts[best][c] = f"{mark}{texts[best][c]}{mark}"
    lines = ["| method | " + " | ".join(f"{t} ({metric[t]})" for t in tasks) + " | avg | trainable % |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for m in methods:
        trainable = pct(r["trainable_percent"] for t in tasks for r in by[m].get(t, []))
        lines.append(f"| {m} | " + " | ".join(texts[m][c] for c in cols) + f" | {trainable} |")
    lines += ["", f"Each cell: the task's primary metric in %, mean ± sample std over seeds (n runs) when there are "
              f"several. **Bold**: best overall; _italics_: best PEFT method (not full); {FLAG}: a run in the cell did "
              f"not beat the majority-class baseline by {CLEAR:g} point (see *Learned nothing*)."]
    lines += ["", *notes] if notes else []
    figures.parameter_efficiency(by, methods, tasks, metric, means, out / f"parameter_efficiency{tag}.png")
    figures.part1_results(by, methods, tasks, metric, out / f"part1_results{tag}.png")
    figures.flops_comparison(by, methods, tasks, out / f"flops_comparison{tag}.png")
    lines += ["", f"![parameter efficiency](parameter_efficiency{tag}.png)", "",
              f"![GLUE results](part1_results{tag}.png)", ""]
    lines += ["### Costs", "", "| method | task | peak memory (MiB) | grads + optimizer (MiB) | train FLOPs | "
              "train time (s) | delta on disk (KiB) |", "|---|---|---:|---:|---:|---:|---:|"]
    for m in methods:
        for t in tasks:
            rs = by[m].get(t, [])
            if rs:
                avg = lambda k: (sum(r[k] for r in rs if k in r) / n) if (n := sum(k in r for r in rs)) else math.nan
                mark = f" {FLAG}" if any(learned_nothing(r) for r in rs) else ""
                lines.append(f"| {m} | {t}{mark} | {avg('peak_memory_bytes') / 2**20:,.0f} | "
                             f"{(avg('memory_gradients_bytes') + avg('memory_optimizer_bytes')) / 2**20:,.1f} | "
                             f"{avg('train_flops'):.3g} | {avg('train_time_s'):,.1f} | {avg('delta_bytes') / 1024:,.0f} |")
    devices = sorted({r.get("device", "?") for m in by.values() for rs in m.values() for r in rs})
    lines += ["", f"Means over seeds. Device: {', '.join(devices)} (on CPU, peak memory is the process's peak resident "
              "set while training). FLOPs: forward + backward, counted on the first step, times the tokens seen.",
              "", f"![costs](flops_comparison{tag}.png)", ""]
    return lines


def scaling_section(recs: list[dict], out: Path, tag: str) -> list[str]:
    by = defaultdict(lambda: defaultdict(list))
    for r in recs:
        by[r["run"]["method"]][size_of(r)].append(r)
    methods = order(by)
    sizes = sorted({s for m in by.values() for s in m})
    full_pool = {s for m in by.values() for s, rs in m.items() if any(r["run"]["train_size"] is None for r in rs)}
    label = {s: (f"all ({s:,})" if s in full_pool else f"{s:,}") for s in sizes}
    val = lambda m, s, k: [r["metrics"][k] for r in by[m].get(s, [])]
    a, b = PAIR
    lines = ["| train size | " + " | ".join(f"{m} F1" for m in methods) + f" | Δ F1 ({b} − {a}) | winner | "
             + " | ".join(f"{m} EM" for m in methods) + " |", "|---:|" + "---:|" * (2 * len(methods) + 2)]
    compared = []
    for s in sizes:
        row = [cell(val(m, s, "f1"), any(learned_nothing(r) for r in by[m].get(s, []))) for m in methods]
        if val(a, s, "f1") and val(b, s, "f1"):
            c = compare(val(a, s, "f1"), val(b, s, "f1"))
            winner = {"tie": "tie", "base": a, "other": b}[c["winner"]]
            band = f" (±{c['half']:.2f})" if c["half"] is not None else ""
            row += [f"{c['delta']:+.2f}{band}", f"**{winner}**" if winner != "tie" else "tie"]
            compared.append((s, c["delta"], winner))
        else:
            row += ["—", "—"]
        lines.append(f"| {label[s]} | " + " | ".join(row + [cell(val(m, s, "exact_match")) for m in methods]) + " |")
    notes = [f"- {m} at {label[s]} pools runs whose configs differ in {', '.join(k)}" for m in methods for s in sizes
             if len(by[m].get(s, [])) > 1 and (k := mixed_keys(by[m][s]))]
    lines += ["", f"F1 and exact match (EM) in %, mean ± sample std over seeds. Tie: |Δ| within the Welch 95% interval "
              f"of Δ (shown as ±) with ≥ 2 seeds per method, or |Δ| < {TIE_ONE_SEED:g} F1 with one seed. {FLAG}: a run "
              f"not {CLEAR:g} F1 above the first-sentence baseline. Figure bands: ±1 std over seeds.", "", *notes]
    if compared:
        xs = [s for s, _, _ in compared]
        cross = crossings(xs, [d for _, d, _ in compared])
        lines += ["### Crossover", ""]
        if not cross:
            lead = a if compared[0][1] < 0 else b
            lines.append(f"No crossover in range ({label[xs[0]]}–{label[xs[-1]]}): {lead} has the higher F1 "
                         "at every measured size.")
        else:
            text = f"The {a} and {b} F1 curves cross at **{cross[0]:,.0f}** training examples"
            boot = bootstrap_crossing(xs, [val(a, s, "f1") for s in xs], [val(b, s, "f1") for s in xs])
            if boot:
                text += (f" (95% bootstrap interval over seeds {boot[0]:,.0f}–{boot[1]:,.0f}; {100 * boot[2]:.0f}% of "
                         "resamples cross)" if boot[2] else " (no resample crosses)")
            text += " — linear interpolation of Δ F1 on log(size) between the two measured sizes around the sign change."
            if len(cross) > 1:
                text += " They cross again at " + ", ".join(f"{c:,.0f}" for c in cross[1:]) + "."
            lines.append(text)
        lines += ["", *regimes(compared, label), ""]
    figures.part2_results(by, methods, sizes, cross if compared else [], out / f"part2_results{tag}.png")
    return lines + [f"![SQuAD scaling](part2_results{tag}.png)", ""]


def regimes(compared: list[tuple[int, float, str]], label: dict[int, str]) -> list[str]:
    """Consecutive sizes with the same winner become one regime; the table and the rule are written from them."""
    groups: list[list[tuple[int, float, str]]] = []
    for item in compared:
        if groups and groups[-1][-1][2] == item[2]:
            groups[-1].append(item)
        else:
            groups.append([item])
    lines = ["### Data regimes", "", "| data size | winner | Δ F1 range | sizes measured |", "|---|---|---:|---|"]
    rule = ["### Decision rule (from the measured winners)", ""]
    for i, g in enumerate(groups):
        lo, hi = g[0][0], g[-1][0]
        if len(groups) == 1:
            span = f"{label[lo]}–{label[hi]}"
        elif i == 0:
            span = f"≤ {hi:,}"
        elif i == len(groups) - 1:
            span = f"≥ {lo:,}"
        else:
            span = f"{lo:,}–{hi:,}" if lo != hi else f"{lo:,}"
        ds = [d for _, d, _ in g]
        rng = f"{min(ds):+.1f}" if len(ds) == 1 else f"{min(ds):+.1f} to {max(ds):+.1f}"
        lines.append(f"| {span} | {g[0][2]} | {rng} | {', '.join(label[s] for s, _, _ in g)} |")
        if g[0][2] == "tie":
            rule.append(f"- {span} examples: no clear winner (Δ F1 {rng}, within noise): try both.")
        else:
            loser = PAIR[0] if g[0][2] == PAIR[1] else PAIR[1]
            by = sorted(abs(d) for d in ds)
            margin = f"{by[0]:.1f}" if len(by) == 1 else f"{by[0]:.1f} to {by[-1]:.1f}"
            rule.append(f"- {span} examples: use **{g[0][2]}**; it beat {loser} at every measured size here, "
                        f"by {margin} F1.")
    return lines + [""] + rule


def write_report(dirs: list[str | Path], out: str | Path) -> Path:
    """Read the records under `dirs`, write OUT/report.md and its figures; returns the report's path."""
    records = collect(dirs)
    if not records:
        raise UserError(f"report: no result.json under {', '.join(map(str, dirs))}; run a study or `peftbench train` first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = [r for r in records if r["status"] == "completed"]
    other = [r for r in records if r["status"] != "completed"]
    lines = ["# peftbench report", "", f"{len(done)} completed runs, {len(other)} failed or unfinished, read from "
             + ", ".join(f"`{d}`" for d in dirs) + ".", ""]
    if done:
        lines += methods_section(done)
    groups = defaultdict(list)
    for r in done:
        kind = "glue" if r["config"]["task"].get("kind") == "glue" else "scaling" if r["run"]["task"] == "squad" else None
        if kind:
            size = r["run"]["train_size"] if kind == "glue" else None
            groups[(kind, r["run"]["model"], size)].append(r)
    for kind in ("glue", "scaling"):
        keys = sorted((k for k in groups if k[0] == kind), key=lambda k: (k[1], k[2] or 0))
        for key in keys:
            _, model, size = key
            tag = "" if len(keys) == 1 else f"_{model}" + (f"_n{size}" if size else "")
            title = "GLUE" if kind == "glue" else "SQuAD low-data scaling"
            lines += [f"## {title} — {model}" + (f", train_size {size:,}" if size else ""), ""]
            section = glue_section if kind == "glue" else scaling_section
            lines += section(groups[key], out, tag)
    flagged = [r for r in done if learned_nothing(r)]
    lines += ["## Learned nothing", "", f"Runs whose primary metric is not at least {CLEAR:g} point above the best "
              "constant prediction on their eval set (majority-class accuracy; F1 of predicting the positive class "
              "everywhere; SQuAD: the context's first sentence as the answer).", ""]
    lines += [f"- `{r['_path']}`: {r['primary_metric']} {r['metrics'][r['primary_metric']]:.2f} vs baseline "
              f"{baseline(r):.2f}" for r in flagged] or ["None."]
    lines += ["", "## Failed and unfinished runs", ""]
    lines += [f"- `{r['_path']}`: {r['status']}" + (f" — {r['error']}" if r.get("error") else "") for r in other] or ["None."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    explorer.write_explorer(done, out / "explorer.html")  # the same runs, interactive (explorer.py)
    return path
