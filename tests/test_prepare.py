"""kgcm prepare: sources → common grid and time step → treatment → Zarr; then fit and effect."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from kgcm.config import from_dict
from kgcm.errors import ConfigError, DataError, OutputError
from kgcm.prepare import PrepareConfig, area_mean, open_prepared, run_prepare
from kgcm.readers import open_dataset as kgcm_open
from kgcm.regrid import NearestRegridder, polar_stereographic_grid
from kgcm.synthetic.products import truth, write_product
from kgcm.treatments import speed, velocity_modulation


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("products")
    # ice from a fine grid, ocean from a coarser one: two sources, two grids
    write_product("cmems-glorys12", root / "fine", ny=16, nx=32, days=40, days_per_file=20,
                  variables=("sithick", "siconc"))  # fmt: skip
    write_product("cmems-glorys12", root / "coarse", ny=10, nx=20, days=40, days_per_file=40,
                  variables=("zos", "uo", "vo"), packed=False)  # fmt: skip
    # the atmosphere: hourly ERA5 as the new CDS delivers it (instant and accum files)
    write_product("era5", root / "era5", layout="new", ny=13, nx=24, steps=40 * 24,
                  steps_per_file=10 * 24)  # fmt: skip
    return root


def _with_era5(root: Path, **extra) -> PrepareConfig:
    sources = [
        {"name": "ice", "paths": str(root / "fine" / "*.nc"), "product": "cmems-glorys12"},
        {"name": "ocean", "paths": str(root / "coarse" / "*.nc")},
        {"name": "atmosphere", "paths": str(root / "era5" / "*.nc"), "product": "era5",
         "resample": "mean"},
    ]  # fmt: skip
    return _config(root, sources=sources, **extra)


def _config(root: Path, **extra) -> PrepareConfig:
    data = {
        "output": str(root / "out" / "store.zarr"),
        "sources": [
            {"name": "ice", "paths": str(root / "fine" / "*.nc"), "product": "cmems-glorys12"},
            {"name": "ocean", "paths": str(root / "coarse" / "*.nc")},
        ],
        "grid": {"kind": "source", "source": "ice"},
        "chunks": {"time": 16, "y": 8, "x": 8},
        "overwrite": True,
    }
    data.update(extra)
    return from_dict(PrepareConfig, data)


def test_two_sources_on_one_grid(products) -> None:
    result = run_prepare(_config(products), log=lambda m: None, progress=False)
    ds = open_prepared(result.path)
    assert set(ds.data_vars) == {"sithick", "siconc", "zos", "uo", "vo", "mask", "treatment"}
    assert dict(ds.sizes) == {"time": 40, "y": 16, "x": 32}
    assert ds["sithick"].dtype == np.float32
    assert ds["sithick"].chunks is not None  # lazy on reading back
    assert ds["sithick"].encoding["chunks"] == (16, 8, 8)
    assert ds.attrs["kgcm_prepare_config"].startswith("output")
    # the treatment is the velocity modulation of the regridded fields, recomputed here
    expected = velocity_modulation(speed(ds["uo"].load(), ds["vo"].load()), ds["zos"].load())
    np.testing.assert_allclose(ds["treatment"].values, expected.values, rtol=1e-5, atol=1e-7,
                               equal_nan=True)  # fmt: skip
    # regridded ocean values are the truth at the NEAREST coarse cell: close to the fine truth
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values)
    ocean = ds["mask"].values.astype(bool)
    err = np.abs(ds["zos"].values - true["zos"])[:, ocean]
    assert np.nanmedian(err) < 0.02
    assert result.cell_days == 40 * 16 * 32


def test_nearest_regridder_matches_brute_force() -> None:
    src = polar_stereographic_grid(200.0, 70.0)
    tgt = polar_stereographic_grid(150.0, 72.0, central_meridian=10.0)
    regrid = NearestRegridder(src["lat"].values, src["lon"].values, tgt["lat"].values,
                              tgt["lon"].values, radius_m=3_000_000.0)  # fmt: skip

    def xyz(lat, lon):
        la, lo = np.deg2rad(lat.ravel()), np.deg2rad(lon.ravel())
        return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], 1)

    a, b = xyz(src["lat"].values, src["lon"].values), xyz(tgt["lat"].values, tgt["lon"].values)
    nearest = np.argmin(((b[:, None, :] - a[None, :, :]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(regrid.index, nearest)
    field = xr.DataArray(np.arange(src["lat"].size, dtype=float).reshape(1, *src["lat"].shape),
                         dims=("time", "y", "x")).chunk({"time": 1})  # fmt: skip
    moved = regrid(field, tgt).values[0]
    np.testing.assert_array_equal(moved.ravel(), nearest.astype(float))
    # beyond the radius there is no neighbour: NaN, not the nearest far-away value
    tight = NearestRegridder(src["lat"].values, src["lon"].values, tgt["lat"].values,
                             tgt["lon"].values, radius_m=150_000.0)  # fmt: skip
    dist = 6_371_000.0 * np.sqrt(((b - a[nearest]) ** 2).sum(-1))
    np.testing.assert_array_equal(tight.index < 0, dist > 150_000.0 * 1.001)


def test_polar_stereographic_target_and_area_mean(products, tmp_path) -> None:
    cfg = _config(products, output=str(tmp_path / "ps.zarr"),
                  grid={"kind": "polar-stereographic", "resolution_km": 150.0, "lat_min": 70.0},
                  area_mean=True)  # fmt: skip
    ds = open_prepared(run_prepare(cfg, log=lambda m: None, progress=False).path)
    assert set(ds.dims) == {"time"}
    assert ds["sithick"].shape == (40,)
    assert np.isfinite(ds["treatment"].values).all()


def test_area_mean_weights_by_cos_lat() -> None:
    lat = np.array([[60.0, 60.0], [80.0, 80.0]])
    ds = xr.Dataset(
        {"v": (("time", "y", "x"), np.array([[[1.0, 1.0], [3.0, np.nan]]]))},
        coords={"lat": (("y", "x"), lat), "lon": (("y", "x"), np.zeros((2, 2)))},
    )
    w = np.cos(np.deg2rad([60.0, 60.0, 80.0]))
    expected = (w * np.array([1.0, 1.0, 3.0])).sum() / w.sum()
    np.testing.assert_allclose(area_mean(ds)["v"].values, [expected])


def test_time_range_and_region(products, tmp_path) -> None:
    cfg = _config(products, output=str(tmp_path / "r.zarr"), start="2020-01-05",
                  end="2020-01-24", region=[75.0, 90.0, -90.0, 90.0])  # fmt: skip
    ds = open_prepared(run_prepare(cfg, log=lambda m: None, progress=False).path)
    assert ds.sizes["time"] == 20
    assert str(ds["time"].values[0])[:10] == "2020-01-05"
    valid = np.isfinite(ds["sithick"].isel(time=0).values)
    assert (ds["lat"].values[valid] >= 75.0).all()


def test_errors_are_clear(products, tmp_path) -> None:
    out = tmp_path / "e.zarr"
    # the same variable from two sources
    both = {"name": "ice2", "paths": str(products / "fine" / "*.nc"), "variables": ["sithick"]}
    cfg = _config(products, output=str(out))
    bad = from_dict(
        PrepareConfig, {**_config_dict(cfg), "sources": [*_config_dict(cfg)["sources"], both]}
    )
    with pytest.raises(DataError, match="comes from both source 'ice' and 'ice2'"):
        run_prepare(bad, log=lambda m: None, progress=False)
    # missing days in one source
    files = sorted((products / "fine").glob("*.nc"))
    gap = _config(products, output=str(out), sources=[
        {"name": "ice", "paths": [str(f) for f in files[:1]]},
        {"name": "ocean", "paths": str(products / "coarse" / "*.nc")},
    ])  # fmt: skip
    ds = run_prepare(gap, log=lambda m: None, progress=False)  # span = the common 20 days
    assert ds.sizes["time"] == 20
    # an existing output is not overwritten silently
    cfg2 = from_dict(PrepareConfig, {**_config_dict(cfg), "overwrite": False})
    with pytest.raises(OutputError, match="exists already"):
        run_prepare(cfg2, log=lambda m: None, progress=False)
    # a region with no data
    empty = _config(products, output=str(tmp_path / "x.zarr"), region=[50.0, 55.0, 0.0, 10.0])
    with pytest.raises(DataError, match="no grid cell lies inside region"):
        run_prepare(empty, log=lambda m: None, progress=False)
    with pytest.raises(ConfigError, match="unknown config key 'sorces'"):
        from_dict(PrepareConfig, {"sorces": []})
    with pytest.raises(ConfigError, match="resample must be one of"):
        from_dict(PrepareConfig, {"sources": [{"name": "a", "paths": "x", "resample": "cubic"}]})


def test_missing_days_inside_the_span_are_refused(products, tmp_path) -> None:
    files = sorted((products / "fine").glob("*.nc"))
    ocean_files = sorted((products / "coarse").glob("*.nc"))
    import shutil

    holey = tmp_path / "holey"
    holey.mkdir()
    # one file of 20 days, another of 20 days: remove the first and keep only a later one
    shutil.copy(files[1], holey / files[1].name)
    ds = xr.open_dataset(files[0]).isel(time=slice(0, 5))
    ds.to_netcdf(holey / "first5.nc")
    cfg = _config(products, output=str(tmp_path / "h.zarr"), sources=[
        {"name": "ice", "paths": str(holey / "*.nc"), "product": "cmems-glorys12"},
        {"name": "ocean", "paths": [str(f) for f in ocean_files]},
    ])  # fmt: skip
    with pytest.raises(DataError, match="15 of 40 daily steps are missing"):
        run_prepare(cfg, log=lambda m: None, progress=False)


def _config_dict(cfg: PrepareConfig) -> dict:
    from kgcm.config import to_dict

    return to_dict(cfg)


def test_ocean_products_with_era5_confounders(products, tmp_path) -> None:
    """GLORYS ice and ocean plus hourly ERA5 on one grid, ERA5 as daily means."""
    lines: list[str] = []
    result = run_prepare(_with_era5(products, output=str(tmp_path / "a.zarr")),
                         log=lines.append, progress=False)  # fmt: skip
    ds = open_prepared(result.path)
    atmosphere = {"tas", "uas", "vas", "psl", "rsds", "rlds"}
    assert atmosphere | {"sithick", "zos", "uo", "vo", "treatment"} <= set(ds.data_vars)
    assert dict(ds.sizes) == {"time": 40, "y": 16, "x": 32}
    assert "source atmosphere: sub-daily -> daily by mean" in lines
    assert ds["treatment"].attrs["computed_from"] == "uo vo zos"
    assert ds["rlds"].attrs["units"] == "W m-2"
    # each target cell holds the daily mean of the truth at its nearest ERA5 cell
    era5 = kgcm_open(products / "era5" / "*.nc")
    src_lat, src_lon = era5["lat"].values, era5["lon"].values
    hourly = pd.date_range("2020-01-01", periods=40 * 24, freq="h")
    true = truth(src_lat, src_lon, hourly)
    regrid = NearestRegridder(src_lat, src_lon, ds["lat"].values, ds["lon"].values,
                              radius_m=5e6)  # fmt: skip
    for name, atol in (("tas", 1e-3), ("psl", 0.1), ("rsds", 1e-3), ("rlds", 1e-3)):
        # (day, source cell); float32 sums of 24 values at 1e5 Pa round to a few 0.01 Pa
        daily = true[name].reshape(40, 24, -1).mean(axis=1)
        expected = daily[:, regrid.index].reshape(ds[name].shape)
        np.testing.assert_allclose(ds[name].values, expected, atol=atol, err_msg=name)
    # the daily cycle is averaged, not sampled at 00:00
    at_midnight = true["tas"][::24].reshape(40, -1)[:, regrid.index].reshape(ds["tas"].shape)
    assert np.abs(ds["tas"].values - at_midnight).max() > 1.0


def test_partial_days_of_hourly_data_are_refused(products, tmp_path) -> None:
    import shutil

    cut = tmp_path / "era5-cut"
    shutil.copytree(products / "era5", cut)
    for f in sorted(cut.glob("*_2020013100_*.nc")):  # the last file: drop its last 5 hours
        part = xr.open_dataset(f).load()
        f.unlink()
        part.isel(valid_time=slice(0, -5)).to_netcdf(f)
    sources = [
        {"name": "ocean", "paths": str(products / "coarse" / "*.nc")},
        {"name": "atmosphere", "paths": str(cut / "*.nc"), "resample": "mean"},
    ]  # fmt: skip
    cfg = _config(products, output=str(tmp_path / "p.zarr"), sources=sources,
                  grid={"kind": "source", "source": "ocean"})  # fmt: skip
    message = r"1 of 40 days are not covered by every 1-hourly step \(first: \['2020-02-09'\]\)"
    with pytest.raises(DataError, match=message + r".*narrow start/end"):
        run_prepare(cfg, log=lambda m: None, progress=False)
    ok = run_prepare(from_dict(PrepareConfig, {**_config_dict(cfg), "end": "2020-02-08"}),
                     log=lambda m: None, progress=False)  # fmt: skip
    assert ok.sizes["time"] == 39


def test_hourly_source_needs_resample(products, tmp_path) -> None:
    sources = [
        {"name": "ocean", "paths": str(products / "coarse" / "*.nc")},
        {"name": "atmosphere", "paths": str(products / "era5" / "*.nc")},
    ]  # fmt: skip
    cfg = _config(products, output=str(tmp_path / "n.zarr"), sources=sources,
                  grid={"kind": "source", "source": "ocean"})  # fmt: skip
    with pytest.raises(DataError, match=r"source atmosphere: its time step is sub-daily.*"
                                        r"resample = 'mean'"):  # fmt: skip
        run_prepare(cfg, log=lambda m: None, progress=False)


def test_fit_refuses_the_treatments_own_fields(products, tmp_path) -> None:
    from kgcm.errors import InputError
    from kgcm.experiments.fit import FitConfig, run_fit

    store = run_prepare(_config(products, output=str(tmp_path / "s.zarr")), log=lambda m: None,
                        progress=False).path  # fmt: skip
    cfg = from_dict(FitConfig, {"data": str(store), "window": 20,
                                "covariates": ["siconc", "zos", "uo"]})  # fmt: skip
    with pytest.raises(InputError, match=r"covariates \['zos', 'uo'\] are fields the treatment "
                                         r"'treatment' is computed from \(.*'uo vo zos'\).*"
                                         r"not identified.*ERA5 tas"):  # fmt: skip
        run_fit(cfg, tmp_path / "run", log=lambda m: None)


def test_fit_and_effect_on_the_store(products, tmp_path, monkeypatch) -> None:
    from kgcm.experiments.fit import FitConfig, run_effect, run_fit

    store = run_prepare(_with_era5(products, output=str(tmp_path / "s.zarr")),
                        log=lambda m: None, progress=False).path  # fmt: skip
    # the default covariates are the ERA5 confounders
    assert FitConfig().covariates == ("tas", "uas", "vas", "psl", "rlds")
    cfg = from_dict(FitConfig, {
        "data": str(store), "window": 20, "covariates": ["tas", "uas", "vas", "psl", "rlds"],
        "estimator": {"name": "kgcm-vae", "params": {"hidden": 8, "latent_dim": 4,
                      "training": {"max_epochs": 2, "progress": False}}},
    })  # fmt: skip
    run = tmp_path / "run"
    # with the atmosphere as covariates (not the fields the treatment is built from) the
    # treatment keeps its own variation: the overlap check lets the fit run
    result = run_fit(cfg, run, log=lambda m: None)
    assert result.metrics["overlap"]["ok"] is True, result.metrics["overlap"]
    assert result.metrics["n_dropped_units"] > 0  # land
    summary = run_effect(run, log=lambda m: None, allow_weak_overlap=True)
    assert summary["n_units"] == result.metrics["n_train_units"] + result.metrics["n_test_units"]
    eff = xr.open_dataset(run / "effects.nc")
    assert {"effect", "effect_lower", "effect_upper", "sithick", "heldout"} <= set(eff.data_vars)
    assert eff["effect"].dims == ("time", "y", "x")
    # the same effects.nc layout as the demo's (kgcm.experiments.outputs)
    assert {"sithick_counterfactual", "treatment", "treatment_scenario"} <= set(eff.data_vars)
    assert eff.attrs["Conventions"] == "CF-1.8" and eff.attrs["estimator"] == "kgcm-vae"
    assert (run / "effects_map.png").stat().st_size > 0
    info = json.loads((run / "run.json").read_text())
    assert info["command"] == "fit" and info["code_revision"] and "model.kgcm" in info["files"]
    # the report lists every product file with its size and SHA-256, folded when they are many
    import kgcm.experiments.report as report

    rows = _inputs(store)["files"]
    assert len(rows) == 11  # 2 ice files, 1 ocean file, 4 x 2 ERA5 files
    page, markdown = _report_texts(run)
    for row in rows:
        digest = hashlib.sha256(Path(row["resolved"]).read_bytes()).hexdigest()
        line = f"| {row['source']} | data | {row['path']} | {row['resolved']} | {row['size']:,} |"
        assert f"{line} {digest} |" in markdown
        assert digest in page and row["path"] in page
    assert "<details>" not in page and "predates" not in markdown
    monkeypatch.setattr(report, "_FOLD_ROWS", 10)
    page, markdown = _report_texts(run)
    assert "<details><summary>11 input files, " in page and "11 input files, " in markdown
    # a store prepared before the record existed is reported as such
    (store / "kgcm_inputs.json").unlink()
    page, markdown = _report_texts(run)
    assert "the store predates kgcm's record of input files" in markdown
    assert "predates kgcm&#x27;s record of input files" in page
    assert str(products / "fine" / "*.nc") in markdown  # the config's paths, as found now


def _report_texts(run: Path) -> tuple[str, str]:
    from kgcm.experiments.report import write_report

    html_path, md_path = write_report(run, log=lambda m: None)
    return html_path.read_text(), md_path.read_text()


def test_interrupted_write_resumes(products, tmp_path, monkeypatch) -> None:
    cfg = _config(products, output=str(tmp_path / "res.zarr"))  # 40 days in blocks of 16
    monkeypatch.setattr("kgcm.prepare._BLOCK_BYTES", 1)  # one time chunk per block
    original = xr.Dataset.to_zarr
    calls: list[object] = []
    crash = {"at": 2}

    def failing(self, *args, **kwargs):
        if kwargs.get("region") is not None:
            calls.append(kwargs["region"])
            if len(calls) == crash["at"]:
                raise RuntimeError("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_prepare(cfg, log=lambda m: None, progress=False)
    assert not (tmp_path / "res.zarr").exists()  # nothing half-written at the output path
    calls.clear()
    crash["at"] = -1
    result = run_prepare(cfg, log=lambda m: None, progress=False)
    assert len(calls) == 2  # blocks 2 and 3 only; block 1 was kept
    full = run_prepare(_config(products, output=str(tmp_path / "full.zarr")),
                       log=lambda m: None, progress=False)  # fmt: skip
    a, b = open_prepared(result.path), open_prepared(full.path)
    np.testing.assert_array_equal(a["treatment"].values, b["treatment"].values)
    assert not list(tmp_path.glob(".*partial*"))


def test_three_products_three_grids_two_time_steps(tmp_path) -> None:
    """SIT from TOPAZ (daily, polar stereographic, grid-relative vectors), SSH from GLORYS12
    (daily, regular lat/lon), velocity from ORAS5 (monthly, curvilinear, along-grid vectors)."""
    write_product("cmems-topaz", tmp_path / "topaz", ny=16, nx=16, spacing_km=50.0, days=80,
                  days_per_file=80, variables=("sithick", "siconc"))  # fmt: skip
    write_product("cmems-glorys12", tmp_path / "glorys", ny=30, nx=72, days=80, days_per_file=80,
                  variables=("zos",), packed=False)  # fmt: skip
    write_product("oras5", tmp_path / "oras5", months=3, variables=("vozocrtx", "vomecrty"))
    sources = [
        {"name": "ice", "paths": str(tmp_path / "topaz" / "*.nc")},
        {"name": "ssh", "paths": str(tmp_path / "glorys" / "*.nc")},
        {"name": "vel", "paths": str(tmp_path / "oras5" / "*.nc"), "product": "oras5"},
    ]
    cfg = from_dict(PrepareConfig, {"output": str(tmp_path / "m.zarr"), "sources": sources,
                                    "grid": {"kind": "source", "source": "ice"}})  # fmt: skip
    with pytest.raises(DataError, match="source vel: its time step is monthly but the target is "
                                        "daily; set resample = 'nearest' or 'linear'"):  # fmt: skip
        run_prepare(cfg, log=lambda m: None, progress=False)
    sources[2]["resample"] = "linear"
    cfg = from_dict(PrepareConfig, {"output": str(tmp_path / "m.zarr"), "sources": sources,
                                    "grid": {"kind": "source", "source": "ice"}})  # fmt: skip
    ds = open_prepared(run_prepare(cfg, log=lambda m: None, progress=False).path)
    # the span all three cover: within ORAS5's mid-month stamps (16 Jan 12:00 .. 16 Mar 12:00)
    assert str(ds["time"].values[0])[:10] == "2020-01-17"
    assert str(ds["time"].values[-1])[:10] == "2020-03-16"
    assert {"sithick", "siconc", "zos", "uo", "vo", "treatment", "mask"} <= set(ds.data_vars)
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values)
    ocean = ds["mask"].values.astype(bool)
    assert ocean.mean() > 0.3
    # nearest neighbour from coarser grids (the ORAS5 fixture is ~20 x 24 over the Arctic)
    for name, tol in (("sithick", 1e-4), ("zos", 0.02), ("uo", 0.02), ("vo", 0.02)):
        err = np.abs(ds[name].values - true[name])[:, ocean]
        assert np.nanmedian(err) < tol, name


def test_vectors_are_moved_in_3d_not_as_two_scalars() -> None:
    """Near the pole the east/north frame turns fast. A uniform flow across the pole (one
    constant Cartesian vector, east component -c·sin(lon), north -c·sin(lat)·cos(lon)) must stay
    that after regridding; moving the two components as scalars gets it wrong."""
    from kgcm.regrid import regrid_vector

    src = polar_stereographic_grid(100.0, 80.0)
    tgt = polar_stereographic_grid(70.0, 82.0, central_meridian=30.0)
    regrid = NearestRegridder(src["lat"].values, src["lon"].values, tgt["lat"].values,
                              tgt["lon"].values, radius_m=200_000.0)  # fmt: skip

    def across_pole(grid):
        phi, lam = np.deg2rad(grid["lat"].values), np.deg2rad(grid["lon"].values)
        return -0.2 * np.sin(lam), -0.2 * np.sin(phi) * np.cos(lam)

    coords = {"lat": src["lat"], "lon": src["lon"]}
    u_s, v_s = across_pole(src)
    u = xr.DataArray(u_s[None], dims=("time", "y", "x"), coords=coords, name="uo")
    v = xr.DataArray(v_s[None], dims=("time", "y", "x"), coords=coords, name="vo")
    ue, vn = regrid_vector(u, v, regrid, tgt)
    u_t, v_t = across_pole(tgt)
    valid = np.isfinite(ue.values[0])
    assert valid.mean() > 0.9
    good = max(np.abs(ue.values[0] - u_t)[valid].max(), np.abs(vn.values[0] - v_t)[valid].max())
    naive = max(np.abs(regrid(u, tgt).values[0] - u_t)[valid].max(),
                np.abs(regrid(v, tgt).values[0] - v_t)[valid].max())  # fmt: skip
    assert good < 0.002  # only the tangent-plane projection of a nearby cell's vector
    assert naive > 10 * good


def test_regridder_takes_0_to_360_longitudes() -> None:
    """pyresample drops longitudes outside [-180, 180]; the regridder wraps them first."""
    lat = np.full((1, 4), 60.0)
    lon = np.array([[0.0, 90.0, 200.0, 300.0]])
    regrid = NearestRegridder(lat, lon, lat, np.where(lon > 180.0, lon - 360.0, lon),
                              radius_m=1e5)  # fmt: skip
    np.testing.assert_array_equal(regrid.index, [0, 1, 2, 3])


# --- the record of every input file -------------------------------------------------------------


def _inputs(store: Path) -> dict:
    from kgcm.provenance import INPUTS, INPUTS_ATTR, read_inputs

    attrs = json.loads((store / ".zattrs").read_text())
    document = read_inputs(store, attrs)
    assert document is not None
    assert attrs[INPUTS_ATTR] == hashlib.sha256((store / INPUTS).read_bytes()).hexdigest()
    return document


def test_every_input_file_is_recorded_with_its_sha256(products, tmp_path) -> None:
    from kgcm._io import verify_folder
    from kgcm.provenance import INPUTS

    cfg = _config(products, output=str(tmp_path / "s.zarr"))
    store = run_prepare(cfg, log=lambda m: None, progress=False).path
    rows = _inputs(store)["files"]
    expected = sorted([*(products / "fine").glob("*.nc"), *(products / "coarse").glob("*.nc")])
    assert sorted(r["resolved"] for r in rows) == [str(p.resolve()) for p in expected]
    for row in rows:
        data = Path(row["resolved"]).read_bytes()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["size"] == len(data) and row["role"] == "data"
        assert row["given"] == str(products / ("fine" if row["source"] == "ice" else "coarse")
                                   / "*.nc")  # fmt: skip
    # the store's manifest covers the record; no hash cache is left beside the store
    assert INPUTS in verify_folder(store, "prepare", [INPUTS])["files"]
    assert not list(tmp_path.glob(".*inputs*"))


def test_a_damaged_input_record_is_refused(tmp_path) -> None:
    from kgcm.provenance import INPUTS, INPUTS_ATTR, read_inputs

    store = tmp_path / "s.zarr"
    store.mkdir()
    assert read_inputs(store, {}) is None  # a store from before the record

    def write(data: bytes, recorded: bytes | None = None) -> dict:
        (store / INPUTS).write_bytes(data)
        return {INPUTS_ATTR: hashlib.sha256(data if recorded is None else recorded).hexdigest()}

    good = json.dumps({"format": "kgcm-inputs/1", "files": []}).encode()
    attrs = write(good + b" ", recorded=good)  # edited after the store was written
    with pytest.raises(DataError, match=r"does not match the SHA-256 the store recorded"):
        read_inputs(store, attrs)
    with pytest.raises(DataError, match=r"recorded \(none\)"):
        read_inputs(store, {})
    with pytest.raises(DataError, match=r"is not valid JSON.*run kgcm prepare again"):
        read_inputs(store, write(b"{not json"))
    with pytest.raises(DataError, match=r"is not a kgcm input record"):
        read_inputs(store, write(json.dumps({"format": "other"}).encode()))
    with pytest.raises(DataError, match=r"is not a kgcm input record"):
        read_inputs(store, write(b"[1, 2]"))


def test_a_manifest_never_skips_a_file_it_was_asked_to_list(tmp_path) -> None:
    from kgcm._io import verify_folder, write_marker

    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(OutputError, match=r"cannot list \['b.json'\].*not written"):
        write_marker(tmp_path, "prepare", files=["a.json", "b.json"])
    write_marker(tmp_path, "prepare", files=["a.json"])
    assert list(verify_folder(tmp_path, "prepare", ["a.json"])["files"]) == ["a.json"]


def _two_glorys_files(src: Path, *, packed: bool) -> dict:
    """Two 10-day GLORYS12 files under ``src`` and the prepare config (no output) reading them."""
    write_product("cmems-glorys12", src, ny=8, nx=16, days=20, days_per_file=10,
                  variables=("sithick", "zos", "uo", "vo"), packed=packed)  # fmt: skip
    return {
        "sources": [{"name": "all", "paths": f"{src.name}/*.nc", "product": "cmems-glorys12"}],
        "chunks": {"time": 10, "y": 8, "x": 8},
    }


def test_a_changed_input_gets_a_new_hash(tmp_path) -> None:
    src = tmp_path / "p"
    cfg = _two_glorys_files(src, packed=False)
    first = run_prepare(from_dict(PrepareConfig, {**cfg, "output": "a.zarr"}), base_dir=tmp_path,
                        log=lambda m: None, progress=False).path  # fmt: skip
    before = {r["path"]: r["sha256"] for r in _inputs(first)["files"]}
    assert sorted(before) == [f"p/{p.name}" for p in sorted(src.glob("*.nc"))]  # as given
    _two_glorys_files(src, packed=True)  # the same fields packed: other bytes in every file
    second = run_prepare(from_dict(PrepareConfig, {**cfg, "output": "b.zarr"}), base_dir=tmp_path,
                         log=lambda m: None, progress=False).path  # fmt: skip
    after = {r["path"]: r for r in _inputs(second)["files"]}
    assert set(after) == set(before)
    for name, row in after.items():
        data = (tmp_path / name).read_bytes()
        assert row["sha256"] == hashlib.sha256(data).hexdigest() != before[name]


def _open_paths() -> set[str]:
    fds = Path("/proc/self/fd")
    return {os.path.realpath(fds / fd) for fd in os.listdir(fds)}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_prepare_closes_its_input_files(tmp_path) -> None:
    # an input left open stays locked by HDF5: rewriting it after a prepare failed in CI
    src = tmp_path / "p"
    cfg = {**_two_glorys_files(src, packed=False), "output": "a.zarr"}
    inputs = {os.path.realpath(p) for p in src.glob("*.nc")}
    ds = kgcm_open(sorted(src.glob("*.nc")), product="cmems-glorys12")
    ds["sithick"].isel(time=0).load()
    assert inputs <= _open_paths()  # the check sees open files
    ds.close()
    assert not inputs & _open_paths()
    run_prepare(from_dict(PrepareConfig, cfg), base_dir=tmp_path, log=lambda m: None,
                progress=False)  # fmt: skip
    assert not inputs & _open_paths()


def test_a_resumed_prepare_does_not_hash_again(products, tmp_path, monkeypatch) -> None:
    import kgcm.provenance

    cfg = _config(products, output=str(tmp_path / "r.zarr"))
    hashed: list[str] = []
    original = kgcm.provenance.file_hash

    def counting(path, advance):
        hashed.append(str(path))
        if len(hashed) == 2 and stop["hashing"]:
            raise KeyboardInterrupt  # interrupted while hashing the second file
        return original(path, advance)

    stop = {"hashing": True}
    monkeypatch.setattr(kgcm.provenance, "file_hash", counting)
    with pytest.raises(KeyboardInterrupt):
        run_prepare(cfg, log=lambda m: None, progress=False)
    assert len(hashed) == 2 and list(tmp_path.glob(".r.zarr.partial.inputs.json"))
    stop["hashing"] = False
    hashed.clear()
    # then interrupted while writing: the rerun hashes none of the files again
    monkeypatch.setattr("kgcm.prepare._write_zarr", _raise)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_prepare(cfg, log=lambda m: None, progress=False)
    n_files = len(list((products / "fine").glob("*.nc"))) + 1
    assert len(hashed) == n_files - 1  # all but the first, which the interrupted run finished
    hashed.clear()
    monkeypatch.undo()
    monkeypatch.setattr(kgcm.provenance, "file_hash", counting)
    store = run_prepare(cfg, log=lambda m: None, progress=False).path
    assert hashed == []
    assert len(_inputs(store)["files"]) == n_files


def _raise(*args, **kwargs):
    raise RuntimeError("simulated crash")
