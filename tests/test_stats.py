"""The report's paired statistics hold at small n: marks follow the exact test, intervals cover."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import ttest_1samp

from ignite_mbo.platform.report import stats


def brute_force_p(d: np.ndarray) -> float:
    """Two-sided sign-flip p by listing every sign pattern (an independent computation)."""
    observed = abs(d.mean())
    flips = [abs((np.array(signs) * d).mean()) for signs in itertools.product((-1, 1), repeat=len(d))]
    return float(np.mean([f >= observed - 1e-12 for f in flips]))


def test_the_exact_test_cannot_reach_005_below_six_pairs() -> None:
    assert stats.min_pairs() == 6
    assert 2.0 ** (1 - 5) > stats.ALPHA > 2.0 ** (1 - 6)


def test_four_seeds_cannot_be_marked_however_large_the_effect() -> None:
    test = stats.paired_test(np.array([0.05, 0.06, 0.04, 0.055]))
    assert test.n == 4 and test.low > 0, "the t-interval excludes 0 ..."
    assert test.p_value == pytest.approx(2 / 2**4) and not test.significant, "... but the test printed cannot"
    assert test.too_few
    warning = stats.too_few_warning(4)
    assert "n=4 is too few for any conclusion" in warning and "0.125" in warning and "6 seeds" in warning
    assert stats.too_few_warning(6) == ""
    assert "no test or interval exists" in stats.too_few_warning(1)


def test_a_clear_effect_over_sixteen_seeds_is_marked() -> None:
    d = 0.02 + 0.01 * np.random.default_rng(3).random(16)
    test = stats.paired_test(d)
    assert test.n == 16 and test.significant and not test.too_few
    assert test.p_value == pytest.approx(2 / 2**16), "all 16 differences positive: only ± all-flips are as extreme"
    assert test.low > 0


def test_a_null_effect_over_sixteen_seeds_is_not_marked() -> None:
    d = np.random.default_rng(4).normal(0.0, 0.01, 16)
    test = stats.paired_test(d)
    assert not test.significant and test.low < 0 < test.high


@pytest.mark.parametrize("seed", range(5))
def test_sign_flip_p_matches_enumerating_every_sign_pattern(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = rng.normal(0.3, 1.0, int(rng.integers(2, 11)))
    assert stats.sign_flip_p(d) == pytest.approx(brute_force_p(d))


def test_zero_and_single_differences() -> None:
    assert stats.paired_test(np.zeros(8)).p_value == 1.0
    one = stats.paired_test(np.array([0.1]))
    assert one.n == 1 and np.isnan(one.p_value) and not one.significant
    assert stats.paired_test(np.array([np.nan, 0.1, 0.2])).n == 2, "NaNs dropped"


def test_t_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    hits = sum(low <= 0.5 <= high for low, high in (stats.t_interval(rng.normal(0.5, 2.0, 5)) for _ in range(4000)))
    assert 0.935 <= hits / 4000 <= 0.965


def test_the_test_is_not_anticonservative_under_the_null() -> None:
    rng = np.random.default_rng(1)
    rejections = sum(stats.paired_test(rng.normal(0.0, 1.0, 10)).significant for _ in range(400))
    assert rejections / 400 <= 0.08


def test_above_the_exact_limit_a_reproducible_monte_carlo_p_close_to_the_t_test() -> None:
    d = np.random.default_rng(2).normal(0.2, 1.0, 40)
    p = stats.sign_flip_p(d)
    assert p == stats.sign_flip_p(d), "fixed RNG seed"
    assert p == pytest.approx(ttest_1samp(d, 0.0).pvalue, abs=0.05)
