"""The protocol's statistics on hand-computed cases: Holm's adjustment, EVP (Dodge et al. 2019), the paired p-value
and the rule that stops `seeds=auto` for each of its three reasons."""

from __future__ import annotations

import math

import pytest
from scipy.stats import ttest_rel

from peftbench.stats import evp, holm, paired_p, seed_decision


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 with m = 3: 3*0.01 = 0.03, 2*0.03 = 0.06, max(0.06, 1*0.04) = 0.06 (monotone)
    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_evp_by_hand():
    # k = 2 over {1, 2, 3}: P(max=1) = 1/9, P(max=2) = 3/9, P(max=3) = 5/9 -> 22/9
    mean, sd = evp([3, 1, 2], 2)
    assert mean == pytest.approx(22 / 9)
    assert sd == pytest.approx(math.sqrt((1 + 4 * 3 + 9 * 5) / 9 - (22 / 9) ** 2))
    assert evp([1, 2, 3], 1)[0] == pytest.approx(2.0)  # k = 1: the mean
    assert evp([1, 2, 3], 200)[0] == pytest.approx(3.0, abs=1e-6)  # k large: the best
    with pytest.raises(ValueError):
        evp([], 1)


def test_paired_p_matches_scipy():
    base, other = {1: 70.0, 2: 71.5, 3: 69.0, 4: 72.0}, {1: 71.0, 2: 71.0, 3: 71.0, 4: 74.5}
    keys = sorted(base)
    expected = ttest_rel([other[k] for k in keys], [base[k] for k in keys]).pvalue
    assert paired_p(base, other) == pytest.approx(expected)
    assert paired_p({1: 0.0}, {1: 1.0}) is None  # one pair: no test
    assert paired_p({1: 0, 2: 0}, {1: 1, 2: 1}) == 0.0 and paired_p({1: 0, 2: 0}, {1: 0, 2: 0}) == 1.0


def test_seed_decision_three_reasons():
    assert seed_decision([1.0, 1.1, 0.9], 3, 10, 0.5) == "excludes_zero"
    assert seed_decision([1.0, -1.0, 0.5], 3, 10, 5.0) == "ci_target"  # half-width about 2.5 <= 5
    assert seed_decision([1.0, -1.0, 0.5], 3, 3, 0.1) == "max_seeds"
    assert seed_decision([1.0, -1.0, 0.5], 3, 10, 0.1) is None  # go on
    assert seed_decision([5.0, 5.0], 3, 10, 100.0) is None  # below min_seeds
