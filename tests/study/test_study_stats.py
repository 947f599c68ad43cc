"""Study statistics against hand-computed values (and scipy, where installed)."""

from __future__ import annotations

import math

import pytest

from yolo11_lightning.study.stats import betainc_regularized, mean, std, t_cdf, t_quantile, welch_t_test


def test_mean_and_sample_std() -> None:
    assert mean([0.50, 0.52, 0.54]) == pytest.approx(0.52)
    assert std([0.50, 0.52, 0.54]) == pytest.approx(0.02)  # sqrt((0.02^2 + 0 + 0.02^2) / 2)
    assert math.isnan(std([0.5])) and math.isnan(mean([]))


@pytest.mark.parametrize("t", [-4.0, -1.0, 0.0, 0.3, 2.0, 15.0])
def test_t_cdf_closed_forms(t: float) -> None:
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_quantiles() -> None:
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), abs=1e-8)  # 12.7062
    assert t_quantile(0.975, 2) == pytest.approx(4.302652729, abs=1e-8)  # 2 t^2 = p'(2 + t^2), p' = 0.95^2
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-10)
    assert betainc_regularized(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # sum_{j>=2} C(4,j) .4^j .6^(4-j)


def test_welch_on_fixed_inputs() -> None:
    """baseline 50, 52, 54; variant 55, 58, 61 (x0.01).

    difference 0.06; variances 0.0004 and 0.0009; se = sqrt(0.0013 / 3) = 0.0208167;
    t = 2.882307; df = (0.0013/3)^2 / ((0.0004/3)^2 / 2 + (0.0009/3)^2 / 2) = 3.484536;
    p = I_{df/(df+t^2)}(df/2, 1/2) = 0.052980; CI = 0.06 -+ t_{0.975, 3.4845} * se.
    """
    result = welch_t_test([0.50, 0.52, 0.54], [0.55, 0.58, 0.61])
    assert result.difference == pytest.approx(0.06)
    assert result.t == pytest.approx(2.882307, abs=1e-6)
    assert result.df == pytest.approx(3.484536, abs=1e-6)
    assert result.p_value == pytest.approx(0.052980, abs=1e-6)
    assert (result.ci_low, result.ci_high) == pytest.approx((-0.0013295, 0.1213295), abs=1e-6)
    stats = pytest.importorskip("scipy.stats")
    reference = stats.ttest_ind([0.55, 0.58, 0.61], [0.50, 0.52, 0.54], equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue, abs=1e-12)
    assert t_quantile(0.975, result.df) == pytest.approx(stats.t.ppf(0.975, result.df), abs=1e-9)


def test_welch_edge_cases() -> None:
    single = welch_t_test([0.5], [0.6, 0.7])
    assert single.difference == pytest.approx(0.15) and math.isnan(single.p_value)
    constant = welch_t_test([0.5, 0.5], [0.5, 0.5])
    assert constant.p_value == 1.0 and constant.ci_low == constant.ci_high == 0.0
