"""The ``seaice`` world (veris physics) in a tiny form: 10 x 8 cells, 3 days."""

from __future__ import annotations

import builtins
import warnings

import numpy as np
import pytest

from kgcm.errors import ConfigError

seaice = pytest.importorskip("kgcm.synthetic.seaice")
pytest.importorskip("veris", reason="the physics extra (veris) is not installed")

TINY = dict(nx=10, ny=8, days=3, dt=10800.0, n_evp=15, island_radius=1.0, seed=3)


@pytest.fixture(autouse=True)
def _quiet_veris():
    # veris evaluates both branches of np.where: divide-by-zero warnings are harmless there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cache = tmp_path_factory.mktemp("seaice")
        return seaice.simulate_seaice(cache_dir=cache, progress=False, **TINY), cache


def test_dataset_is_cf_on_time_y_x(world):
    sim, _ = world
    ds = sim.dataset
    assert ds["sithick"].dims == ("time", "y", "x")
    assert ds.sizes == {"time": 3, "y": 8, "x": 10}
    assert ds["lat"].dims == ("y", "x") and ds["lon"].attrs["units"] == "degrees_east"
    assert ds["sithick"].attrs["standard_name"] == "sea_ice_thickness"
    assert "tas" in ds and "uas" not in ds  # observed: ("tas",) by default
    ocean = sim.ocean_mask > 0
    assert np.isfinite(ds["sithick"].values[:, ocean]).all()
    assert np.isnan(ds["sithick"].values[:, ~ocean]).all()
    sit = ds["sithick"].values[:, ocean]
    assert 0.3 < np.nanmean(sit) < 2.0  # started at 0.8 m


def test_deterministic_and_cached(world):
    sim, cache = world
    again = seaice.simulate_seaice(progress=False, **TINY)  # fresh run, no cache
    np.testing.assert_array_equal(again.sithick, sim.sithick)
    seen = []
    loaded = seaice.simulate_seaice(cache_dir=cache, progress=lambda *a: seen.append(a), **TINY)
    assert seen == []  # nothing re-simulated
    np.testing.assert_array_equal(loaded.sithick, sim.sithick)


def test_resumes_from_the_last_finished_day(tmp_path):
    cfg = seaice.SeaIceConfig(**{**TINY, "days": 2})
    full = seaice.simulate_seaice(cfg, progress=False)
    store = tmp_path / "w"
    seen = []

    def stop_after_first(name, done, total):
        seen.append(done)
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seaice.simulate_seaice(cfg, cache_dir=store, progress=stop_after_first)
    resumed = []
    sim = seaice.simulate_seaice(cfg, cache_dir=store, progress=lambda n, d, t: resumed.append(d))
    assert resumed == [2]  # day 1 came from the store
    np.testing.assert_array_equal(sim.sithick, full.sithick)


def test_identity_scenario_has_zero_effect(world):
    sim, _ = world
    for scenario in (
        seaice.OceanScenario("scale_currents", 1.0),
        seaice.OceanScenario("balanced", 1.0),
    ):
        effect = sim.effect(scenario, n_days=2)
        assert np.nanmax(np.abs(effect)) == 0.0
    effect = sim.effect(seaice.OceanScenario("scale_currents", 1.0), start=2)
    assert np.nanmax(np.abs(effect)) == 0.0


def test_changed_forcing_has_an_effect(world):
    sim, _ = world
    effect = sim.effect(seaice.OceanScenario("scale_currents", 3.0), n_days=1)
    assert np.nanstd(effect) > 1e-4


def test_converging_currents_thicken_the_ice(world):
    sim, _ = world
    nx = TINY["nx"]
    xc = nx // 4  # convergence along column xc, divergence half a channel away
    # west-face positions in cells relative to xc: u > 0 west of xc, u < 0 east of it
    phase = 2.0 * np.pi * (np.arange(nx) - 0.5 - xc) / nx
    push = -0.2 * np.sin(phase)[None, :, None]  # m/s, (day, x, y)

    def converge(f):
        return seaice.OceanForcing(ssh=f.ssh, u=f.u + push, v=f.v)

    scenario = seaice.OceanScenario("function", func=converge, name="converge")
    effect = sim.effect(scenario, n_days=1)[0]  # (y, x)
    ocean = sim.ocean_mask > 0
    near = np.where(ocean[:, xc], effect[:, xc], np.nan)
    far = np.where(ocean[:, xc + nx // 2], effect[:, xc + nx // 2], np.nan)
    assert np.nanmean(near) > 0.0 > np.nanmean(far), (np.nanmean(near), np.nanmean(far))


def test_window_effects_start_from_the_factual_state(world):
    sim, _ = world
    cells = np.array([[3, 2], [4, 5], [3, 2]])
    starts = np.array([0, 0, 1])
    scenario = seaice.OceanScenario("balanced", 2.0)
    effect, t1 = sim.window_effects(cells, starts, 2, scenario)
    assert effect.shape == t1.shape == (3, 2)
    full = sim.effect(scenario, start=1, n_days=2)
    np.testing.assert_array_equal(effect[2], full[:, 3, 2])
    t0 = sim.dataset["treatment"].values
    assert not np.allclose(t1[0], t0[0:2, 3, 2])


def test_scenarios_keep_or_break_balance(world):
    sim, _ = world
    w = sim._world
    f = w.forcing
    bal = sim.scenario_forcing(seaice.OceanScenario("balanced", 2.0))
    u, _ = w.geostrophic(bal.ssh)
    np.testing.assert_allclose(bal.u, u, atol=1e-12)
    np.testing.assert_allclose(bal.u, 2.0 * f.u - w.geostrophic(w.ssh_mean[None])[0], atol=1e-12)
    scaled = sim.scenario_forcing(seaice.OceanScenario("scale_currents", 2.0))
    np.testing.assert_array_equal(scaled.ssh, f.ssh)
    assert not np.allclose(w.geostrophic(scaled.ssh)[0], scaled.u)
    later = sim.scenario_forcing(seaice.OceanScenario("scale_currents", 2.0), start=2)
    np.testing.assert_array_equal(later.u[:2], f.u[:2])
    with pytest.raises(ConfigError, match="needs a name"):
        seaice.OceanScenario("function", func=lambda x: x)


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown atmospheric field 'wnd'"):
        seaice.SeaIceConfig(observed=("wnd",))
    with pytest.raises(ConfigError, match="must divide a day"):
        seaice.SeaIceConfig(dt=7000.0)
    with pytest.raises(ConfigError, match="unknown seaice world setting 'nxx'"):
        seaice.simulate_seaice(nxx=3)


def test_clear_error_without_the_physics_extra(monkeypatch):
    real_import = builtins.__import__

    def no_veris(name, *args, **kwargs):
        if name == "veris" or name.startswith("veris."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_veris)
    monkeypatch.setattr(
        seaice.importlib, "import_module", lambda name: no_veris(name, fromlist=["x"])
    )
    with pytest.raises(seaice.PhysicsNotInstalledError, match=r"pip install 'kgcm\[physics\]'"):
        seaice.simulate_seaice(**TINY)


def test_benchmark_task_and_one_cell(tmp_path):
    from kgcm.experiments import benchmark as bm

    params = {**TINY, "days": 4, "window": 2, "cache_dir": str(tmp_path), "observed": ["wind"]}
    spec = bm.DatasetSpec(name="seaice", kind="seaice", params=params)
    task = bm.make_task(spec, seed=1)
    n_test = task.Y_test.shape[0]
    assert task.true_effect.shape == task.T1_test.shape == task.cf_Y1.shape == (n_test, 2)
    assert np.isfinite(task.true_effect).all() and np.abs(task.true_effect).max() > 0
    features = set(task.X_train.coords["feature"].values)
    # the observed atmosphere, the treatment's confounders; never its ocean source fields
    assert {"uas", "vas"} <= features and not features & {"zos", "uo", "vo"}
    assert task.cf_start == 1
    # the mid-window scenario leaves the first step factual
    np.testing.assert_array_equal(task.cf_T1[:, 0], task.T0_test[:, 0])
    np.testing.assert_array_equal(task.cf_Y1[:, 0], task.Y_test[:, 0])
    row = bm.run_cell(spec, bm.EstimatorSpec("zero-effect"), 1, tau=1, alpha=0.05)
    assert row["status"] == "ok", row
    assert row["pehe"] > 0
