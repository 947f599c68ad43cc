"""Statistics of a study: mean and standard deviation over seeds, Welch's t-test and its interval.

Why Welch's t-test: each variant's seeds are independent training runs. A seed fixes the data order
and augmentation but not the same initialisation across architectures, so runs of two variants
with the same seed are not matched pairs, and a paired test would claim a precision the design does
not have. Welch's test compares two independent means without assuming equal variances (a new block
may well make training more or less stable than the baseline). It assumes roughly normal per-seed
results; with 3 seeds it has few degrees of freedom, so intervals are wide: that is the honest
answer when a difference is about one mAP point.

The Student t distribution is computed here from the regularised incomplete beta function
(continued fraction, modified Lentz), so no statistics package is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (NaN for no values)."""
    return sum(values) / len(values) if values else math.nan


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (``n - 1`` in the denominator; NaN for fewer than two values)."""
    if len(values) < 2:
        return math.nan
    centre = mean(values)
    return math.sqrt(sum((v - centre) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Comparison:
    """Welch's t-test of ``variant - baseline``.

    Attributes:
        difference: Mean of the variant minus mean of the baseline.
        ci_low: Lower end of the confidence interval of the difference.
        ci_high: Upper end.
        t: The t statistic.
        df: Welch-Satterthwaite degrees of freedom.
        p_value: Two-sided p-value (NaN when a group has fewer than two values).
    """

    difference: float
    ci_low: float
    ci_high: float
    t: float
    df: float
    p_value: float


def welch_t_test(baseline: Sequence[float], variant: Sequence[float], confidence: float = 0.95) -> Comparison:
    """Welch's two-sample t-test and confidence interval for ``mean(variant) - mean(baseline)``.

    Args:
        baseline: Per-seed results of the reference variant.
        variant: Per-seed results of the compared variant.
        confidence: Level of the interval.

    Returns:
        The :class:`Comparison`; NaN statistics when a group has fewer than two values. With zero
        variance in both groups the interval is the difference itself and p is 1 (equal means)
        or 0.
    """
    difference = mean(variant) - mean(baseline)
    if len(baseline) < 2 or len(variant) < 2:
        return Comparison(difference, math.nan, math.nan, math.nan, math.nan, math.nan)
    var_b, var_v = std(baseline) ** 2 / len(baseline), std(variant) ** 2 / len(variant)
    se = math.sqrt(var_b + var_v)
    if se == 0.0:
        return Comparison(difference, difference, difference, math.nan, math.nan, 1.0 if difference == 0 else 0.0)
    df = (var_b + var_v) ** 2 / (var_b**2 / (len(baseline) - 1) + var_v**2 / (len(variant) - 1))
    t = difference / se
    half_width = t_quantile(0.5 + confidence / 2, df) * se
    p_value = 2.0 * _upper_tail(t, df)
    return Comparison(difference, difference - half_width, difference + half_width, t, df, p_value)


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution function of Student's t with ``df`` degrees of freedom."""
    tail = _upper_tail(t, df)
    return 1.0 - tail if t >= 0 else tail


def _upper_tail(t: float, df: float) -> float:
    """``P(T > |t|) = I_{df/(df+t^2)}(df/2, 1/2) / 2``, written via ``t^2/(df+t^2)`` near 0 for precision."""
    square = t * t
    if square < df:
        return 0.5 * (1.0 - betainc_regularized(0.5, df / 2, square / (df + square)))
    return 0.5 * betainc_regularized(df / 2, 0.5, df / (df + square))


def t_quantile(probability: float, df: float) -> float:
    """Inverse of :func:`t_cdf` (bisection to 1e-12), for ``0 < probability < 1``."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    low, high = -1.0, 1.0
    while t_cdf(low, df) > probability:
        low *= 2
    while t_cdf(high, df) < probability:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12:
            break
    return (low + high) / 2


def betainc_regularized(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1) / (a + b + 2):  # the continued fraction converges fast here
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, epsilon = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        # Even step: coefficient m (b - m) x / ((a + 2m - 1)(a + 2m)).
        coefficient = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + coefficient * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + coefficient / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        # Odd step: coefficient -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        coefficient = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + coefficient * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + coefficient / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        result *= step
        if abs(step - 1.0) < epsilon:
            break
    return result
