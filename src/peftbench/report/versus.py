"""The GLUE section's "vs full fine-tuning": each method minus full FT per task, paired by seed (and data seed), with
its 95% t-interval and the verdict in words.

Runs of a study under the holdout protocol (records with a `protocol` field) also get the Holm-adjusted p-value of
the paired t-test beside each interval, the family being the methods compared with full FT on one task, and their
verdict uses the adjusted value (p < ALPHA): with a dozen methods against one baseline, a per-interval rule would
call about one in twenty noise differences real. Older studies read as they always did (interval rule only), so
their committed reports rebuild unchanged.
"""

from __future__ import annotations

from collections import defaultdict

from .cells import by_seed
from ..stats import holm, paired, paired_p

ALPHA = 0.05
WORDS = {"higher": "above full FT", "lower": "below full FT"}


def holm_family(full: dict, others: dict[str, dict]) -> dict[str, float | None]:
    """Holm-adjusted p of each method's paired test against `full` (pairing key -> score), one family."""
    names = list(others)
    adjusted = holm([paired_p(full, others[m]) for m in names])
    return dict(zip(names, adjusted))


def verdict(delta: float, p_adjusted: float | None) -> str:
    """'higher' / 'lower' when the adjusted p is under ALPHA, else 'not distinguishable' (also with no p: one pair)."""
    if p_adjusted is None or p_adjusted >= ALPHA:
        return "not distinguishable"
    return "higher" if delta > 0 else "lower"


def versus_full(by, methods, tasks, metric, tuned: bool) -> list[str]:
    """Each method minus full FT per task, paired by seed, with its 95% t-interval (and, under the protocol, the
    Holm-adjusted p), and the verdict in words."""
    if "full" not in methods or len(methods) < 2:
        return []
    others = [m for m in methods if m != "full"]
    use_holm = any(r.get("protocol") for m in methods for rs in by[m].values() for r in rs)
    adjusted = {t: holm_family(by_seed(by["full"].get(t, []), metric[t]),
                               {m: by_seed(by[m].get(t, []), metric[t]) for m in others}) for t in tasks}
    lines = ["### vs full fine-tuning", "", "| method | " + " | ".join(
        f"{t}: Δ {metric[t]} [95% interval]" + (" Holm p" if use_holm else "") for t in tasks) + " |",
             "|---|" + "---:|" * len(tasks)]
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
            text = f"{p['delta']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}] (n={p['n']})"
            if use_holm:
                q = adjusted[t][m]
                cells.append(f"{text} p={q:.3g}")
                word = WORDS.get(verdict(p["delta"], q), f"not distinguishable from full FT (Holm p ≥ {ALPHA:g})")
                verdicts[t][word].append(f"{m} ({p['delta']:+.2f}, p={q:.3g})")
                continue
            cells.append(text)
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
    if use_holm:
        lines[-1] += (f" p: the paired t-test's p-value, Holm-adjusted over the {len(others)} methods compared with "
                      f"full FT on the task. The decision rule below uses the adjusted p: a method is above or below "
                      f"full FT only when its Holm-adjusted p < {ALPHA:g}.")
    lines += ["", "#### Decision rule (from the " + ("Holm-adjusted p-values)" if use_holm else "intervals)"), ""]
    for t in tasks:
        parts = [f"{word}: {', '.join(ms)}" for word, ms in verdicts[t].items()]
        lines.append(f"- **{t}**: " + ("; ".join(parts) if parts else "no paired runs") + ".")
    return lines + [""]
