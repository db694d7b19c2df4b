"""The GLUE section's "vs full fine-tuning": each method minus full FT per task, paired by seed (and data seed), with
its 95% t-interval and the verdict in words.

Runs of a `select=holdout` study (records with a `protocol` field) get the verdicts of the study's own procedure
(`stats.decide`: better / non-inferior / inferior / inconclusive against full FT at the recorded margin and alpha, the
family being the methods compared with full FT on one task). With several data seeds the data seed is the unit of
replication: each pair's deltas are averaged over the seeds within a data seed, and the interval and verdict are taken
across data seeds. Older studies read as they always did (interval rule only), so their committed reports rebuild
unchanged.
"""

from __future__ import annotations

from collections import defaultdict

from .baselines import baseline
from .cells import CLEAR, FLAG, by_seed
from ..stats import VERDICTS, ci95, decide, paired

ALPHA = 0.05   # records written before `alpha` was a study key
MARGIN = 1.0   # ... and before `margin`
WORDS = {"higher": "above full FT", "lower": "below full FT"}


def rules(recs: list[dict]) -> dict:
    """margin, alpha and the looks (min_seeds, max_seeds) the records' study used; a fixed seed list is one look."""
    p = next((r["protocol"] for r in recs if r.get("protocol")), {}) or {}
    auto = p.get("seeds") == "auto"
    return {"margin": float(p.get("margin", MARGIN)), "alpha": float(p.get("alpha", ALPHA)),
            "min_seeds": int(p["min_seeds"]) if auto else None, "max_seeds": int(p["max_seeds"]) if auto else None}


def unit_deltas(full: dict, other: dict) -> tuple[list[float], str]:
    """The replicates of Δ = other − full: one per seed (in seed order) with one data seed; with several, the mean Δ
    over the seeds both ran within each data seed (in data seed order). Keys are cells.pair_key's (seed, data seed)."""
    keys = sorted(set(full) & set(other), key=lambda k: (k[1], k[0]))
    data_seeds = sorted({k[1] for k in keys})
    if len(data_seeds) <= 1:
        return [other[k] - full[k] for k in sorted(keys)], "seed"
    per = defaultdict(list)
    for k in keys:
        per[k[1]].append(other[k] - full[k])
    return [sum(v) / len(v) for _, v in sorted(per.items())], "data seed"


def family(full: dict, others: dict[str, dict], rule: dict) -> tuple[dict, dict, str]:
    """Per method: its replicate deltas, and `stats.decide`'s verdict for the whole family; the unit's name."""
    deltas, unit = {}, "seed"
    for m, scores in others.items():
        d, unit = unit_deltas(full, scores)
        if d:
            deltas[m] = d
    if not deltas:
        return {}, {}, unit
    if rule["min_seeds"] is None or unit == "data seed":  # one look at what there is (a fixed list of seeds)
        n = max(len(d) for d in deltas.values())
        lo = hi = max(2, n)
    else:
        lo, hi = rule["min_seeds"], rule["max_seeds"]
    return deltas, decide(deltas, rule["margin"], rule["alpha"], lo, hi), unit


def _interval(d: list[float]) -> str:
    mean, half, n = ci95(d)
    return f"{mean:+.2f} (n=1: no interval)" if half is None else \
        f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] (n={n})"


def learned_clearly(recs: list[dict], metric: str) -> bool:
    """Whether full FT's runs learned: their mean CLEAR points above the trivial prediction and, with two seeds or
    more, the whole 95% interval of their mean above it (a mean that seed noise could put at the trivial score is no
    yardstick either)."""
    trivial = baseline(recs[0], metric)
    mean, half, _ = ci95([r["metrics"][metric] for r in recs])
    return trivial is None or (mean >= trivial + CLEAR and (half is None or mean - half > trivial))


def protocol_versus(by, others, tasks, metric, rule) -> list[str]:
    """The table and verdict lines under the protocol: each method's Δ with its interval, and its verdict."""
    lines = ["| method | " + " | ".join(f"{t}: Δ {metric[t]} [95% interval] verdict" for t in tasks) + " |",
             "|---|" + "---:|" * len(tasks)]
    said: dict[str, dict[str, list[str]]] = {t: defaultdict(list) for t in tasks}
    units = set()
    fam = {}
    # a baseline that learned nothing is no yardstick: "better than" or "as good as" it says nothing of the method
    blind = {t for t in tasks if by["full"].get(t) and not learned_clearly(by["full"][t], metric[t])}
    for t in tasks:
        fam[t] = family(by_seed(by["full"].get(t, []), metric[t]),
                        {m: by_seed(by[m].get(t, []), metric[t]) for m in others}, rule)
        units.add(fam[t][2])
    for m in others:
        cells = []
        for t in tasks:
            deltas, verdicts, _ = fam[t]
            if m not in deltas:
                cells.append("no shared seeds" if by[m].get(t) and by["full"].get(t) else "—")
                continue
            if t in blind:
                cells.append(f"{_interval(deltas[m])} no verdict {FLAG}")
                said[t][f"no verdict: full FT did not clearly learn here {FLAG}"].append(f"{m} ({_interval(deltas[m])})")
                continue
            v = verdicts[m]
            word = v["verdict"] if v["reason"] != "max_seeds" else "unsettled"
            if not v["settled"] and v["reason"] is None:
                word = f"unsettled (needs {v['n']})"
            cells.append(f"{_interval(deltas[m])} {word}")
            key = VERDICTS[v["verdict"]] if v["settled"] else (
                "unsettled at max_seeds, reported with its interval, not a tie" if v["reason"] == "max_seeds"
                else f"unsettled: the procedure's next look needs {v['n']} {fam[t][2]}s")
            said[t][key].append(f"{m} ({_interval(deltas[m])})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    unit = "data seed" if "data seed" in units else "seed"
    looks = (f"looks at {rule['min_seeds']}..{rule['max_seeds']} seeds" if rule["min_seeds"] is not None
             and unit == "seed" else "one look at the replicates there are")
    pairing = "seed within data seed, averaged per data seed" if unit != "seed" else "seed"
    lines += ["", f"Δ = method − full FT, paired by {pairing} (the {unit}s both ran): the mean difference and its plain 95% t-interval (df = n − 1, n = {unit}s; "
              "not adjusted: it describes, the verdict decides). Verdict (`stats.decide`, docs/protocol.md): "
              f"one-sided paired t-tests against a margin of {rule['margin']:g} points, group-sequential ({looks}, "
              "O'Brien-Fleming-type alpha spending) and Holm-type over the methods compared with full FT on the task, "
              f"so that the chance of any wrong verdict on a task is at most alpha = {rule['alpha']:g}. "
              f"**better**: above full FT; **non-inferior**: loses less than {rule['margin']:g} points; **inferior**: "
              f"loses more than {rule['margin']:g} points; **inconclusive**: none of these shown."]
    lines += ["", f"#### How much do we lose (margin {rule['margin']:g} points, alpha {rule['alpha']:g})", ""]
    for t in tasks:
        parts = [f"{word}: {', '.join(ms)}" for word, ms in said[t].items()]
        lines.append(f"- **{t}**: " + ("; ".join(parts) if parts else "no paired runs") + ".")
    return lines + [""]


def versus_full(by, methods, tasks, metric, tuned: bool) -> list[str]:
    """Each method minus full FT per task, paired by seed, with its 95% t-interval, and the verdict in words (under
    the protocol: the procedure's own)."""
    if "full" not in methods or len(methods) < 2:
        return []
    others = [m for m in methods if m != "full"]
    recs = [r for m in methods for rs in by[m].values() for r in rs]
    if any(r.get("protocol") for r in recs):
        return ["### vs full fine-tuning", "", *protocol_versus(by, others, tasks, metric, rules(recs))]
    lines = ["### vs full fine-tuning", "", "| method | " + " | ".join(
        f"{t}: Δ {metric[t]} [95% interval]" for t in tasks) + " |", "|---|" + "---:|" * len(tasks)]
    verdicts: dict[str, dict[str, list[str]]] = {t: defaultdict(list) for t in tasks}
    for m in others:
        cells = []
        for t in tasks:
            p = paired(by_seed(by["full"].get(t, []), metric[t]), by_seed(by[m].get(t, []), metric[t]))
            if p is None:
                cells.append("no shared seeds" if by[m].get(t) and by["full"].get(t) else "—")
                continue
            if p["half"] is None:
                cells.append(f"{p['delta']:+.2f} (n=1: no interval)")
                verdicts[t]["one seed: no interval"].append(f"{m} ({p['delta']:+.2f})")
                continue
            cells.append(f"{p['delta']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}] (n={p['n']})")
            word = {"not distinguishable": "not distinguishable from full FT (the interval covers 0)",
                    "higher": "above full FT", "lower": "below full FT"}[p["verdict"]]
            verdicts[t][word].append(f"{m} ({p['delta']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}])")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    at = "each at its best rate, " if tuned else ""
    full = [r for rs in by["full"].values() for r in rs]
    several = len({(r["run"]["task"], r["run"]["seed"], r.get("data_seed")) for r in full}) > \
        len({(r["run"]["task"], r["run"]["seed"]) for r in full})  # data_seeds: a seed ran on several subsamples
    pairing = "paired by seed and data seed" if several else "paired by seed"
    lines += ["", f"Δ = method − full FT, {at}{pairing} (the seeds both ran): the mean difference and its 95% "
              "t-interval (df = n − 1). A difference whose interval covers 0 is not distinguishable from noise at "
              "this many seeds."]
    lines += ["", "#### Decision rule (from the intervals)", ""]
    for t in tasks:
        parts = [f"{word}: {', '.join(ms)}" for word, ms in verdicts[t].items()]
        lines.append(f"- **{t}**: " + ("; ".join(parts) if parts else "no paired runs") + ".")
    return lines + [""]
