"""Metrics and loss terms: properties of the pure functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kgcm import metrics as m
from kgcm.errors import InputError
from kgcm.losses import gaussian_kl, hsic_rbf, mmd_rbf, warmup

vals = arrays(
    np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(-100, 100)
)


@given(vals)
def test_pehe_zero_for_perfect_estimate(tau: np.ndarray) -> None:
    assert m.pehe(tau, tau) == 0.0
    assert m.ate_error(tau, tau) == 0.0


@given(vals, st.floats(-10, 10))
def test_constant_offset(tau: np.ndarray, c: float) -> None:
    assert m.pehe(tau, tau + c) == pytest.approx(abs(c), abs=1e-9)
    assert m.ate_error(tau, tau + c) == pytest.approx(abs(c), abs=1e-9)


@given(vals, vals)
def test_ate_error_at_most_pehe(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        return
    assert m.ate_error(a, b) <= m.pehe(a, b) + 1e-9
    assert m.pehe(a, b) == pytest.approx(m.pehe(b, a))


def test_zero_effect_pehe_is_rms_of_truth() -> None:
    tau = np.array([[3.0, -4.0]])
    assert m.pehe(tau, np.zeros_like(tau)) == pytest.approx(np.sqrt(12.5))


@given(vals, st.floats(0, 5))
def test_coverage_bounds(tau: np.ndarray, half: float) -> None:
    assert m.interval_coverage(tau, tau - half, tau + half) == 1.0
    cov = m.interval_coverage(tau, tau + half + 1, tau + half + 2)
    assert cov == 0.0
    assert m.interval_width(tau - half, tau + half) == pytest.approx(2 * half)


def test_metric_errors() -> None:
    with pytest.raises(InputError, match="shape"):
        m.pehe(np.zeros(3), np.zeros(4))
    with pytest.raises(InputError, match="NaN"):
        m.pehe(np.array([np.nan]), np.zeros(1))
    with pytest.raises(InputError, match="lower exceeds upper"):
        m.interval_coverage(np.zeros(2), np.ones(2), np.zeros(2))


def test_kl_zero_iff_equal_and_positive_otherwise() -> None:
    mu = torch.randn(5, 3)
    lv = torch.randn(5, 3)
    assert torch.allclose(gaussian_kl(mu, lv, mu, lv), torch.zeros(5), atol=1e-6)
    assert torch.all(gaussian_kl(mu, lv, mu + 1, lv) > 0)
    zero = torch.zeros(5, 3)
    assert torch.allclose(gaussian_kl(mu, lv), gaussian_kl(mu, lv, zero, zero))


def test_mmd_detects_shift_and_is_near_zero_for_same_law() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(300, 4, generator=gen)
    b = torch.randn(300, 4, generator=gen)
    same = mmd_rbf(a, b).item()
    shifted = mmd_rbf(a, b + 1.0).item()
    assert abs(same) < 0.02
    assert shifted > 10 * abs(same)
    with pytest.raises(ValueError, match="at least 2"):
        mmd_rbf(a[:1], b)


def test_warmup() -> None:
    assert warmup(0, 10) == pytest.approx(0.1)
    assert warmup(20, 10) == 1.0
    assert warmup(0, 0) == 1.0


def test_hsic_detects_dependence_linear_or_not_and_is_near_zero_when_independent() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(256, 4, generator=g)
    independent = hsic_rbf(a, torch.randn(256, 2, generator=g)).item()
    linear = hsic_rbf(a, a[:, :2] + 0.1 * torch.randn(256, 2, generator=g)).item()
    nonlinear = hsic_rbf(a, a[:, :1] ** 2).item()  # uncorrelated, yet dependent
    assert 0 <= independent < 0.003  # measured 0.0013
    assert linear > 10 * independent and nonlinear > 3 * independent  # 0.026, 0.0054
    # invariant to the scale of either sample (standardised, median bandwidth)
    assert hsic_rbf(100 * a, a[:, :1] ** 2).item() == pytest.approx(nonlinear, rel=1e-4)
    with pytest.raises(ValueError, match="paired samples of at least 4 rows"):
        hsic_rbf(a, a[:10])
