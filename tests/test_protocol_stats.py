"""The protocol's statistics on hand-computed cases: EVP (Dodge et al. 2019), the alpha spending, the one-sided
paired t-tests and the group-sequential verdicts (`decide`) that stop `seeds=auto`."""

from __future__ import annotations

import math

import pytest

from peftbench.stats import decide, evp, look_pvalues, spending


def test_evp_by_hand():
    # k = 2 over {1, 2, 3}: P(max=1) = 1/9, P(max=2) = 3/9, P(max=3) = 5/9 -> 22/9
    mean, sd = evp([3, 1, 2], 2)
    assert mean == pytest.approx(22 / 9)
    assert sd == pytest.approx(math.sqrt((1 + 4 * 3 + 9 * 5) / 9 - (22 / 9) ** 2))
    assert evp([1, 2, 3], 1)[0] == pytest.approx(2.0)  # k = 1: the mean
    assert evp([1, 2, 3], 200)[0] == pytest.approx(3.0, abs=1e-6)  # k large: the best
    with pytest.raises(ValueError):
        evp([], 1)


def test_spending_is_obrien_fleming_type_and_sums_to_one():
    from scipy.stats import norm

    w = spending(3, 4, 0.05)
    a3 = 2 * norm.sf(norm.ppf(0.975) / math.sqrt(0.75))  # Lan-DeMets OBF at t = 3/4: 0.02365
    assert w[3] == pytest.approx(a3 / 0.05) and w[3] + w[4] == pytest.approx(1.0)
    assert list(spending(3, 10, 0.05)) == list(range(3, 11)) and spending(5, 5, 0.05) == {5: 1.0}


def test_look_pvalues_match_scipy_one_sided_t():
    from scipy.stats import ttest_1samp

    d = [1.0, -0.5, 2.0, 0.5]
    p = look_pvalues(d, 4, 1.0)
    assert p["non-inferior"] == pytest.approx(ttest_1samp(d, -1.0, alternative="greater").pvalue)
    assert p["better"] == pytest.approx(ttest_1samp(d, 0.0, alternative="greater").pvalue)
    assert p["inferior"] == pytest.approx(ttest_1samp(d, -1.0, alternative="less").pvalue)
    assert look_pvalues(d, 2, 1.0)["better"] == pytest.approx(ttest_1samp(d[:2], 0.0, alternative="greater").pvalue)
    assert look_pvalues([0.0, 0.0, 0.0], 3, 1.0) == {"non-inferior": 0.0, "better": 1.0, "inferior": 1.0}


def test_verdicts_by_hand_one_look():
    """One look (min = max = 4 seeds): sequential p = the t-test's p. Two methods: 4 chains, level 0.05/4 = 0.0125."""
    from scipy.stats import t

    deltas = {"up": [3.0, 3.2, 2.8, 3.1],      # mean 3.025, clearly above 0: better
              "near": [-0.2, 0.1, 0.0, -0.1],  # mean -0.05, sd 0.129: non-inferior at margin 1 but not better
              "down": [-5.0, -5.2, -4.9, -5.1],  # mean -5.05: inferior
              "wide": [4.0, -4.0, 3.0, -3.5]}  # mean -0.125, sd 4: inconclusive
    out = decide(deltas, 1.0, 0.05, 4, 4)
    assert {m: d["verdict"] for m, d in out.items()} == {"up": "better", "near": "non-inferior", "down": "inferior",
                                                          "wide": "inconclusive"}
    assert out["wide"]["reason"] == "max_seeds" and not out["wide"]["settled"]
    assert all(out[m]["settled"] and out[m]["reason"] == out[m]["verdict"] for m in ("up", "near", "down"))
    # near's "better" p: t = -0.05 / (0.1291 / 2) = -0.775, p = 0.75: never under any level; its NI p is tiny
    assert look_pvalues(deltas["near"], 4, 1.0)["better"] == pytest.approx(t.sf(-0.05 / (_sd(deltas["near"]) / 2), 3))
    # inconclusive at a level: wide's NI p = t.sf((-0.125 + 1) / (sd / 2), 3) = 0.35 > any Holm level
    assert look_pvalues(deltas["wide"], 4, 1.0)["non-inferior"] > 0.05


def test_holm_levels_step_down_by_hand():
    """Two methods whose NI p-values are 0.02 and 0.011 (one look): 4 chains -> first level 0.0125 rejects the 0.011
    one's NI; its up chain now heads 'better' (p ~ 1), so still 4 chains, and 0.02 > 0.0125 stays inconclusive."""
    from scipy.stats import t

    def deltas_with_ni_p(p: float) -> list[float]:  # four deltas whose NI t-statistic gives p (sd 1, so se 0.5)
        tstat = t.isf(p, 3)
        base = [-1.5 ** 0.5, 0.0, 0.0, 1.5 ** 0.5]  # mean 0, sd 1 (n - 1 in the denominator)
        shift = tstat * 0.5 - 1.0
        return [b + shift for b in base]

    a, b = deltas_with_ni_p(0.011), deltas_with_ni_p(0.02)
    assert look_pvalues(a, 4, 1.0)["non-inferior"] == pytest.approx(0.011)
    out = decide({"a": a, "b": b}, 1.0, 0.05, 4, 4)
    assert out["a"]["verdict"] == "non-inferior" and out["b"]["verdict"] == "inconclusive"
    # a third method, clearly better, exhausts its up chain: 6 chains at 0.05/6, then 5 at 0.01 < 0.011, so a is
    # no longer rejected: the price of a bigger family
    out = decide({"a": a, "b": b, "c": [9.0, 9.1, 8.9, 9.0]}, 1.0, 0.05, 4, 4)
    assert out["c"]["verdict"] == "better" and out["a"]["verdict"] == "inconclusive"


def test_sequential_looks_and_final_decisions():
    """Looks at 3 and 4 seeds: a method settled at 3 takes no 4th; one not settled needs 4; a look waits for every
    unsettled method's seeds; the decision at a look does not change when later seeds come in."""
    early = [5.0, 5.1, 4.9]
    unsure = [1.0, -1.0, 0.5]
    out = decide({"early": early, "unsure": unsure}, 1.0, 0.05, 3, 4)
    assert out["early"] == {"verdict": "better", "n": 3, "settled": True, "reason": "better"}
    assert out["unsure"] == {"verdict": "inconclusive", "n": 4, "settled": False, "reason": None}  # run seed 4
    later = decide({"early": early + [-50.0], "unsure": unsure + [0.2]}, 1.0, 0.05, 3, 4)
    assert later["early"] == out["early"] and later["unsure"]["reason"] == "max_seeds"
    assert decide({"a": [5.0, 5.0]}, 1.0, 0.05, 3, 10)["a"]["n"] == 3  # below min_seeds: the first look needs 3


def _sd(d: list[float]) -> float:
    m = sum(d) / len(d)
    return math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1))
