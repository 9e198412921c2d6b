"""Simulators: exact potential outcomes, reproducibility, CF metadata, the paper protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kgcm.errors import ConfigError, InputError
from kgcm.sequences import to_sequences
from kgcm.synthetic.arctic import ArcticConfig, Scenario, simulate_arctic
from kgcm.synthetic.paper import COLUMNS, load_series, paper_protocol, standin_series

SMALL = {"ny": 6, "nx": 5, "days": 90}


@pytest.fixture(scope="module")
def sim():
    return simulate_arctic(**SMALL, seed=3)


def test_observables_and_cf_attributes(sim) -> None:
    ds = sim.dataset
    assert dict(ds.sizes) == {"time": 90, "y": 6, "x": 5}
    assert ds["sithick"].attrs["standard_name"] == "sea_ice_thickness"
    assert ds["sithick"].attrs["units"] == "m"
    assert ds["uo"].attrs["standard_name"] == "eastward_sea_water_velocity"
    assert ds["zos"].attrs["units"] == "m"
    assert ds["lat"].dims == ("y", "x") and ds["lat"].attrs["units"] == "degrees_north"
    assert ds.attrs["Conventions"].startswith("CF")
    assert "latent" not in ds and "synthetic" in ds.attrs["title"]
    for name in ds.data_vars:
        assert np.isfinite(ds[name].values).all()


def test_realistic_magnitudes() -> None:
    ds = simulate_arctic(ny=8, nx=8, days=365, seed=0).dataset
    sit = ds["sithick"]
    assert 0.5 < float(sit.mean()) < 3.0
    monthly = sit.mean(("y", "x")).groupby("time.month").mean()
    assert int(monthly.idxmax()) in (3, 4, 5) and int(monthly.idxmin()) in (9, 10, 11)
    assert float(np.abs(ds["zos"]).max()) < 1.0
    speed = np.hypot(ds["uo"], ds["vo"])
    assert 0.005 < float(speed.mean()) < 0.2


def test_same_seed_same_world_other_seed_other_world() -> None:
    a = simulate_arctic(**SMALL, seed=1).dataset
    b = simulate_arctic(**SMALL, seed=1).dataset
    c = simulate_arctic(**SMALL, seed=2).dataset
    assert a.identical(b)
    assert not np.allclose(a["sithick"], c["sithick"])


def _documented_response(sim, treatment: np.ndarray) -> np.ndarray:
    """m = -θ H_s tanh(H / H_s), H_t = sum_l w_l T_(t-l) (zero before the start), w_l ∝
    exp(-l / response_days) over l < response_length summing to 1: the module docstring's
    equations, written here as an explicit sum over lags, not through the simulator's filter."""
    cfg = sim.config
    lags = np.arange(cfg.response_length)
    w = np.exp(-lags / cfg.response_days)
    w /= w.sum()
    history = np.zeros_like(treatment)
    for lag, weight in zip(lags, w, strict=True):
        history[lag:] += weight * treatment[: treatment.shape[0] - lag]
    return -sim.sensitivity * sim.saturation * np.tanh(history / sim.saturation)


def test_potential_outcome_identity_and_exactness(sim) -> None:
    t0 = sim.dataset["treatment"].values
    y0 = sim.dataset["sithick"].values
    np.testing.assert_allclose(sim.potential_outcome(t0), y0, atol=1e-6)
    y1 = sim.potential_outcome(1.5 * t0)
    # same noise draws: y(T1) - y(T0) = m(T1) - m(T0), with m from the documented equations
    expected = _documented_response(sim, 1.5 * t0) - _documented_response(sim, t0)
    assert np.abs(expected).mean() > 0.01  # a real effect, not two zeros agreeing
    np.testing.assert_allclose(y1 - y0, expected, atol=1e-6)
    assert np.mean(y1 - y0) < 0  # more forcing thins the ice


def test_window_effects_match_whole_path_for_a_window_at_the_start(sim) -> None:
    t0 = sim.dataset["treatment"].values
    window = 20
    t1 = t0.copy()
    t1[:window] *= 2.0  # intervention inside days 0..19 only
    whole = sim.potential_outcome(t1) - sim.dataset["sithick"].values
    cells = np.array([[2, 3], [0, 0]])
    starts = np.array([0, 0])
    t1w = np.stack([t1[:window, 2, 3], t1[:window, 0, 0]])
    got = sim.window_effects(t1w, cells, starts, window)
    np.testing.assert_allclose(
        got, np.stack([whole[:window, 2, 3], whole[:window, 0, 0]]), atol=1e-6
    )


def test_window_effects_later_windows_keep_factual_history(sim) -> None:
    seqs = to_sequences(sim.dataset, window=30)
    same = sim.window_effects(seqs.T, seqs.cells, seqs.starts, 30)
    np.testing.assert_allclose(same, 0.0, atol=1e-12)
    eff = sim.window_effects(seqs.T * 1.5, seqs.cells, seqs.starts, 30)
    # the effect at a window's first step depends on that step's change only
    theta = sim.sensitivity[seqs.starts, seqs.cells[:, 0], seqs.cells[:, 1]]
    assert np.all(np.sign(eff[:, 0]) == -np.sign(theta * seqs.T[:, 0]))


def test_confounding_knob_controls_hidden_share() -> None:
    def corr(conf: float) -> float:
        s = simulate_arctic(**SMALL, seed=0, confounding=conf)
        return float(np.corrcoef(s.latent.ravel(), s.dataset["treatment"].values.ravel())[0, 1])

    # without the hidden share, U still reaches T through the observed SSH and currents
    assert corr(2.0) > 0.6 > corr(0.0) + 0.3


def test_heterogeneity_knob() -> None:
    flat = simulate_arctic(**SMALL, heterogeneity=0.0).sensitivity
    assert np.allclose(flat, flat.flat[0])
    assert simulate_arctic(**SMALL, heterogeneity=0.9).sensitivity.std() > 1.0


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'confounding'"):
        simulate_arctic(confunding=1.0)
    with pytest.raises(ConfigError, match="heterogeneity must be a number in"):
        ArcticConfig(heterogeneity=2.0)
    with pytest.raises(ConfigError, match="ny must be an integer"):
        ArcticConfig(ny=1)
    with pytest.raises(ConfigError, match="kind must be"):
        Scenario(kind="double")


def test_scenarios() -> None:
    t = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(Scenario("scale", 2.0).apply(t), 2 * t)
    np.testing.assert_allclose(Scenario("shift", 0.1).apply(t), t + 0.1)
    np.testing.assert_allclose(Scenario("function", func=np.sqrt).apply(t), np.sqrt(t))
    with pytest.raises(InputError, match="returned shape"):
        Scenario("function", func=lambda a: a[0]).apply(t)


# ---- paper protocol ------------------------------------------------------------------------


def test_standin_is_deterministic_labelled_and_realistic() -> None:
    a, b = standin_series(), standin_series()
    pd.testing.assert_frame_equal(a, b)
    assert "STAND-IN" in a.attrs["source"]
    assert list(a.columns) == list(COLUMNS) and len(a) == 1620
    monthly = a["sithick"].groupby(a.index.month).mean()
    assert monthly.idxmax() in (3, 4, 5) and monthly.idxmin() in (8, 9, 10)
    assert 0.5 < a["sithick"].min() and a["sithick"].max() < 3.0
    assert (a["total_vel"] >= np.hypot(a["uoe"], a["von"])).all()
    assert a["zos"].abs().max() < 0.5


def test_paper_protocol_windows_split_and_effect() -> None:
    d = paper_protocol(recipe="v2", lag=3)
    assert d.Y.shape == (54, 30) and d.X.shape == (54, 30, 4)
    assert len(d.test) == 11 and len(d.train) == 43
    assert set(d.test).isdisjoint(d.train)
    assert d.history == 4
    expected = -6.0 * np.abs(d.hidden) * np.tanh(2.0 * (d.T1 - d.T0))
    np.testing.assert_allclose(d.true_effect, expected)
    # the factual outcome is the observed SIT: it ignores the treatment entirely
    np.testing.assert_allclose(d.Y.ravel(), standin_series()["sithick"].to_numpy()[:1620])
    rms = np.sqrt(np.mean(d.true_effect[d.test] ** 2))
    assert 1.0 < rms < 6.0  # the paper reports about 3.1-3.3 m


def test_paper_protocol_v1_adds_outcome_noise() -> None:
    d = paper_protocol(recipe="v1", lag=9)
    noise = d.Y.ravel() - standin_series()["sithick"].to_numpy()[:1620]
    assert 0.15 < noise.std() < 0.25


def test_load_series_round_trip_and_errors(tmp_path) -> None:
    frame = standin_series(n_days=100)
    path = tmp_path / "arctic_s2s_multivar_2020_2024.csv"
    frame.reset_index().to_csv(path, index=False)
    back = load_series(path)
    pd.testing.assert_frame_equal(
        back, frame, check_freq=False, check_like=True, atol=1e-12, check_exact=False
    )
    d1 = paper_protocol(back, window=10)
    d2 = paper_protocol(frame, window=10)
    np.testing.assert_allclose(d1.true_effect, d2.true_effect)
    frame.drop(columns="zos").reset_index().to_csv(path, index=False)
    with pytest.raises(InputError, match=r"lacks columns \['zos'\]"):
        load_series(path)
