"""Physical bounds, the bounded output transform, references and effect summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgcm.bounds import OutcomeTransform, physical_bounds
from kgcm.errors import ConfigError, InputError
from kgcm.experiments.effect_summary import noise_and_signal, seasonal_means, sign_flags
from kgcm.references import climatology_table, linear_reference, lookup, rmse, skill

BOUNDS = [(0.0, None), (None, 1.0), (0.0, 1.0), (None, None)]


@pytest.mark.parametrize("lower,upper", BOUNDS)
def test_transform_round_trips_inside_the_bounds(lower, upper) -> None:
    rng = np.random.default_rng(0)
    lo = 0.0 if lower is None else lower
    y = lo + 0.02 + 0.9 * rng.random(500)
    tr = OutcomeTransform.fit(y, lower, upper)
    np.testing.assert_allclose(tr.inverse(tr.forward(y)), y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lower,upper", BOUNDS[:3])
@given(shift=st.floats(-1e6, 1e6, allow_nan=False))
@settings(max_examples=60, deadline=None)
def test_counterfactuals_never_leave_the_bounds(lower, upper, shift) -> None:
    y = np.array([0.0, 1e-9, 0.01, 0.3, 0.7, 0.99, 1.0])
    tr = OutcomeTransform(lower=lower, upper=upper, scale=0.3)
    cf = tr.counterfactual(y, shift)
    assert np.isfinite(cf).all()
    if lower is not None:
        assert (cf >= lower).all()
    if upper is not None:
        assert (cf <= upper).all()


def test_transform_is_nearly_linear_far_from_the_bound() -> None:
    tr = OutcomeTransform(lower=0.0, scale=1.0)
    y = np.array([5.0, 8.0])
    # an effect of -1 far from 0 moves y by -1 (within 2e-2), as a linear model would
    np.testing.assert_allclose(tr.counterfactual(y, -1.0) - y, -1.0, atol=2e-2)
    # near the bound the same effect cannot take more than what is there
    near = tr.counterfactual(np.array([0.05]), -1.0)
    assert 0 < near[0] < 0.05


def test_negative_extent_cannot_come_back_from_a_shift() -> None:
    extent = np.array([4.0e4, 1.0e6, 2.0e6])  # summer, spring, winter km2 (scale about 5.7e5)
    tr = OutcomeTransform.fit(np.linspace(3e4, 2e6, 100), 0.0, None)
    change = tr.counterfactual(extent, -6.0e4) - extent
    # in summer the loss is a small part of what is there; far from 0 almost all of it
    assert -0.15 * extent[0] < change[0] < 0
    assert -6.0e4 < change[1] < -4.5e4
    np.testing.assert_allclose(change[2], -6.0e4, rtol=0.05)


def test_fit_refuses_data_mostly_outside_the_bounds() -> None:
    with pytest.raises(InputError, match=r"outside its physical bounds .* check its units"):
        OutcomeTransform.fit(np.linspace(-5, 5, 100), 0.0, None)


def test_bad_transform_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="must be below the upper bound"):
        OutcomeTransform(lower=1.0, upper=0.0)
    with pytest.raises(ConfigError, match="scale must be a finite number > 0"):
        OutcomeTransform(scale=0.0)


def test_physical_bounds_from_names_and_attrs() -> None:
    assert physical_bounds("sithick") == (0.0, None)
    assert physical_bounds("siconc") == (0.0, 1.0)
    assert physical_bounds("siconc", {"units": "%"}) == (0.0, 100.0)
    assert physical_bounds("x", {"standard_name": "sea_ice_area_fraction"}) == (0.0, 1.0)
    assert physical_bounds("sea_ice_extent", {"valid_max": 2.3e6}) == (0.0, 2.3e6)
    assert physical_bounds("zos") == (None, None)


def test_climatology_table_is_the_mean_by_day_of_year() -> None:
    days = pd.date_range("2000-01-01", periods=3 * 365, freq="D")
    doy = days.day_of_year.to_numpy()
    values = np.stack([np.sin(2 * np.pi * doy / 365.25), 2 + 0 * doy], axis=1)
    values[0, 0] = np.nan
    use = np.ones_like(values, dtype=bool)
    table = climatology_table(values, doy, use, smooth_days=1)
    assert table.shape == (366, 2)
    np.testing.assert_allclose(table[99, 0], np.sin(2 * np.pi * 100 / 365.25))
    np.testing.assert_allclose(table[:, 1][np.isfinite(table[:, 1])], 2.0)
    # only the used steps count
    use[:, 1] = False
    assert np.isnan(climatology_table(values, doy, use)[:, 1]).all()
    got = lookup(table, np.array([[100, 101]]), np.array([1]))
    np.testing.assert_allclose(got, [[2.0, 2.0]])


def test_linear_reference_recovers_a_linear_outcome() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 10, 2))
    T = rng.normal(size=(60, 10))
    Y = 3 * X[..., 0] - X[..., 1] + 0.5 * T
    pred = linear_reference(X[:40], T[:40], Y[:40], X[40:], T[40:])
    assert rmse(pred, Y[40:]) < 0.05
    assert skill(1.0, 2.0) == pytest.approx(0.75)


def test_effect_summaries() -> None:
    time = pd.date_range("2001-01-01", periods=2 * 365, freq="D").to_numpy()
    doy = pd.DatetimeIndex(time).day_of_year.to_numpy()
    smooth = -1.0 - np.cos(2 * np.pi * doy / 365.25)
    seasons = seasonal_means(time, smooth, smooth - 0.1, smooth + 0.1)
    assert seasons["DJF"]["mean_effect"] < seasons["JJA"]["mean_effect"] < 0
    assert seasons["JJA"]["mean_lower"] < seasons["JJA"]["mean_effect"]
    quiet = noise_and_signal(time, smooth)
    noisy = noise_and_signal(time, smooth + np.random.default_rng(0).normal(0, 0.5, len(time)))
    assert quiet["noise_to_signal"] < 0.05 < 0.5 < noisy["noise_to_signal"]
    assert sign_flags(seasons, "negative") == []
    assert sign_flags(seasons, "positive") == ["DJF", "MAM", "JJA", "SON"]
    assert sign_flags(seasons, "") == []
