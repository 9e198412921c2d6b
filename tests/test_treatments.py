"""Treatments: properties of the pure functions, numpy/xarray agreement, the paper's recipes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kgcm import treatments as tr
from kgcm.errors import ConfigError, InputError

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
series = arrays(np.float64, st.integers(1, 60), elements=finite)


@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-30, 30)))
def test_gate_in_open_unit_interval(x: np.ndarray) -> None:
    g = tr.sigmoid(x)
    assert np.all((g > 0) & (g < 1))


@given(arrays(np.float64, st.integers(1, 50), elements=finite))
def test_gate_in_closed_unit_interval_when_saturated(x: np.ndarray) -> None:
    g = tr.sigmoid(x)  # float64 rounds σ(x) to 0 or 1 beyond |x| ≈ 37
    assert np.all((g >= 0) & (g <= 1))


@given(finite, finite)
def test_gate_monotone(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert tr.sigmoid(np.array(lo)) <= tr.sigmoid(np.array(hi))


def test_gate_extremes_do_not_overflow() -> None:
    with np.errstate(all="raise"):
        g = tr.sigmoid(np.array([-1e6, 0.0, 1e6]))
    np.testing.assert_allclose(g, [0.0, 0.5, 1.0])


@given(series, st.integers(1, 10))
def test_moving_average_matches_pandas(x: np.ndarray, w: int) -> None:
    expected = pd.Series(x).rolling(w, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(tr.moving_average(x, w), expected, rtol=1e-9, atol=1e-6)


@given(finite, st.integers(1, 40), st.integers(1, 10))
def test_moving_average_of_constant_is_constant(c: float, n: int, w: int) -> None:
    np.testing.assert_allclose(tr.moving_average(np.full(n, c), w), c, rtol=1e-12, atol=1e-9)


def test_moving_average_skips_nan_like_pandas() -> None:
    x = np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 7.0])
    expected = pd.Series(x).rolling(3, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(tr.moving_average(x, 3), expected)


@given(series, st.integers(0, 70))
def test_lag_keeps_length_and_fills(x: np.ndarray, k: int) -> None:
    out = tr.lag(x, k)
    assert out.shape == x.shape
    m = min(k, len(x))
    np.testing.assert_array_equal(out[m:], x[: len(x) - m])
    np.testing.assert_array_equal(out[:m], np.full(m, x[0]))
    nan_filled = tr.lag(x, k, fill="nan")
    assert np.isnan(nan_filled[:m]).all()


@given(
    arrays(np.float64, st.integers(2, 40), elements=st.floats(0, 1)),
    arrays(np.float64, st.integers(2, 40), elements=st.floats(-1, 1)),
    st.integers(1, 7),
)
def test_zero_gain_gives_smoothed_input(speed: np.ndarray, ssh: np.ndarray, w: int) -> None:
    n = min(len(speed), len(ssh))
    speed, ssh = speed[:n], ssh[:n]
    out = tr.velocity_modulation(speed, ssh, window=w, gain=0.0)
    np.testing.assert_allclose(out, tr.moving_average(speed, w))


@given(arrays(np.float64, st.integers(2, 40), elements=st.floats(0.01, 1)), st.floats(0, 5))
def test_modulation_bounded_by_gain(speed: np.ndarray, gain: float) -> None:
    ssh = np.linspace(-1, 1, len(speed)) ** 3
    out = tr.velocity_modulation(speed, ssh, gain=gain)
    smooth = tr.moving_average(speed, 5)
    assert np.all(out >= smooth - 1e-12)
    assert np.all(out <= smooth * (1 + gain) + 1e-12)


def test_ssh_increment() -> None:
    h = np.array([0.0, 0.1, 0.05, 0.2])
    np.testing.assert_allclose(tr.ssh_increment(h), [0.0, 0.1, -0.05, 0.15])
    assert np.isnan(tr.ssh_increment(h, first="nan")[0])


def _grid(seed: int = 0) -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(seed)
    coords = {"time": pd.date_range("2020-01-01", periods=20), "y": np.arange(3), "x": np.arange(4)}
    dims = ("time", "y", "x")
    spd = xr.DataArray(rng.uniform(0, 0.2, (20, 3, 4)), dims=dims, coords=coords)
    ssh = xr.DataArray(rng.normal(0, 0.05, (20, 3, 4)), dims=dims, coords=coords)
    return spd, ssh


def test_xarray_grid_matches_numpy_and_keeps_coords() -> None:
    spd, ssh = _grid()
    out = tr.velocity_modulation(spd, ssh, window=4, slope=100.0, lag=2)
    expected = tr.velocity_modulation(spd.values, ssh.values, window=4, slope=100.0, lag=2)
    assert isinstance(out, xr.DataArray)
    assert out.dims == spd.dims
    xr.testing.assert_equal(out.coords.to_dataset(), spd.coords.to_dataset())
    np.testing.assert_allclose(out.values, expected)
    assert out.attrs["units"] == "m s-1"
    assert out.attrs["kgcm_window"] == 4


def test_xarray_time_not_first_and_dask_stays_lazy() -> None:
    spd, _ = _grid()
    moved = spd.transpose("y", "x", "time")
    out = tr.moving_average(moved, 3)
    assert out.dims == moved.dims
    np.testing.assert_allclose(
        out.transpose("time", "y", "x").values, tr.moving_average(spd.values, 3)
    )
    pytest.importorskip("dask")
    lazy = tr.moving_average(spd.chunk({"time": 5, "y": 1}), 3)
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.values, tr.moving_average(spd.values, 3))


def test_numpy_axis_argument() -> None:
    spd, _ = _grid()
    a = spd.values
    np.testing.assert_allclose(
        tr.moving_average(np.moveaxis(a, 0, -1), 3, axis=-1),
        np.moveaxis(tr.moving_average(a, 3), 0, -1),
    )


def test_bad_inputs_have_clear_errors() -> None:
    with pytest.raises(InputError, match="window must be an integer >= 1"):
        tr.moving_average(np.ones(3), 0)
    with pytest.raises(InputError, match="expected a 'time' dimension"):
        tr.moving_average(xr.DataArray(np.ones(3), dims="day"), 2)
    with pytest.raises(ConfigError, match="Did you mean 'window'"):
        tr.velocity_modulation(np.ones(3), np.ones(3), windw=3)
    with pytest.raises(ConfigError, match="unknown recipe 'v3'"):
        tr.get_recipe("v3")
    with pytest.raises(InputError, match="steps must be an integer >= 0"):
        tr.lag(np.ones(3), -1)


def test_v2_recipe_exact() -> None:
    rng = np.random.default_rng(1)
    zos = rng.normal(0, 0.05, 200)
    spd = rng.uniform(0.02, 0.1, 200)
    t0, s = tr.control_treatment(zos, spd, "v2", rng=np.random.default_rng(7))
    eps = np.random.default_rng(7).normal(0, 0.1, 200)
    ma = pd.Series(zos).rolling(5, min_periods=1).mean().to_numpy()
    expected_s = np.sin(2 * np.pi * np.arange(200) / 108.0)
    np.testing.assert_allclose(s, expected_s)
    np.testing.assert_allclose(t0, ma + 2 * expected_s + eps)
    t1 = tr.forcing_scenario(t0, spd, "v2")
    gate = 1 / (1 + np.exp(5 * (spd - spd.mean())))
    np.testing.assert_allclose(t1, (1 + 1.5 * gate) * t0)


def test_v1_recipe_adds_speed_and_scales() -> None:
    zos = np.zeros(50)
    spd = np.full(50, 0.1)
    t0, s = tr.control_treatment(zos, spd, "v1", rng=np.random.default_rng(0))
    eps = np.random.default_rng(0).normal(0, 0.1, 50)
    np.testing.assert_allclose(t0, 2 * s + 6 * 0.1 + eps)
    np.testing.assert_allclose(tr.forcing_scenario(t0, spd, "v1"), (1.5 + 0.5 * 0.5) * t0)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_dask_chunked_along_time_matches_numpy(chunk) -> None:
    """Long records stay chunked along time (map_overlap); results equal the one-block ones."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 3, 4))
    a[5, 1, 1] = np.nan
    x = xr.DataArray(a, dims=("time", "y", "x"))
    xd = x.chunk({"time": chunk})
    for fn in (
        lambda v: tr.moving_average(v, 5),
        tr.ssh_increment,
        lambda v: tr.lag(v, 4),
        lambda v: tr.velocity_modulation(abs(v), v, lag=2),
    ):
        got = fn(xd)
        assert got.chunks is not None
        np.testing.assert_allclose(got.values, fn(x).values, equal_nan=True)


def test_one_scenario_type_and_one_set_of_modulation_constants() -> None:
    """The demo, fit and the simulators use the scenario and the constants of kgcm.treatments."""
    from kgcm import prepare
    from kgcm.experiments import demo, fit
    from kgcm.synthetic import arctic, seaice
    from kgcm.treatments import OceanScenario, Scenario, TreatmentSpec, VelocityModulation

    assert arctic.Scenario is Scenario and seaice.OceanScenario is OceanScenario
    assert isinstance(demo.DemoConfig().scenario, Scenario)
    assert isinstance(fit.FitConfig().scenario, Scenario)
    assert prepare.PrepareConfig.__dataclass_fields__["treatment"].type in (
        "TreatmentSpec",
        TreatmentSpec,
    )
    spec = TreatmentSpec(window=7, gain=2.0)
    assert spec.modulation == VelocityModulation(window=7, gain=2.0)
    with pytest.raises(ConfigError, match="window must be an integer >= 1"):
        TreatmentSpec(window=0)


def test_scenario_kinds_strengths_and_refusals() -> None:
    from kgcm.treatments import Scenario

    t0 = np.array([[1.0, 2.0]])
    assert np.array_equal(Scenario("scale", 2.0).apply(t0), [[2.0, 4.0]])
    assert np.array_equal(Scenario("shift", 0.5).apply(t0), [[1.5, 2.5]])
    assert np.array_equal(Scenario("function", func=np.square).apply(t0), [[1.0, 4.0]])
    # a plan after a history: the factual path before the start, the scenario from it on
    paths = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert np.array_equal(Scenario("scale", 2.0).apply_from(paths, 1), [[1, 4, 6], [4, 10, 12]])
    assert np.array_equal(paths, [[1, 2, 3], [4, 5, 6]])  # the factual paths untouched
    shift = Scenario("shift", 0.1, expected_sign="negative")
    assert shift.at(3.0) == Scenario("shift", 0.1 * 3.0, expected_sign="negative")
    assert Scenario("scale", 1.5).at(2.0).value == 2.0
    assert shift.describe("m/s") == "T1 = T0 + 0.1 m/s"
    with pytest.raises(ConfigError, match=r"scenario\.kind must be 'scale' or 'shift'"):
        Scenario("double")
    with pytest.raises(ConfigError, match="needs func=callable"):
        Scenario("function")
    with pytest.raises(ConfigError, match="takes no func"):
        Scenario("scale", func=np.square)
    with pytest.raises(ConfigError, match="expected_sign must be"):
        Scenario(expected_sign="up")
