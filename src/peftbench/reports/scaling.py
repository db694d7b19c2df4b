"""The report's SQuAD scaling section: full FT vs BitFit per training size (tie rule: the 95% interval of Δ covers 0),
the crossover on log(size) with a bootstrap interval over seeds, data regimes and the decision rule they give, and
the schedule the runs trained (read from their result.json, so a reduced one is said in the report itself).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from . import figures
from .cells import CLEAR, FLAG, best_rate, by_rate, by_seed, cell, learned_nothing, mixed_keys, order, rate, size_of
from ..stats import TIE_ONE_SEED, bootstrap_crossing, compare, crossings, paired

PAIR = ("full", "bitfit")     # the scaling study's comparison: Δ = bitfit − full


def scaling_section(recs: list[dict], out: Path, tag: str) -> list[str]:
    every = defaultdict(lambda: defaultdict(list))
    for r in recs:
        every[r["run"]["method"]][size_of(r)].append(r)
    rates = {m: {s: by_rate(rs) for s, rs in v.items()} for m, v in every.items()}
    tuned = any(len(g) > 1 for v in rates.values() for g in v.values())
    by = {m: {s: g[best_rate(g, "f1")] for s, g in v.items()} for m, v in rates.items()}  # each at its best rate
    methods = order(by)
    sizes = sorted({s for m in by.values() for s in m})
    full_pool = {s for m in by.values() for s, rs in m.items() if any(r["run"]["train_size"] is None for r in rs)}
    label = {s: (f"all ({s:,})" if s in full_pool else f"{s:,}") for s in sizes}
    val = lambda m, s, k: [r["metrics"][k] for r in by.get(m, {}).get(s, [])]  # a study half-run: one method
    a, b = PAIR
    lines = ["| train size | " + " | ".join(f"{m} F1" for m in methods) + f" | Δ F1 ({b} − {a}) | winner | "
             + " | ".join(f"{m} EM" for m in methods) + " |", "|---:|" + "---:|" * (2 * len(methods) + 2)]
    compared = []
    for s in sizes:
        row = [cell(val(m, s, "f1"), any(learned_nothing(r) for r in by[m].get(s, []))) for m in methods]
        if val(a, s, "f1") and val(b, s, "f1"):
            p = paired(by_seed(by[a][s], "f1"), by_seed(by[b][s], "f1"))
            if p is not None and p["n"] >= 2:  # the same seeds on both sides: the paired interval
                c = {"delta": p["delta"], "half": p["half"], "winner": {"not distinguishable": "tie", "higher": "other",
                                                                         "lower": "base"}[p["verdict"]]}
            else:
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
    lines += ["", f"F1 and exact match (EM) in %, mean ± sample std over seeds (n runs). Tie (not distinguishable): the "
              f"95% interval of Δ (shown as ±) covers 0 — paired by seed when both methods ran ≥ 2 of the same "
              f"seeds, else Welch's with ≥ 2 seeds per method — or |Δ| < {TIE_ONE_SEED:g} F1 with one seed. {FLAG}: a "
              f"run not {CLEAR:g} F1 above the first-sentence baseline. Figure bands: ±1 std over seeds.", "", *notes]
    if tuned:
        lines += ["Each method and size at its best learning rate: the highest mean F1 over seeds on the eval set "
                  "among the rates with the most runs (a tie goes to the lower rate): "
                  + "; ".join(f"{m} " + ", ".join(f"{label[s]} @ {rate(best_rate(rates[m][s], 'f1'))}"
                                                   for s in sizes if s in rates[m]) for m in methods) + ".", ""]
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
    lines += schedule_lines(by, methods, sizes, label)
    figures.part2_results(by, methods, sizes, cross if compared else [], out / f"part2_results{tag}.png")
    return lines + [f"![SQuAD scaling](part2_results{tag}.png)", ""]


def spread(values) -> str:
    """One value, or the range (numbers) / the set (anything else) that the runs span; "—" when none recorded it."""
    vals = {v for v in values if v is not None}
    if not vals:
        return "—"
    if all(isinstance(v, (int, float)) for v in vals):
        lo, hi = min(vals), max(vals)
        return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
    return " / ".join(sorted(map(str, vals)))


def schedule_lines(by: dict, methods: list[str], sizes: list[int], label: dict[int, str]) -> list[str]:
    """Steps and training windows per size, then the settings the runs used: what a reader needs to compare the
    curve with the reference's (min(15000, max(2000, ceil(n/16 x 5))) steps, 384-token windows, the whole eval set)."""
    runs = [r for m in methods for s in sizes for r in by[m].get(s, [])]
    if not any(r.get("train_steps") for r in runs):
        return []
    lines = ["### Training schedule", "", "| train size | training windows | "
             + " | ".join(f"{m} steps" for m in methods) + " | passes over the windows |",
             "|---:|---:|" + "---:|" * (len(methods) + 1)]
    for s in sizes:
        rs = [r for m in methods for r in by[m].get(s, [])]
        passes = [r["train_steps"] * r["config"]["batch_size"] / r["train_windows"] for r in rs
                  if r.get("train_steps") and r.get("train_windows") and "batch_size" in r["config"]]
        lines.append(f"| {label[s]} | {spread(r.get('train_windows') for r in rs)} | "
                     + " | ".join(spread(r.get("train_steps") for r in by[m].get(s, [])) for m in methods)
                     + f" | {spread(round(p, 1) for p in passes)} |")
    cfg = lambda *keys: spread(_get(r["config"], keys) for r in runs)
    rule = (f"steps = min({cfg('steps', 'cap')}, max({cfg('steps', 'min_steps')}, ceil(windows / "
            f"{cfg('batch_size')} × {cfg('steps', 'epochs_equiv')})))" if cfg("schedule") == "steps"
            else f"{cfg('epochs')} epochs")
    rates = "; ".join(f"{m} " + " / ".join(sorted({rate(r.get("lr")) for s in sizes for r in by[m].get(s, [])}))
                      for m in methods)
    lines += ["", f"Schedule `{cfg('schedule')}`: {rule}, batch {cfg('batch_size')}, warmup {cfg('warmup_ratio')} of the "
              f"steps. Windows of {cfg('task', 'max_length')} tokens (stride {cfg('task', 'doc_stride')}); eval on "
              f"{spread(r.get('eval_examples') for r in runs)} questions; precision {spread(r.get('precision') for r in runs)}; "
              f"learning rate {rates}.", ""]
    return lines


def _get(d: dict, keys: tuple[str, ...]):
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


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
            rule.append(f"- {span} examples: not distinguishable (Δ F1 {rng}, within the tie rule: noise): try both.")
        else:
            loser = PAIR[0] if g[0][2] == PAIR[1] else PAIR[1]
            by = sorted(abs(d) for d in ds)
            margin = f"{by[0]:.1f}" if len(by) == 1 else f"{by[0]:.1f} to {by[-1]:.1f}"
            rule.append(f"- {span} examples: use **{g[0][2]}**; it beat {loser} at every measured size here, "
                        f"by {margin} F1.")
    return lines + [""] + rule
