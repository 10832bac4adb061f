"""Paired statistics that hold at the small numbers of seeds sweeps run (n = 2 ... 16, sometimes more).

Two samples paired by seed give differences ``d_s``. The report states, for every comparison:

- the mean difference with a **t-interval** (``mean ± t_{n-1} · sd / √n``), valid for any n ≥ 2 when the
  differences are roughly normal;
- the two-sided p-value of the **sign-flip permutation test** (under the null each ``d_s`` is as likely
  to be ``-d_s``): exact, all ``2^n`` sign patterns, up to ``EXACT_UP_TO`` pairs; above that a Monte
  Carlo estimate with a fixed RNG seed, which stays a valid p-value;
- n.

The significance mark follows the p-value printed beside it (``p < ALPHA``), never the interval. With
n pairs the exact test cannot go below ``2 / 2^n``, so below ``min_pairs()`` (6 for α = 0.05) no
comparison can be significant and the report says so in words. No bootstrap: at these n a percentile
bootstrap interval is far too narrow.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

ALPHA = 0.05
"""Two-sided level of every test and of the (1 − ALPHA) intervals."""
CONFIDENCE = 1.0 - ALPHA
EXACT_UP_TO = 16
"""Pairs up to which the sign-flip test enumerates all 2^n sign patterns (65,536 at 16)."""
MONTE_CARLO_RESAMPLES = 20_000
MONTE_CARLO_SEED = 0
"""The Monte Carlo test's RNG seed: the same data give the same p-value."""
TEST_NAME = "sign-flip permutation test"


def min_pairs(alpha: float = ALPHA) -> int:
    """The fewest pairs at which the exact two-sided sign-flip test can reach p < ``alpha``."""
    return next(n for n in range(1, 64) if 2.0 ** (1 - n) < alpha)


@dataclass(frozen=True)
class PairedTest:
    """Differences paired by seed: their mean, its (1 − ALPHA) t-interval, the sign-flip p-value and n."""

    mean: float
    low: float
    high: float
    p_value: float
    n: int

    @property
    def significant(self) -> bool:
        """Told apart from 0 by the test printed beside it: p < ALPHA (never at n < ``min_pairs()``)."""
        return bool(self.p_value < ALPHA)

    @property
    def too_few(self) -> bool:
        """Too few pairs for the exact test to reach ALPHA at all."""
        return self.n < min_pairs()


def paired_test(differences: np.ndarray) -> PairedTest:
    """Test the mean of paired ``differences`` against 0 (NaNs dropped). n = 0 or 1 gives NaN interval and p."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return PairedTest(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(d.mean())
    if n == 1:
        return PairedTest(mean, math.nan, math.nan, math.nan, 1)
    low, high = t_interval(d)
    return PairedTest(mean, low, high, sign_flip_p(d), n)


def t_interval(d: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t-interval of the mean of ``d`` (n ≥ 2): ``mean ± t_{n-1, (1+c)/2} · sd / √n``."""
    n = len(d)
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * float(np.std(d, ddof=1)) / math.sqrt(n)
    mean = float(np.mean(d))
    return mean - half, mean + half


def sign_flip_p(d: np.ndarray) -> float:
    """Two-sided p-value of the sign-flip test of mean(d) = 0; exact up to ``EXACT_UP_TO`` values.

    The share of sign patterns whose |Σ ±d| is at least the observed |Σ d| (all 2^n patterns, the
    observed one included); above ``EXACT_UP_TO`` values, ``MONTE_CARLO_RESAMPLES`` random patterns
    with the observed one counted, ``(hits + 1) / (R + 1)``. All differences 0 gives p = 1. One
    matrix product, so a report with hundreds of comparisons stays fast (scipy's
    ``permutation_test`` takes about a second per exact test at n = 16).
    """
    d = np.asarray(d, dtype=float)
    if not np.any(d != 0):
        return 1.0
    n = len(d)
    signs = _sign_patterns(n)
    observed = abs(float(d.sum()))
    hits = int(np.count_nonzero(np.abs(signs @ d) >= observed - 1e-12 * float(np.abs(d).sum())))
    p = hits / len(signs) if n <= EXACT_UP_TO else (hits + 1) / (len(signs) + 1)
    return float(min(1.0, p))


@functools.lru_cache(maxsize=8)
def _sign_patterns(n: int) -> np.ndarray:
    """All 2^n patterns of ±1 (n ≤ EXACT_UP_TO), else MONTE_CARLO_RESAMPLES seeded random ones; cached."""
    if n <= EXACT_UP_TO:
        return 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
    return np.random.default_rng(MONTE_CARLO_SEED).choice([-1.0, 1.0], size=(MONTE_CARLO_RESAMPLES, n))


def too_few_warning(n: int) -> str:
    """A plain sentence for a comparison with n pairs below ``min_pairs()`` ('' when n is enough)."""
    if n >= min_pairs():
        return ""
    if n <= 1:
        return (f"n={n} is too few for any conclusion: no test or interval exists without two paired seeds; "
                f"run at least {min_pairs()} seeds")
    return (f"n={n} is too few for any conclusion: with {n} paired seeds the exact two-sided test cannot go "
            f"below p = {2.0 ** (1 - n):.3g}, so nothing can be marked at α = {ALPHA:g}; "
            f"run at least {min_pairs()} seeds")
