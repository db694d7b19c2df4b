"""The report's GLUE section: each method at its best rate per task, the whole grid, the reference study's rate beside
the tuned one, every method vs full FT paired by seed with a 95% interval and the decision rule, costs, figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from . import figures
from .baselines import baseline
from .cells import (CLEAR, FLAG, SECONDARY, SHARED, TASK_ORDER, best_rate, by_rate, cell, learned_nothing, mixed_keys,
                    order, pct, rate, seed_rate, shared)
from ..stats import mean_std
from .versus import versus_full


def glue_section(recs: list[dict], out: Path, tag: str) -> list[str]:
    every = defaultdict(lambda: defaultdict(list))
    for r in recs:
        every[r["run"]["method"]][r["run"]["task"]].append(r)
    methods = order(every)
    tasks = order({t for m in every.values() for t in m}, TASK_ORDER)
    metric = {t: next(r["primary_metric"] for m in every.values() for r in m.get(t, [])) for t in tasks}
    grid = {m: {t: by_rate(every[m][t]) for t in every[m]} for m in methods}
    tuned = any(len(rates) > 1 for g in grid.values() for rates in g.values())
    best = {m: {t: best_rate(rates, metric[t]) for t, rates in grid[m].items()} for m in methods}
    by = {m: {t: grid[m][t][best[m][t]] for t in grid[m]} for m in methods}  # each method at its best rate
    cols = tasks + ["avg"]
    means: dict[str, dict[str, float]] = defaultdict(dict)
    texts: dict[str, dict[str, str]] = defaultdict(dict)
    notes = []
    for m in methods:
        for t in tasks:
            rs = by[m].get(t, [])
            vals = [r["metrics"][metric[t]] for r in rs]
            texts[m][t] = cell(vals, any(learned_nothing(r) for r in rs))
            if diverged := sum(r["status"] == "diverged" for r in rs):  # scored as the trivial prediction
                texts[m][t] += f" ({diverged} diverged)"
            if tuned and vals and best[m][t] is not None:
                texts[m][t] += f" @ {rate(best[m][t])}"
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
            texts[m]["avg"] = f"{means[m]['avg']:.2f}" + (f" ± {s_:.2f} (n={n_})" if s_ is not None else f" (n={n_})")
        else:
            texts[m]["avg"] = "—"
    for c in cols:  # best overall in bold, best PEFT (any method but full) in italics
        have = [m for m in methods if c in means[m]]
        for pool, mark in ((have, "**"), ([m for m in have if m != "full"], "_")):
            if pool:
                best_m = max(pool, key=lambda m: means[m][c])
                texts[best_m][c] = f"{mark}{texts[best_m][c]}{mark}"
    lines = ["| method | " + " | ".join(f"{t} ({metric[t]})" for t in tasks) + " | avg | trainable % |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for m in methods:
        trainable = pct(r["trainable_percent"] for t in tasks for r in by[m].get(t, []))
        lines.append(f"| {m} | " + " | ".join(texts[m][c] for c in cols) + f" | {trainable} |")
    lines += ["", f"Each cell: the task's primary metric on the dev set in %, mean ± sample std over seeds (n runs). "
              f"**Bold**: best overall; _italics_: best PEFT method (not full); {FLAG}: a run in the cell did "
              f"not beat the majority-class baseline by {CLEAR:g} point (see *Learned nothing*)"
              + ("; for MCC, Pearson and Spearman the baseline, a constant prediction, scores 0" if
                 any(metric[t] in ("mcc", "pearson", "spearman") for t in tasks) else "") + "."]
    if tuned:
        lines[-1] += (" `@ rate`: the learning rate picked for that method and task — the rate with the highest mean "
                      "dev score over seeds among the rates with the most runs (a tie goes to the lower rate). GLUE "
                      "reports dev, and the same dev set picks the rate, so tuned numbers lean optimistic; "
                      "the whole grid and the reference study's rate are below.")
    lines += ["", *notes] if notes else []
    lines.append("")
    lines += secondary_table(by, methods, tasks, tuned)
    if tuned:
        lines += grid_tables(grid, best, methods, tasks, metric)
    lines += versus_full(by, methods, tasks, metric, tuned)
    baselines = {t: next((b for m in methods for r in by[m].get(t, []) if (b := baseline(r)) is not None), None)
                 for t in tasks}
    figures.parameter_efficiency(by, methods, tasks, metric, means, out / f"parameter_efficiency{tag}.png")
    figures.part1_results(by, methods, tasks, metric, out / f"part1_results{tag}.png", baselines)
    figures.flops_comparison(by, methods, tasks, out / f"flops_comparison{tag}.png")
    lines += ["", f"![parameter efficiency](parameter_efficiency{tag}.png)", "",
              f"![GLUE results](part1_results{tag}.png)", ""]
    lines += ["### Costs", "", "| method | task | peak memory (MiB) | vs full | grads + optimizer (MiB) | train FLOPs | "
              "step (ms) | vs full | train time (s) | delta on disk (KiB) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    avg = lambda rs, k: (sum(r[k] for r in rs if k in r) / n) if (n := sum(k in r for r in rs)) else math.nan  # noqa: E731
    step = lambda rs: 1000 * avg(rs, "train_time_s") / (avg(rs, "train_steps") or math.nan)  # noqa: E731
    ratio = lambda x, y: f"{x / y:.2f}x" if x == x and y == y and y else "—"  # noqa: E731 (x == x: not NaN)
    for m in methods:
        for t in tasks:
            rs, full = by[m].get(t, []), by.get("full", {}).get(t, [])
            if rs:
                ms, peak = step(rs), avg(rs, "peak_memory_bytes")
                mark = f" {FLAG}" if any(learned_nothing(r) for r in rs) else ""
                own = f" {SHARED}" if any(map(shared, rs)) else ""  # a time that is not a solo speed
                vs = f" {SHARED}" if any(map(shared, rs + full)) else ""
                lines.append(f"| {m} | {t}{mark} | {peak / 2**20:,.0f} | {ratio(peak, avg(full, 'peak_memory_bytes'))} | "
                             f"{(avg(rs, 'memory_gradients_bytes') + avg(rs, 'memory_optimizer_bytes')) / 2**20:,.1f} | "
                             f"{avg(rs, 'train_flops'):.3g} | {f'{ms:,.0f}' if ms == ms else '—'}{own} | "
                             f"{ratio(ms, step(full))}{vs} | {avg(rs, 'train_time_s'):,.1f}{own} | "
                             f"{avg(rs, 'delta_bytes') / 1024:,.0f} |")
    every = [r for m in by.values() for rs in m.values() for r in rs]
    devices = sorted({r.get("device", "?") for r in every})
    lines += ["", f"Means over seeds{' at each best rate' if tuned else ''}. Device: {', '.join(devices)} (on CPU, peak memory is the process's peak resident "
              "set while training). FLOPs: forward + backward, counted on the first step, times the tokens seen. "
              "Step: train time / optimizer steps; \"vs full\": the ratio to full FT on the same task."
              + (f" {SHARED}: a run in the cell (or in full's, for a ratio) shared its GPU with other runs of the "
                 "study (parallel=N over fewer GPUs): its times are not a solo speed." if any(map(shared, every)) else ""),
              "", f"![costs](flops_comparison{tag}.png)", ""]
    return lines + flops_why(by, methods, tasks)


def flops_why(by, methods, tasks) -> list[str]:
    """Why each method's FLOPs per input token are what they are, from the count worked out from the model's shapes
    at training time (cost.expected_step_flops, checked against the measured count): the tokens each example holds
    in the encoder, and how much of the backward pass runs when weights are frozen."""
    lines = []
    for t in tasks:
        full = next((r for r in by.get("full", {}).get(t, []) if r.get("train_flops_per_token")), None)
        for m in methods:
            r = next((r for r in by[m].get(t, []) if r.get("train_flops_expected") and r.get("train_flops_per_token")),
                     None)
            if r is None:
                continue
            e = r["train_flops_expected"]
            parts = [f"{r['train_flops_per_token'] / 1e6:,.0f}M FLOPs per input token"
                     + (f", {r['train_flops_per_token'] / full['train_flops_per_token']:.2f}x full's" if full else "")]
            if e["tokens_per_example"] != e["input_tokens_per_example"]:
                parts.append(f"{e['tokens_per_example'] - e['input_tokens_per_example']} virtual tokens make each "
                             f"example {e['tokens_per_example']} tokens in the encoder where its input has "
                             f"{e['input_tokens_per_example']} (padded; {e['tokens_per_example'] / e['input_tokens_per_example']:.1f}x "
                             "the tokens, and attention grows with their square)")
            parts.append(f"backward {e['backward'] / e['forward']:.2f}x the forward "
                         + ("(input and weight gradients everywhere)" if e["backward"] >= 1.9 * e["forward"] else
                            "(frozen weights: input gradients only, and none below the first trained module)"))
            parts.append(f"worked out from the shapes: {e['total']:.3g} per step, measured {r['train_flops_per_step']:.3g}"
                         + (f" (the products of {', '.join(e['not_worked_out'])}'s own layers are not worked out: "
                            "the shapes' count is the base's alone)" if e.get("not_worked_out") else ""))
            lines.append(f"- **{m}** on {t}: " + "; ".join(parts) + ".")
    if not lines:
        return []
    return ["#### Why the FLOPs differ", "", "Counted on the first step (its padded batch), per input token. A "
            "step's matmuls: forward, then the input gradients (as costly as the forward) and the weight gradients "
            "(as costly again) of the modules that train.", "", *lines, ""]


def secondary_table(by, methods, tasks, tuned: bool) -> list[str]:
    """The reference study's secondary metric (MRPC accuracy), from the runs of the table above, flagged against
    their own trivial baseline: F1's baseline (predict 1 everywhere) is high, so a run can trail it and still beat
    the majority class's accuracy."""
    have = {t: k for t in tasks
            if (k := SECONDARY.get(t)) and any(k in r["metrics"] for m in methods for r in by[m].get(t, []))}
    if not have:
        return []
    lines = ["### Secondary metric", "", "| method | " + " | ".join(f"{t} ({k})" for t, k in have.items()) + " |",
             "|---|" + "---:|" * len(have)]
    for m in methods:
        runs = {t: [r for r in by[m].get(t, []) if k in r["metrics"]] for t, k in have.items()}
        lines.append(f"| {m} | " + " | ".join(cell([r["metrics"][k] for r in runs[t]],
                                                   any(learned_nothing(r, k) for r in runs[t]))
                                              for t, k in have.items()) + " |")
    base = []  # each task's majority-class score in its secondary metric, from the first run whose dev set is known
    for t, k in have.items():
        known = (b for m in methods for r in by[m].get(t, []) if (b := baseline(r, k)) is not None)
        if (b := next(known, None)) is not None:
            base.append(f"{t} {k} {b:.2f}")
    lines += ["", "The same runs as the table above" + (" (at the rate the primary metric picked)" if tuned else "")
              + f", scored in the task's secondary metric (the reference study's metrics table). {FLAG}: a run not {CLEAR:g} "
              "point above the majority class in this metric" + (f" ({', '.join(base)})" if base else "") + ".", ""]
    return lines


def grid_tables(grid, best, methods, tasks, metric) -> list[str]:
    """The whole learning-rate grid (a row per method and rate), then the reference rate beside the tuned one."""
    lines = ["### Learning-rate grid", "", "| method | lr | " + " | ".join(f"{t} ({metric[t]})" for t in tasks) + " |",
             "|---|---:|" + "---:|" * len(tasks)]
    for m in methods:
        own = seed_rate([r for rates in grid[m].values() for rs in rates.values() for r in rs])
        for lr in sorted({lr for rates in grid[m].values() for lr in rates}, key=lambda x: x or 0.0):
            cells = []
            for t in tasks:
                rs = grid[m].get(t, {}).get(lr, [])
                text = cell([r["metrics"][metric[t]] for r in rs], any(learned_nothing(r) for r in rs))
                cells.append(f"**{text}**" if rs and best[m][t] == lr else text)
            mark = " (ref)" if own is not None and lr is not None and math.isclose(lr, own) else ""
            lines.append(f"| {m} | {rate(lr)}{mark} | " + " | ".join(cells) + " |")
    lines += ["", "**Bold**: the rate picked for that method and task. (ref): the method's own rate, the reference "
              "study's.", "", "### Tuned vs the reference study's rate", "",
              "| method | task | reference rate | at the reference rate | best rate | at the best rate |",
              "|---|---|---:|---:|---:|---:|"]
    for m in methods:
        for t in tasks:
            rates = grid[m].get(t)
            if not rates:
                continue
            own = seed_rate([r for rs in rates.values() for r in rs])
            at_own = next((rs for lr, rs in rates.items() if lr is not None and own is not None
                           and math.isclose(lr, own)), None)
            own_text = cell([r["metrics"][metric[t]] for r in at_own], any(map(learned_nothing, at_own))) \
                if at_own else "not run"
            rs = rates[best[m][t]]
            lines.append(f"| {m} | {t} | {rate(own)} | {own_text} | {rate(best[m][t])} | "
                         f"{cell([r['metrics'][metric[t]] for r in rs], any(map(learned_nothing, rs)))} |")
    return lines + [""]
