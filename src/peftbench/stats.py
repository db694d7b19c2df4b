"""Small statistics for the report: mean ± std over seeds, paired and Welch 95% intervals, the crossover on log(size),
Expected Validation Performance (Dodge et al. 2019) and the group-sequential verdicts of methods against full FT
that `seeds=auto` stops on (`decide`: alpha spending over looks, Holm-type over methods).

Kept apart from build.py so the rules the report states in words are short functions the tests pin down.
"""

from __future__ import annotations

import functools
import math

import numpy as np

TIE_ONE_SEED = 1.0  # F1 points: with one seed per method there is no interval, so |Δ| under this is a tie


def t95(df: float) -> float:
    """The 95% two-sided t critical value t(0.975, df); a fractional (Welch) df rounds down, which widens the interval."""
    from scipy.stats import t  # exact at every df: a table that stops at 30 and then jumps to 1.96 is up to 4% narrow

    return float(t.ppf(0.975, max(1, math.floor(df))))


def mean_std(values: list[float]) -> tuple[float, float | None, int]:
    """Mean, sample standard deviation (None for one value) and n."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else None), len(a)


def ci95(values: list[float]) -> tuple[float, float | None, int]:
    """Mean, half-width of its 95% t-interval (df = n − 1; None for one value) and n."""
    mean, sd, n = mean_std(values)
    return mean, (t95(n - 1) * sd / math.sqrt(n) if sd is not None else None), n


def paired(base: dict, other: dict) -> dict | None:
    """Δ = other − base paired by key (seed): mean Δ over the shared keys and its 95% t-interval (df = n − 1).

    Returns {delta, half, low, high, n, verdict}; half/low/high are None with one pair; None when no key is shared.
    verdict: 'not distinguishable' when the interval covers 0 (or n = 1: no interval), else 'higher' / 'lower'.
    """
    keys = sorted(set(base) & set(other))
    if not keys:
        return None
    mean, half, n = ci95([other[k] - base[k] for k in keys])
    low, high = (mean - half, mean + half) if half is not None else (None, None)
    covers = half is None or low <= 0 <= high
    verdict = "not distinguishable" if covers else ("higher" if mean > 0 else "lower")
    return {"delta": mean, "half": half, "low": low, "high": high, "n": n, "verdict": verdict}


def evp(scores: list[float], k: int) -> tuple[float, float]:
    """Expected Validation Performance: the expected best of k configurations drawn i.i.d. (with replacement) from
    the N scored ones, and its standard deviation (Dodge et al. 2019, "Show Your Work", eq. 1).

    With the scores sorted v_(1) <= ... <= v_(N), P(max of k = v_(i)) = (i/N)^k - ((i-1)/N)^k.
    """
    v = np.sort(np.asarray(scores, dtype=float))
    n = len(v)
    if n == 0 or k < 1:
        raise ValueError(f"evp needs scores and k >= 1 (got {n} scores, k={k})")
    i = np.arange(1, n + 1)
    w = (i / n) ** k - ((i - 1) / n) ** k
    mean = float(w @ v)
    return mean, float(math.sqrt(max(0.0, float(w @ v**2) - mean**2)))


VERDICTS = {"better": "better than full FT",
            "non-inferior": "non-inferior to full FT (loses less than the margin)",
            "inferior": "inferior to full FT (loses more than the margin)",
            "inconclusive": "inconclusive"}
STOP_REASONS = {"better": "settled: better than full FT",
                "non-inferior": "settled: non-inferior (loses less than the margin)",
                "inferior": "settled: inferior (loses more than the margin)",
                "max_seeds": "unsettled at max_seeds: reported with its interval, not as a tie"}


@functools.cache
def spending(min_seeds: int, max_seeds: int, alpha: float) -> dict[int, float]:
    """The share of the level each look n = min_seeds..max_seeds spends: Lan-DeMets' O'Brien-Fleming-type function
    a(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)) at information t = n / max_seeds, normalised to sum to 1 (the first look
    spends a(t_min)). Pre-registered: it depends on the study's keys only, never on the data."""
    from scipy.stats import norm

    z = norm.ppf(1 - alpha / 2)
    spent = {n: 2 * norm.sf(z / math.sqrt(n / max_seeds)) for n in range(min_seeds, max_seeds + 1)}
    total, before, out = spent[max_seeds], 0.0, {}
    for n, a in spent.items():
        out[n] = (a - before) / total
        before = a
    return out


def look_pvalues(deltas: list[float], n: int, margin: float) -> dict[str, float]:
    """Exact one-sided paired-t p-values on the first n deltas: 'non-inferior' (H0: mean <= -margin), 'better' (H0:
    mean <= 0) and 'inferior' (H0: mean >= -margin). Every delta equal (sd 0): 0 or 1, the limit of the test."""
    from scipy.special import stdtr  # Student's t CDF: the ufunc under scipy.stats.t, without its per-call checks

    d = deltas[:n]
    mean = math.fsum(d) / n  # plain floats: a simulated study calls this at every look (bench/sequential_null.py)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    num = (mean + margin, mean, -(mean + margin))
    p = stdtr(n - 1, [-x / (sd / math.sqrt(n)) for x in num]) if sd > 0 else [0.0 if x > 0 else 1.0 for x in num]
    return dict(zip(("non-inferior", "better", "inferior"), map(float, p)))


def decide(deltas: dict[str, list[float]], margin: float, alpha: float, min_seeds: int, max_seeds: int) -> dict:
    """The group-sequential verdicts of each method against full FT, from its paired deltas (one per final seed, in
    seed order): a look at every seed count n = min_seeds..max_seeds.

    Each one-sided hypothesis gets the sequential p-value min over looks j <= n of p_j / w_j (w: `spending`), valid
    under any stopping by the union bound. Across methods, a Holm-type graphical procedure (Bretz et al. 2009) over
    2 chains per method, [non-inferior, better] and [inferior], each holding alpha / (chains not yet exhausted): the
    head of a chain is rejected when its p-value is at most that level; a rejected head passes its level down its own
    chain, an exhausted chain to every other. A method whose verdict is not inconclusive is settled at that look and
    takes no more seeds; its verdict is final. At a look, every unsettled method must have n deltas.

    Returns method -> {verdict, n (seeds its decision used, or needed next), settled (bool), reason (a STOP_REASONS
    key, or None: needs n seeds)}.
    """
    w = spending(min_seeds, max_seeds, alpha)
    out = {m: {"verdict": "inconclusive", "n": min_seeds, "settled": False, "reason": None} for m in deltas}
    chains = {(m, c): ["non-inferior", "better"] if c == "up" else ["inferior"] for m in deltas for c in ("up", "down")}
    best: dict[tuple[str, str], float] = {}  # (method, hypothesis) -> sequential p-value so far
    rejected: dict[str, set[str]] = {m: set() for m in deltas}
    for n in range(min_seeds, max_seeds + 1):
        active = [m for m in deltas if not out[m]["settled"]]
        if not active:
            break
        if any(len(deltas[m]) < n for m in active):
            for m in active:
                out[m]["n"] = n
            return out
        for m in active:
            for h, p in look_pvalues(deltas[m], n, margin).items():
                best[(m, h)] = min(best.get((m, h), 1.0), min(1.0, p / w[n]))
        while True:  # sequentially rejective: the result does not depend on the order of rejections
            level = alpha / max(1, sum(1 for c in chains.values() if c))
            head = next(((m, chain) for (m, _), chain in chains.items()
                         if chain and m in active and best[(m, chain[0])] <= level), None)
            if head is None:
                break
            rejected[head[0]].add(head[1].pop(0))
        for m in active:
            out[m]["n"] = n
            verdict = next((v for v in ("better", "non-inferior", "inferior") if v in rejected[m]), "inconclusive")
            if verdict != "inconclusive":
                out[m].update(verdict=verdict, settled=True, reason=verdict)
            elif n == max_seeds:
                out[m]["reason"] = "max_seeds"
    return out


def compare(base: list[float], other: list[float]) -> dict:
    """Δ = mean(other) − mean(base) and who wins.

    With ≥ 2 seeds on both sides the tie band is the Welch 95% interval of Δ (a tie when |Δ| ≤ its half-width);
    otherwise a tie is |Δ| < TIE_ONE_SEED.
    """
    mb, sb, nb = mean_std(base)
    mo, so, no = mean_std(other)
    delta = mo - mb
    half = None
    if nb >= 2 and no >= 2:
        vb, vo = sb**2 / nb, so**2 / no
        se2 = vb + vo
        df = se2**2 / (vb**2 / (nb - 1) + vo**2 / (no - 1)) if se2 > 0 else nb + no - 2
        half = t95(df) * math.sqrt(se2)
        tie = abs(delta) <= half
    else:
        tie = abs(delta) < TIE_ONE_SEED
    return {"delta": delta, "half": half, "winner": "tie" if tie else ("other" if delta > 0 else "base")}


def crossings(sizes: list[float], diff: list[float]) -> list[float]:
    """Sizes where `diff` (one curve minus the other, at increasing sizes) changes sign, linear in log(size)."""
    out = []
    for i in range(len(sizes) - 1):
        d0, d1 = diff[i], diff[i + 1]
        if d0 == 0:
            if i == 0 or diff[i - 1] != 0:
                out.append(float(sizes[i]))
        elif d0 * d1 < 0:
            x0, x1 = math.log(sizes[i]), math.log(sizes[i + 1])
            out.append(math.exp(x0 + (x1 - x0) * d0 / (d0 - d1)))
    if len(diff) > 1 and diff[-1] == 0 and diff[-2] != 0:
        out.append(float(sizes[-1]))
    return out


def bootstrap_crossing(sizes: list[float], base: list[list[float]], other: list[list[float]], n_boot: int = 2000,
                       seed: int = 0) -> tuple[float, float, float] | None:
    """95% percentile interval of the first crossing, resampling the seeds of every (size, method) with replacement.

    Returns (low, high, share of resamples that cross at all), or None when no size has two seeds to resample.
    """
    if not any(len(b) > 1 or len(o) > 1 for b, o in zip(base, other)):
        return None
    rng = np.random.default_rng(seed)
    found = []
    for _ in range(n_boot):
        diff = [rng.choice(o, len(o)).mean() - rng.choice(b, len(b)).mean() for b, o in zip(base, other)]
        c = crossings(sizes, diff)
        if c:
            found.append(math.log(c[0]))
    if not found:
        return (math.nan, math.nan, 0.0)
    lo, hi = np.percentile(found, [2.5, 97.5])
    return float(math.exp(lo)), float(math.exp(hi)), len(found) / n_boot
