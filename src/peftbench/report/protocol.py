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
from ..stats import STOP_REASONS, evp, mean_std, seed_decision

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
        text += (f"; seeds: auto (min {a.get('min_seeds')}, max {a.get('max_seeds')}, ci_target "
                 f"{a.get('ci_target')} points)")
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


def holdout_curves(selection: list[dict]) -> dict[tuple, dict[str, list[float]]]:
    """(model, task, size) -> method -> holdout score of each configuration (mean over its seeds), in trial order."""
    runs = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in selection:
        runs[_key(r)][r["run"]["method"]][proto(r).get("config") or f"lr{rate(r.get('lr'))}"].append(r)
    out: dict = {}
    for key, methods in runs.items():
        out[key] = {}
        for m in order(methods):
            configs = sorted(methods[m].items(), key=lambda kv: config_order(kv[0], kv[1][0]))
            out[key][m] = [mean_std([r["metrics"][r["primary_metric"]] for r in rs])[0] for _, rs in configs]
    return out


def evp_section(selection: list[dict], out: Path) -> list[str]:
    """Expected best holdout score after k configurations, per task and method: a table at k = 1, 5, N and a figure."""
    curves = holdout_curves(selection)
    if not curves:
        return []
    metric = {_key(r): r["primary_metric"] for r in selection}
    lines = ["## Expected Validation Performance", "",
             "| task | method | N | k=1 | k=5 | k=N |", "|---|---|---:|---:|---:|---:|"]
    for key in _sorted(curves):
        for m, scores in curves[key].items():
            n = len(scores)
            cells = [(f"{a:.2f} ± {b:.2f}" if k <= n else "—") for k in KS for a, b in [evp(scores, k)]]
            lines.append(f"| {_label(key, curves)} ({metric[key]}) | {m} | {n} | " + " | ".join(cells)
                         + " | {:.2f} ± {:.2f} |".format(*evp(scores, n)))
    lines += ["", "Expected Validation Performance (Dodge et al. 2019, \"Show Your Work\"): the expected best "
              "holdout score, ± its standard deviation, when k of a method's N configurations (its selection runs, "
              "each scored on the holdout carved out of train, mean over seeds) are drawn at random — so two "
              "methods are compared at the same budget k. Dev is not used here. k=5 is \"—\" when N < 5.",
              "", "![Expected Validation Performance](evp.png)", ""]
    figures_evp(curves, metric, out / "evp.png")
    return lines


def figures_evp(curves: dict, metric: dict, path: Path) -> None:
    """A panel per task: expected best holdout score ± sd against k = 1..N, a line per method (report colours)."""
    plt = figures.plt
    keys = _sorted(curves)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys) + 1.5, 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for m, scores in curves[key].items():
            ks = list(range(1, len(scores) + 1))
            mean, sd = zip(*(evp(scores, k) for k in ks))
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
    """Per task and method, the seeds its comparison with full FT took and why they stopped (seed_decision again)."""
    runs = defaultdict(lambda: defaultdict(list))
    for r in reported:  # final runs of a holdout study; under select=dev, the runs of an auto-seeded one
        if select_of(r) == "holdout" and proto(r).get("seeds") or proto(r).get("seeds") == "auto":
            runs[(*_key(r), r.get("data_seed"))][r["run"]["method"]].append(r)  # rounds run per data seed
    keys = [k for k in _sorted(runs) if "full" in runs[k]]
    several = len({k[:3] for k in keys}) < len(keys)  # data_seeds: a row per data seed
    if not keys:
        return []
    lines = ["## Seeds per comparison", "", "| task | method | seeds | paired with full | stopped because |",
             "|---|---|---:|---:|---|"]
    for key in keys:
        full = runs[key]["full"]
        lines.append(f"| {_label(key, keys, several)} | full | {len(full)} | — | "
                     "the baseline: as many as its longest comparison |")
        for m in order(runs[key]):
            if m == "full":
                continue
            rs, metric = runs[key][m], full[0]["primary_metric"]
            base, other = by_seed(full, metric), by_seed(rs, metric)
            deltas = [other[k] - base[k] for k in sorted(set(base) & set(other))]  # seed order
            p = proto(rs[0])
            if p.get("seeds") != "auto":
                why = "a fixed seed list (`seeds=[..]`)"
            else:
                reason = seed_decision(deltas, p["min_seeds"], p["max_seeds"], p["ci_target"])
                why = STOP_REASONS[reason] if reason else "no rule met yet: a resumed study adds another round"
            lines.append(f"| {_label(key, keys, several)} | {m} | {len(rs)} | {len(deltas)} | {why} |")
    a = next(proto(r) for k in keys for rs in runs[k].values() for r in rs)
    lines += ["", f"Final runs only (scored on dev). `seeds=auto` adds a round of seeds to a method until, from "
              f"min_seeds ({a.get('min_seeds')}), its paired 95% interval against full FT excludes 0, or the "
              f"interval's half-width is at most ci_target ({a.get('ci_target')} points), or max_seeds "
              f"({a.get('max_seeds')}) is reached; the reason is recomputed here from the records.", ""]
    return lines


def _rate(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:.3g}"  # a sampled rate (1.02756e-05) to 3 digits, a grid's as it is


def optimism_section(reported: list[dict]) -> list[str]:
    """Per task and method: dev score at the dev-picked rate minus dev score at the holdout-picked rate."""
    grid, final = defaultdict(list), defaultdict(list)
    for r in reported:
        key = (*_key(r), r["run"]["method"])
        (final if select_of(r) == "holdout" else grid)[key].append(r)
    rows = []
    for key in _sorted({k[:3] for k in final if k in grid}):
        for m in order(k[3] for k in final if k[:3] == key and k in grid):
            metric = final[(*key, m)][0]["primary_metric"]
            rates = by_rate(grid[(*key, m)])
            dev_lr = best_rate(rates, metric)
            hold_lr = final[(*key, m)][0].get("lr")
            at = lambda rs: mean_std([r["metrics"][metric] for r in rs])[0]  # noqa: E731
            same = next((rs for lr, rs in rates.items() if lr is not None and hold_lr is not None
                         and abs(lr - hold_lr) <= 1e-9 * abs(hold_lr)), None)
            hold_score, source = (at(same), "dev grid") if same else (at(final[(*key, m)]), "final runs")
            rows.append((key, m, dev_lr, at(rates[dev_lr]), hold_lr, hold_score, source))
    if not rows:
        return []
    lines = ["## Optimism of picking on dev", "", "| task | method | dev-picked rate | dev score | holdout-picked "
             "rate | dev score | from | optimism |", "|---|---|---:|---:|---:|---:|---|---:|"]
    for key, m, dev_lr, dev_s, hold_lr, hold_s, source in rows:
        lines.append(f"| {_label(key, [r[0] for r in rows])} | {m} | {_rate(dev_lr)} | {dev_s:.2f} | "
                     f"{_rate(hold_lr)} | "
                     f"{hold_s:.2f} | {source} | {dev_s - hold_s:+.2f} |")
    mean = sum(r[3] - r[5] for r in rows) / len(rows)
    lines += ["", f"Optimism = the dev score at the rate the dev set picked (a `select=dev` grid, mean over seeds) "
              f"minus the dev score at the rate the holdout picked — read from the same dev grid when it ran that "
              f"rate, else from the holdout study's final runs. It is what reporting on the set that picked the "
              f"rate adds; 0 when both pick the same rate. Mean over these {len(rows)} comparisons: {mean:+.2f} "
              "points.", ""]
    return lines


def protocol_sections(done: list[dict], out: Path) -> list[str]:
    """EVP from the selection runs; seeds and optimism from the dev-scored ones."""
    reported = [r for r in done if not is_selection(r)]
    return (evp_section([r for r in done if is_selection(r)], out) + seeds_section(reported)
            + optimism_section(reported))
