"""The report's holdout-protocol sections: which runs a table may use, the caption naming the protocol, Expected
Validation Performance, the seeds each comparison took and why it stopped, and the optimism of picking on dev.

Under `select=holdout` a study has two phases (record fields in record.py): selection runs score every configuration
on a holdout carved out of train (`eval_split: "holdout"`), and final runs train the picked configuration again and
score it on dev. Only final runs enter a dev table; selection runs feed Expected Validation Performance. Records
without the fields (older studies, `select=dev`) are dev-scored runs, read as before.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from . import figures
from .cells import TASK_ORDER, best_rate, by_rate, by_seed, order, rate
from ..stats import STOP_REASONS, ci95, decide, evp, mean_std

KS = (1, 5)  # the EVP table's budgets, beside k = N


def proto(rec: dict) -> dict:
    return rec.get("protocol") or {}


def is_selection(rec: dict) -> bool:
    """A selection-phase run: scored on the holdout, never on the reported dev set."""
    return rec.get("eval_split") == "holdout" or proto(rec).get("phase") == "select"


def select_of(rec: dict) -> str:
    return proto(rec).get("select") or "dev"


def _spread(values) -> str:
    vals = sorted({v for v in values if v is not None}, key=str)
    return " / ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in vals) or "?"


def caption(recs: list[dict]) -> str:
    """One line naming how the configurations of these (dev-scored) runs were picked."""
    if any(select_of(r) == "holdout" for r in recs):
        hold = [r.get("holdout") or proto(r).get("picked_holdout") or {} for r in recs]  # final runs: the select run's
        unit = "questions" if any(r["run"]["task"] == "squad" for r in recs) else "rows"
        budgets = defaultdict(set)
        for r in recs:
            p = proto(r)
            budgets[(p.get("budget"), p.get("sampler"))].add(r["run"]["method"])
        what = "; ".join(f"{b} {'grid rates' if s == 'grid' else f'{s} trials'} per method"
                         + ("" if len(budgets) == 1 else f" ({', '.join(order(ms))})")
                         for (b, s), ms in budgets.items())
        text = (f"Protocol: configs picked on a holdout of {_spread(h.get('size') for h in hold)} train {unit} "
                f"(data_seed {_spread(r.get('data_seed') for r in recs)}), scored on dev; budget: {what}")
    else:
        tuned = len({(r["run"]["method"], r["run"]["task"], r.get("lr")) for r in recs}) > \
            len({(r["run"]["method"], r["run"]["task"]) for r in recs})
        text = ("Protocol: rates picked on the reported dev set: optimistic (`select=dev`)" if tuned else
                "Protocol: one configuration per method, set in its config (no selection), scored on dev")
    auto = [proto(r) for r in recs if proto(r).get("seeds") == "auto"]
    if auto:
        a = auto[0]
        text += (f"; seeds: auto (min {a.get('min_seeds')}, max {a.get('max_seeds')}; verdicts at a margin of "
                 f"{a.get('margin', 1.0):g} points, alpha {a.get('alpha', 0.05):g})")
    rows = {proto(r).get("final_rows") for r in recs if select_of(r) == "holdout"}
    if rows == {"selection"}:
        text += "; final runs train on the selection's rows"
    return f"_{text}._"


def _key(r: dict) -> tuple:
    return r["run"]["model"], r["run"]["task"], r["run"]["train_size"] or 0


def _label(key: tuple, keys, data_seed: bool = False) -> str:
    models = {k[0] for k in keys}
    model, task, size = key[:3]
    return task + (f", {size:,} rows" if size else "") + (f", data_seed {key[3]}" if data_seed else "") + (
        f" ({model})" if len(models) > 1 else "")


def _sorted(keys) -> list[tuple]:
    rank = {t: i for i, t in enumerate(TASK_ORDER)}
    return sorted(keys, key=lambda k: (k[0], rank.get(k[1], len(rank)), k[1], k[2], *(-1 if x is None else x
                                                                                    for x in k[3:])))


def config_order(name: str | None, rec: dict) -> tuple:
    """Trial order: t0, t1, ... by number; grid configs (lr<rate>) by rate."""
    if name and name[0] == "t" and name[1:].isdigit():
        return 0, int(name[1:])
    return 1, rec.get("lr") or 0.0, str(name)


def holdout_curves(selection: list[dict]) -> dict[tuple, dict[str, list[list[float]]]]:
    """(model, task, size) -> method -> per data seed, the holdout score of each configuration (mean over its seeds),
    in trial order. A diverged trial counts at its recorded score: the trivial prediction's."""
    runs = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for r in selection:
        name = proto(r).get("config") or f"lr{rate(r.get('lr'))}"
        runs[_key(r)][r["run"]["method"]][r.get("data_seed")][name].append(r)
    out: dict = {}
    for key, methods in runs.items():
        out[key] = {}
        for m in order(methods):
            out[key][m] = []
            for _, configs in sorted(methods[m].items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
                ordered = sorted(configs.items(), key=lambda kv: config_order(kv[0], kv[1][0]))
                out[key][m].append([mean_std([r["metrics"][r["primary_metric"]] for r in rs])[0] for _, rs in ordered])
    return out


def evp_over(per_data_seed: list[list[float]], k: int) -> tuple[float, float]:
    """EVP at budget k computed within each data seed (one holdout, one draw of configurations), then averaged."""
    parts = [evp(scores, k) for scores in per_data_seed]
    return sum(a for a, _ in parts) / len(parts), sum(b for _, b in parts) / len(parts)


def evp_section(selection: list[dict], out: Path) -> list[str]:
    """Expected best holdout score after k configurations, per task and method: a table at k = 1, 5, N and a figure.
    Drawn only for i.i.d. trials (sampler=random): a grid or TPE's trials are not draws from one distribution."""
    samplers = {proto(r).get("sampler") or "grid" for r in selection}
    if not selection:
        return []
    if samplers != {"random"}:
        return ["## Expected Validation Performance", "",
                f"Not drawn: the selection used the {', '.join(sorted(samplers - {'random'}))} sampler, whose "
                "configurations are not independent draws from one space, which Expected Validation Performance "
                "assumes. A study with `trials=N sampler=random` gets it.", ""]
    curves = holdout_curves(selection)
    metric = {_key(r): r["primary_metric"] for r in selection}
    lines = ["## Expected Validation Performance", "",
             "| task | method | data seeds | N | k=1 | k=5 | k=N |", "|---|---|---:|---:|---:|---:|---:|"]
    for key in _sorted(curves):
        for m, per in curves[key].items():
            n = min(len(s) for s in per)
            per = [s[:n] for s in per]
            cells = [(f"{a:.2f} ± {b:.2f}" if k <= n else "—") for k in KS for a, b in [evp_over(per, k)]]
            lines.append(f"| {_label(key, curves)} ({metric[key]}) | {m} | {len(per)} | {n} | " + " | ".join(cells)
                         + " | {:.2f} ± {:.2f} |".format(*evp_over(per, n)))
    diverged = sum(r["status"] == "diverged" for r in selection)
    lines += ["", "Expected Validation Performance (Dodge et al. 2019, \"Show Your Work\", eq. 1: k draws with "
              "replacement from the N scored configurations): the expected best holdout score, ± its standard "
              "deviation, when k of a method's N configurations (its selection runs, each scored on the holdout carved "
              "out of train) are drawn at random — so two methods are compared at the same budget k. It is computed "
              "within each data seed (one holdout, one draw of configurations) and then averaged over data seeds. "
              f"Every trial counts: a trial that diverged counts at the trivial prediction's score ({diverged} here). "
              "Dev is not used here. k=5 is \"—\" when N < 5.",
              "", "![Expected Validation Performance](evp.png)", ""]
    figures_evp(curves, metric, out / "evp.png")
    return lines


def figures_evp(curves: dict, metric: dict, path: Path) -> None:
    """A panel per task: expected best holdout score ± sd against k = 1..N, a line per method (report colours)."""
    plt = figures.plt
    keys = _sorted(curves)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys) + 1.5, 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for m, per in curves[key].items():
            ks = list(range(1, min(len(s) for s in per) + 1))
            mean, sd = zip(*(evp_over(per, k) for k in ks))
            lo, hi = [a - b for a, b in zip(mean, sd)], [a + b for a, b in zip(mean, sd)]
            ax.plot(ks, mean, marker="o", markersize=3, color=figures.color(m), label=m)
            ax.fill_between(ks, lo, hi, color=figures.color(m), alpha=0.15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # k counts configurations
        ax.set_xlabel("configurations tried (k)")
        ax.set_ylabel(f"expected best holdout {metric[key]} (%)")
        ax.set_title(_label(key, curves))
        ax.grid(True, alpha=0.3)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    fig.suptitle("Expected Validation Performance (band: ±1 sd)")
    figures._save(fig, path)


def seeds_section(reported: list[dict]) -> list[str]:
    """Per task and method, the seeds its comparison with full FT took and why they stopped: `stats.decide` again, on
    the records, with the looks and rules they record (per task/size/data seed, as the study decided)."""
    from .versus import rules, unit_deltas

    runs = defaultdict(lambda: defaultdict(list))
    for r in reported:  # final runs of a holdout study
        if select_of(r) == "holdout" and proto(r).get("seeds"):
            runs[(*_key(r), r.get("data_seed"))][r["run"]["method"]].append(r)  # rounds run per data seed
    keys = [k for k in _sorted(runs) if "full" in runs[k]]
    several = len({k[:3] for k in keys}) < len(keys)  # data_seeds: a row per data seed
    if not keys:
        return []
    lines = ["## Seeds per comparison", "", "| task | method | seeds | paired with full | verdict | stopped because |",
             "|---|---|---:|---:|---|---|"]
    for key in keys:
        full = runs[key]["full"]
        rule = rules(full)
        lines.append(f"| {_label(key, keys, several)} | full | {len(full)} | — | — | "
                     "the baseline: as many as its longest comparison |")
        metric = full[0]["primary_metric"]
        base = by_seed(full, metric)
        others = [m for m in order(runs[key]) if m != "full"]
        deltas = {m: unit_deltas(base, by_seed(runs[key][m], metric))[0] for m in others}
        if rule["min_seeds"] is None:
            n = max([2] + [len(d) for d in deltas.values()])
            lo = hi = n
        else:
            lo, hi = rule["min_seeds"], rule["max_seeds"]
        decided = decide({m: d for m, d in deltas.items() if d}, rule["margin"], rule["alpha"], lo, hi)
        for m in others:
            d = decided.get(m)
            if d is None:
                why, word = "no seed shared with full", "—"
            elif d["reason"]:
                why, word = STOP_REASONS[d["reason"]] + f" (look at {d['n']} seeds)", d["verdict"]
            else:
                why, word = f"unsettled: the next look needs {d['n']} seeds; a resumed study runs them", "—"
            if rule["min_seeds"] is None:
                why = "a fixed seed list (`seeds=[..]`): " + why
            lines.append(f"| {_label(key, keys, several)} | {m} | {len(runs[key][m])} | {len(deltas[m])} | {word} | "
                         f"{why} |")
    rule = rules([r for k in keys for r in runs[k]["full"]])
    how = (f"`seeds=auto` runs min_seeds ({rule['min_seeds']}) seeds, then one more per round for each comparison "
           f"whose verdict is not settled, up to max_seeds ({rule['max_seeds']}); a settled verdict" if
           rule["min_seeds"] is not None else "A fixed seed list is one look; a verdict")
    lines += ["", f"Final runs only (scored on dev). {how} (better, non-inferior, inferior at a margin of "
              f"{rule['margin']:g} points, alpha {rule['alpha']:g}) is final and its method takes no more seeds. The "
              "reasons are the procedure's own (`stats.decide`), recomputed here from the records.", ""]
    return lines


def _rate(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:.3g}"  # a sampled rate (1.02756e-05) to 3 digits, a grid's as it is


def _same_rate(rates: dict, lr: float | None) -> list[dict] | None:
    return next((rs for r, rs in rates.items() if r is not None and lr is not None
                 and abs(r - lr) <= 1e-9 * abs(lr)), None)


def optimism_rows(reported: list[dict]) -> list[tuple]:
    """Per task and method with a select=dev grid beside the holdout study's final runs: the dev-picked rate (the
    grid's best at its first seed, the pick seed), the holdout-picked rate, and per fresh seed (a later seed both
    configurations ran) dev score at the dev-picked rate minus dev score at the holdout-picked one. Both scores of a
    seed come from the dev grid when it ran the holdout's pick (the same rows), else the second from the final runs."""
    grid, final = defaultdict(list), defaultdict(list)
    for r in reported:
        (final if select_of(r) == "holdout" else grid)[(*_key(r), r["run"]["method"])].append(r)
    rows = []
    for key in _sorted({k[:3] for k in final if k in grid}):
        for m in order(k[3] for k in final if k[:3] == key and k in grid):
            metric = final[(*key, m)][0]["primary_metric"]
            rates = by_rate(grid[(*key, m)])
            pick_seed = min(r["run"]["seed"] for r in grid[(*key, m)])
            at_pick = {lr: rs for lr, rs in rates.items() if any(r["run"]["seed"] == pick_seed for r in rs)}
            dev_lr = best_rate({lr: [r for r in rs if r["run"]["seed"] == pick_seed] for lr, rs in at_pick.items()},
                               metric)
            hold_lr = final[(*key, m)][0].get("lr")
            same = _same_rate(rates, hold_lr)
            hold_runs, source = (same, "dev grid") if same else (final[(*key, m)], "final runs")
            dev_at = {r["run"]["seed"]: r["metrics"][metric] for r in rates[dev_lr]}
            hold_at = {r["run"]["seed"]: r["metrics"][metric] for r in hold_runs}
            fresh = sorted(s for s in set(dev_at) & set(hold_at) if s != pick_seed)
            rows.append((key, m, dev_lr, hold_lr, source, [dev_at[s] - hold_at[s] for s in fresh]))
    return rows


def optimism_section(reported: list[dict]) -> list[str]:
    """Per task and method: dev score at the dev-picked rate minus dev score at the holdout-picked rate, over the same
    fresh seeds, with its 95% interval."""
    rows = optimism_rows(reported)
    if not rows:
        return []
    lines = ["## Optimism of picking on dev", "", "| task | method | dev-picked rate | holdout-picked rate | from | "
             "fresh seeds | optimism [95% interval] |", "|---|---|---:|---:|---|---:|---:|"]
    for key, m, dev_lr, hold_lr, source, deltas in rows:
        if not deltas:
            text = "no fresh seed: give the select=dev study seeds beyond its first"
        else:
            mean, half, n = ci95(deltas)
            text = f"{mean:+.2f}" + (f" [{mean - half:+.2f}, {mean + half:+.2f}]" if half is not None else
                                     " (n=1: no interval)")
        lines.append(f"| {_label(key, [r[0] for r in rows])} | {m} | {_rate(dev_lr)} | {_rate(hold_lr)} | {source} | "
                     f"{len(deltas)} | {text} |")
    lines += ["", "Optimism = the dev score of the configuration the dev set picked (a `select=dev` grid, picked at "
              "its first seed) minus the dev score of the one the holdout picked, both at the same fresh seeds (the "
              "grid's later seeds, which did not pick), paired by seed: the mean and its 95% t-interval. It is what "
              "picking on the reported set adds beyond luck: 0 when both pick the same configuration. Measured at the "
              "pick seed it would also hold the winner's curse (the best of N noisy scores), so that seed is left "
              "out.", ""]
    return lines


def protocol_sections(done: list[dict], out: Path) -> list[str]:
    """EVP from the selection runs; seeds and optimism from the dev-scored ones."""
    reported = [r for r in done if not is_selection(r)]
    return (evp_section([r for r in done if is_selection(r)], out) + seeds_section(reported)
            + optimism_section(reported))
