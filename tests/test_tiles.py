"""Effects over a whole grid written tile by tile to Zarr (kgcm.tiles), here and on dask."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import kgcm
import kgcm.tiles as tiles
from kgcm.errors import ConfigError, DataError, InputError, OutputError
from kgcm.sequences import to_sequences
from kgcm.streaming import StreamedUnits
from kgcm.synthetic.arctic import simulate_arctic
from kgcm.treatments import Scenario

OPTIONS = {"window": 20}
FAST = {"seed": 0, "hidden": 8, "training": {"max_epochs": 2, "progress": False}}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A 10 x 9 world of 130 days in blocks of 4 x 5 cells and 40 days (the last days in no
    window), a CRN (deterministic effects) saved, and the effects it gives on every unit
    placed on the grid."""
    root = tmp_path_factory.mktemp("tiles")
    ds = simulate_arctic(ny=10, nx=9, days=130, seed=1).dataset
    ds["sithick"] = ds["sithick"].where(~((ds.y == ds.y[0]) & (ds.x == ds.x[0])))  # land
    ds.attrs["kgcm_prepare_config"] = "{}"
    store = root / "store.zarr"
    ds.chunk({"time": 40, "y": 4, "x": 5}).to_zarr(store, consolidated=True)
    seqs = to_sequences(xr.open_zarr(store), drop_incomplete=True, **OPTIONS)
    est = kgcm.make_estimator("crn", **FAST).fit(seqs.Y, seqs.T, X=seqs.X_xarray())
    est.save(root / "crn.kgcm")
    grid = np.full((130, 10, 9), np.nan)
    effect = est.effect(seqs.X, T0=seqs.T, T1=1.5 * seqs.T)
    for (y, x), start, values in zip(seqs.cells, seqs.starts, effect, strict=True):
        grid[start : start + 20, y, x] = values
    return root, store, grid


def test_tiled_effects_equal_the_effects_of_every_unit(fitted, tmp_path) -> None:
    root, store, grid = fitted
    units = StreamedUnits(store, **OPTIONS)
    out = tiles.tiled_effects(root / "crn.kgcm", units, Scenario("scale", 1.5), tmp_path / "e")
    written = xr.open_zarr(out)
    assert written["effect"].dims == ("time", "y", "x") and "lat" in written.coords
    # chunks are the blocks: 40 days (2 windows) x 4 x 5 cells
    assert written["effect"].encoding["chunks"] == (40, 4, 5)
    values = written["effect"].values
    assert np.array_equal(np.isnan(values), np.isnan(grid))  # land and the uncovered tail
    np.testing.assert_allclose(values, grid, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert set(written.data_vars) == {"effect"}  # CRN gives point effects only


def test_tiled_effects_on_a_dask_cluster_equal_those_made_here(fitted, tmp_path) -> None:
    from dask.distributed import Client, LocalCluster

    root, store, grid = fitted
    units = StreamedUnits(store, **OPTIONS)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
        as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        out = tiles.tiled_effects(
            root / "crn.kgcm", units, Scenario("scale", 1.5), tmp_path / "e", client=client
        )
    np.testing.assert_allclose(
        xr.open_zarr(out)["effect"].values, grid, rtol=1e-5, atol=1e-6, equal_nan=True
    )


def test_an_interrupted_run_resumes_with_the_blocks_left(fitted, tmp_path, monkeypatch) -> None:
    root, store, grid = fitted
    units = StreamedUnits(store, **OPTIONS)
    n_blocks = len(units.blocks())
    calls: list[int] = []
    real = tiles._block_effects

    def dies_after_three(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a killed run
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(tiles, "_block_effects", dies_after_three)
    scenario = Scenario("scale", 1.5)
    with pytest.raises(KeyboardInterrupt):
        tiles.tiled_effects(root / "crn.kgcm", units, scenario, tmp_path / "e")
    calls.clear()
    monkeypatch.setattr(tiles, "_block_effects", lambda *a: calls.append(a[-1]) or real(*a))
    out = tiles.tiled_effects(root / "crn.kgcm", units, scenario, tmp_path / "e")
    assert len(calls) == n_blocks - 3  # only the blocks not yet written
    np.testing.assert_allclose(
        xr.open_zarr(out)["effect"].values, grid, rtol=1e-5, atol=1e-6, equal_nan=True
    )
    # another scenario on the same output is refused, unless told to start over
    with pytest.raises(OutputError, match="restart=True"):
        tiles.tiled_effects(root / "crn.kgcm", units, Scenario("scale", 2.0), tmp_path / "e")
    calls.clear()
    tiles.tiled_effects(
        root / "crn.kgcm", units, Scenario("scale", 2.0), tmp_path / "e", restart=True
    )
    assert len(calls) == n_blocks
    assert np.nanmax(np.abs(xr.open_zarr(out)["effect"].values - grid)) > 0  # another map


def test_intervals_are_written_where_the_estimator_gives_them(fitted, tmp_path) -> None:
    _, store, _ = fitted
    seqs = to_sequences(xr.open_zarr(store), drop_incomplete=True, **OPTIONS)
    est = kgcm.KGCMVAE(**{**FAST, "latent_dim": 4}).fit(seqs.Y, seqs.T, X=seqs.X_xarray())
    est.save(tmp_path / "vae.kgcm")
    out = tiles.tiled_effects(
        tmp_path / "vae.kgcm", StreamedUnits(store, **OPTIONS), Scenario("scale", 1.5),
        tmp_path / "e", alpha=0.1,
    )  # fmt: skip
    written = xr.open_zarr(out)
    lower, upper = written["effect_lower"].values, written["effect_upper"].values
    covered = ~np.isnan(written["effect"].values)
    assert covered.any() and np.array_equal(covered, ~np.isnan(lower))
    assert (lower[covered] <= upper[covered]).all()


def test_the_overlap_diagnostic_is_written_per_cell_and_day(fitted, tmp_path) -> None:
    root, store, grid = fitted
    seqs = to_sequences(xr.open_zarr(store), drop_incomplete=True, **OPTIONS)
    report = kgcm.check_overlap(seqs.T, seqs.X, 1.5 * seqs.T).to_dict()
    units = StreamedUnits(store, **OPTIONS)
    scenario = Scenario("scale", 1.5)
    out = tiles.tiled_effects(root / "crn.kgcm", units, scenario, tmp_path / "e", overlap=report)
    written = xr.open_zarr(out)
    shift = np.full_like(grid, np.nan)
    for (y, x), start, t in zip(seqs.cells, seqs.starts, seqs.T, strict=True):
        shift[start : start + 20, y, x] = np.abs(0.5 * t) / report["residual_sd"]
    np.testing.assert_allclose(written[tiles.SHIFT].values, shift, rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(written["effect"].values, grid, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert written.attrs["overlap_ok"] == int(report["ok"])
    assert written.attrs["overlap_residual_sd"] == pytest.approx(report["residual_sd"])
    assert ("overlap_warning" in written.attrs) == (not report["ok"])
    # another report is another output: refused without restart
    other = {**report, "residual_sd": 2 * report["residual_sd"]}
    with pytest.raises(OutputError, match="another model"):
        tiles.tiled_effects(root / "crn.kgcm", units, scenario, tmp_path / "e", overlap=other)
    with pytest.raises(InputError, match="residual_sd"):
        tiles.tiled_effects(root / "crn.kgcm", units, scenario, tmp_path / "f", overlap={})


def test_a_finished_store_is_copied_into_one_netcdf_file(fitted, tmp_path, monkeypatch) -> None:
    root, store, grid = fitted
    units = StreamedUnits(store, **OPTIONS)
    scenario = Scenario("scale", 1.5)
    calls = []
    real = tiles._block_effects

    def stop_after_two(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(tiles, "_block_effects", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        tiles.tiled_effects(root / "crn.kgcm", units, scenario, tmp_path / "e")
    with pytest.raises(DataError, match="holds 2 of its"):
        tiles.to_netcdf(tmp_path / "e", tmp_path / "e.nc")
    assert not (tmp_path / "e.nc").exists()
    monkeypatch.setattr(tiles, "_block_effects", real)
    tiles.tiled_effects(root / "crn.kgcm", units, scenario, tmp_path / "e")
    tiles.to_netcdf(tmp_path / "e", tmp_path / "e.nc")
    tiles.to_netcdf(tmp_path / "e", tmp_path / "e.nc")  # its own copy is replaced
    with xr.open_dataset(tmp_path / "e.nc") as copy:
        assert copy["effect"].dims == ("time", "y", "x") and copy["effect"].dtype == np.float32
        assert copy["effect"].encoding["chunksizes"] == (40, 4, 5)
        written = xr.open_zarr(tmp_path / "e")
        np.testing.assert_array_equal(copy["effect"].values, written["effect"].values)
        assert np.isfinite(copy["effect"].values).sum() == np.isfinite(grid).sum()
        assert copy.attrs["kgcm_effects_key"] == written.attrs["kgcm_effects_key"]
    (tmp_path / "mine.nc").write_text("not ours")
    with pytest.raises(OutputError, match="not written by this kgcm"):
        tiles.to_netcdf(tmp_path / "e", tmp_path / "mine.nc")
    assert (tmp_path / "mine.nc").read_text() == "not ours"
    with pytest.raises(InputError, match="not a kgcm effects store"):
        tiles.to_netcdf(store, tmp_path / "x.nc")


def test_bad_input_is_refused(fitted, tmp_path) -> None:
    root, store, _ = fitted
    overlapping = StreamedUnits(store, window=20, stride=10)
    with pytest.raises(ConfigError, match="stride >= window"):
        tiles.tiled_effects(root / "crn.kgcm", overlapping, Scenario("scale", 1.5), tmp_path / "e")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a kgcm effects store"):
        tiles.tiled_effects(
            root / "crn.kgcm", StreamedUnits(store, **OPTIONS), Scenario("scale", 1.5),
            tmp_path / "other",
        )  # fmt: skip
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def _fit_run(root, store, **settings):
    from kgcm.config import from_dict
    from kgcm.experiments.fit import FitConfig, run_fit

    config = from_dict(FitConfig, {
        "data": str(store), "window": 20, "split": "cell", "covariates": ["zos", "uo", "vo"],
        "estimator": {"name": "crn", "params": {k: v for k, v in FAST.items() if k != "seed"}},
        **settings,
    })  # fmt: skip
    run = root / "run"
    run_fit(config, run, log=lambda m: None, allow_weak_overlap=True)
    return run


@pytest.mark.parametrize(("stride", "workers"), [(0, "1"), (25, "0")])
def test_kgcm_effect_tiles_writes_what_kgcm_effect_computes_in_memory(
    fitted, tmp_path, stride, workers
) -> None:
    from typer.testing import CliRunner

    from kgcm.cli import app

    _, store, _ = fitted
    # stride 25 > window 20: gaps between windows, one window start per 40-day block
    run = _fit_run(tmp_path, store, stride=stride)
    runner = CliRunner()
    res = runner.invoke(app, ["effect", str(run), "--allow-weak-overlap", "--no-progress"])
    assert res.exit_code == 0, res.output
    whole = xr.open_dataset(run / "effects.nc")["effect"].transpose("time", "y", "x").values
    # on a local dask cluster of one worker process (the model and store loaded there), or
    # in this process
    res = runner.invoke(app, ["effect", str(run), "--tiles", "--workers", workers,
                              "--allow-weak-overlap", "--no-progress",
                              "--netcdf", str(tmp_path / "copy.nc")])  # fmt: skip
    assert res.exit_code == 0, res.output
    store_out = xr.open_zarr(tmp_path / "run-effects.zarr")
    written = store_out["effect"].values
    assert np.array_equal(np.isnan(written), np.isnan(whole)) and np.isfinite(written).any()
    np.testing.assert_allclose(written, whole, rtol=1e-5, atol=1e-6, equal_nan=True)
    # the overlap diagnostic per cell-day, where there are effects; the NetCDF copy holds both
    shift = store_out[tiles.SHIFT].values
    assert np.array_equal(np.isnan(shift), np.isnan(written)) and np.nanmin(shift) >= 0
    assert "overlap_r2" in store_out.attrs
    with xr.open_dataset(tmp_path / "copy.nc") as copy:
        np.testing.assert_array_equal(copy[tiles.SHIFT].values, shift)
        np.testing.assert_array_equal(copy["effect"].values, written)
    # the pre-window state and the bounded outcome came from the run's design
    assert (run / "design.json").is_file()
    res = runner.invoke(app, ["effect", str(run), "--scheduler", "tcp://x:1"])
    assert res.exit_code == 2 and "go with --tiles" in res.output


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"climatology": "on"}, "climatology"), ({"stride": 10}, "stride >= window")],
)
def test_kgcm_effect_tiles_refuses_what_it_cannot_tile(fitted, tmp_path, settings, message) -> None:
    from kgcm.experiments.tiled import run_tiled_effect

    _, store, _ = fitted
    run = _fit_run(tmp_path, store, **settings)
    with pytest.raises(ConfigError, match=message):
        run_tiled_effect(run, workers=0, log=lambda m: None)
