"""ERA5 single levels from the Climate Data Store: contract, plus the layout traps (two time-dim
names, int16 packing, split instant/accum files, accumulations to fluxes, ensembles, ERA5T)."""

from __future__ import annotations

import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from reader_contract import ReaderContract

import kgcm.readers as readers
from kgcm.errors import DataError
from kgcm.synthetic.products import truth, write_product

ATMOSPHERE = ("tas", "uas", "vas", "psl", "rsds", "rlds")
SMALL = {"ny": 7, "nx": 12, "steps": 24, "steps_per_file": 24}


class TestEra5NewHourly(ReaderContract):
    """CDS since 2024: valid_time, float32, instant and accum in separate files."""

    reader = "era5"
    write_options = {"layout": "new", "ny": 9, "nx": 16, "steps": 30, "steps_per_file": 12}
    expected = ATMOSPHERE
    tolerance = {"tas": 1e-4, "uas": 1e-5, "vas": 1e-5, "psl": 1e-2, "rsds": 1e-4, "rlds": 1e-4}


class TestEra5OldPacked(ReaderContract):
    """Legacy CDS: time, int16 packed per file with _FillValue and missing_value."""

    reader = "era5"
    write_options = {"layout": "old", "ny": 9, "nx": 16, "steps": 12, "freq": "6h",
                     "steps_per_file": 4}  # fmt: skip
    expected = ATMOSPHERE
    tolerance = {"tas": 5e-4, "uas": 5e-4, "vas": 5e-4, "psl": 0.05, "rsds": 5e-3, "rlds": 5e-3}


class TestEra5OldWithEra5T(ReaderContract):
    """Legacy CDS with the expver dimension (ERA5 = 1, ERA5T = 5)."""

    reader = "era5"
    write_options = {"layout": "old", "ny": 9, "nx": 16, "steps": 6, "steps_per_file": 6,
                     "expver": True}  # fmt: skip
    expected = ATMOSPHERE
    tolerance = TestEra5OldPacked.tolerance


class TestEra5DailyInstantaneous(ReaderContract):
    reader = "era5"
    write_options = {"layout": "new", "ny": 9, "nx": 16, "steps": 5, "freq": "D",
                     "steps_per_file": 5, "variables": ("t2m", "u10", "v10", "msl")}  # fmt: skip
    expected = ("tas", "uas", "vas", "psl")
    tolerance = TestEra5NewHourly.tolerance


class TestEra5MonthlyMeans(ReaderContract):
    reader = "era5"
    write_options = {"layout": "old", "ny": 9, "nx": 16, "steps": 4, "freq": "MS",
                     "steps_per_file": 4}  # fmt: skip
    expected = ATMOSPHERE
    tolerance = TestEra5OldPacked.tolerance


def _write(tmp_path: Path, **options) -> list[Path]:
    return write_product("era5", tmp_path, **{**SMALL, **options})


def test_accumulations_become_mean_fluxes(tmp_path) -> None:
    files = _write(tmp_path, layout="new")
    accum = next(f for f in files if "accum" in f.name)
    with netCDF4.Dataset(accum) as nc:
        assert nc["ssrd"].units == "J m**-2"
        stored = np.asarray(nc["strd"][:], dtype=np.float64)[:, ::-1]  # file runs north-south
    ds = readers.open_dataset(files)
    np.testing.assert_allclose(ds["rlds"].values, stored / 3600.0, rtol=1e-6)
    assert ds["rsds"].attrs["units"] == "W m-2"
    assert "3600 s" in ds["rsds"].attrs["kgcm_converted_from"]
    assert ds.attrs["accumulation_seconds"] == 3600.0
    assert ds.attrs["time_step"] == "sub-daily" and ds.attrs["time_interval_hours"] == 1.0
    # latitude comes south to north
    assert (np.diff(ds["lat"].values[:, 0]) > 0).all()


def test_monthly_accumulations_are_per_day(tmp_path) -> None:
    files = _write(tmp_path, layout="new", steps=3, freq="MS", split_streams=False)
    ds = readers.open_dataset(files)
    assert ds.attrs["time_step"] == "monthly" and ds.attrs["accumulation_seconds"] == 86400.0
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values)
    np.testing.assert_allclose(ds["rsds"].values, true["rsds"], atol=1e-3)


def test_legacy_file_is_int16_packed_with_missing_value(tmp_path) -> None:
    (path,) = _write(tmp_path, layout="old")
    with netCDF4.Dataset(path) as nc:
        assert nc.file_format == "NETCDF3_64BIT_OFFSET"
        t2m = nc["t2m"]
        assert t2m.dtype == np.int16 and t2m.missing_value == t2m._FillValue == -32767
        assert nc["time"].units.startswith("hours since 1900")
    ds = readers.open_dataset(path)
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values)
    np.testing.assert_allclose(ds["tas"].values, true["tas"], atol=5e-4)


def test_fill_in_packed_file_is_nan(tmp_path) -> None:
    (src,) = _write(tmp_path / "a", layout="old")
    bad = tmp_path / src.name
    shutil.copy(src, bad)
    with netCDF4.Dataset(bad, "a") as nc:
        nc["t2m"].set_auto_maskandscale(False)
        nc["t2m"][0, 0, 0] = -32767
    ds = readers.open_dataset(bad)
    # the file's first row is the northernmost; the reader's last
    assert np.isnan(ds["tas"].values[0, -1, 0])
    assert np.isfinite(ds["tas"].values[0, :-1]).all()


def test_both_time_dim_names_read_together(tmp_path) -> None:
    """A legacy download (``time``) continued by a new one (``valid_time``)."""
    old = _write(tmp_path / "old", layout="old", variables=("t2m", "msl"))
    new = _write(tmp_path / "new", layout="new", start="2020-01-02", variables=("t2m", "msl"))
    with netCDF4.Dataset(old[0]) as nc:
        assert "time" in nc.dimensions and "valid_time" not in nc.dimensions
    with netCDF4.Dataset(new[0]) as nc:
        assert "valid_time" in nc.dimensions and "time" not in nc.dimensions
    ds = readers.open_dataset(old + new)
    assert ds.sizes["time"] == 48
    assert set(ds.data_vars) == {"tas", "psl"}
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values)
    np.testing.assert_allclose(ds["tas"].values, true["tas"], atol=5e-4)


def test_era5t_steps_are_filled_from_expver_5(tmp_path) -> None:
    files = _write(tmp_path, layout="old", expver=True)
    with netCDF4.Dataset(files[0]) as nc:
        assert nc["t2m"].dimensions == ("time", "expver", "latitude", "longitude")
        assert list(nc["expver"][:]) == [1, 5]
    ds = readers.open_dataset(files)
    assert np.isfinite(ds["tas"].values).all()
    assert ds.attrs["era5_expver"] == "1 5"


def test_new_layout_labels_and_number_are_dropped(tmp_path) -> None:
    ds = readers.open_dataset(_write(tmp_path, layout="new", expver=True))
    assert set(ds.coords) == {"time", "lat", "lon"}
    assert ds.attrs["era5_expver"] == "per-step-labels-not-read"


def test_ensemble_members_are_refused(tmp_path) -> None:
    files = _write(tmp_path, layout="new", ensemble=3, split_streams=False)
    with pytest.raises(DataError, match=r"3 ensemble members .*isel\(number=0\)"):
        readers.open_dataset(files)


def test_daily_accumulations_need_their_period(tmp_path) -> None:
    files = _write(tmp_path, layout="new", steps=4, freq="D", split_streams=False)
    with pytest.raises(DataError, match=r"accumulation_seconds=3600") as info:
        readers.open_dataset(files)
    assert "ssrd" in str(info.value) and files[0].name in str(info.value)
    ds = readers.open_dataset(files, accumulation_seconds=3600)
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values)
    np.testing.assert_allclose(ds["rsds"].values, true["rsds"], atol=1e-3)
    assert ds.attrs["time_step"] == "daily"
    # the instantaneous variables alone need nothing
    assert readers.open_dataset(files, variables=["tas"]).attrs["time_step"] == "daily"


def test_single_step_needs_time_step(tmp_path) -> None:
    files = _write(tmp_path, layout="new", steps=1, split_streams=False)
    with pytest.raises(DataError, match=r"single time step.*time_step='sub-daily'"):
        readers.open_dataset(files)
    ds = readers.open_dataset(files, time_step="sub-daily")
    assert ds.attrs["accumulation_seconds"] == 3600.0


def test_irregular_steps_are_refused(tmp_path) -> None:
    (path,) = _write(tmp_path / "a", layout="new", steps=3, split_streams=False)
    bad = tmp_path / "odd.nc"
    ds = xr.open_dataset(path).load()
    stamps = pd.DatetimeIndex(["2020-01-01 00:00", "2020-01-01 00:40", "2020-01-01 02:00"])
    ds.assign_coords(valid_time=stamps).to_netcdf(bad)
    with pytest.raises(DataError, match="not a whole number of hours"):
        readers.open_dataset(bad)


def test_unknown_accumulation_units_are_refused(tmp_path) -> None:
    (src,) = _write(tmp_path / "a", layout="new", split_streams=False)
    bad = tmp_path / src.name
    shutil.copy(src, bad)
    with netCDF4.Dataset(bad, "a") as nc:
        nc["strd"].units = "kWh m-2"
    with pytest.raises(DataError, match=r"'strd' has units 'kWh m-2'.*J m\*\*-2"):
        readers.open_dataset(bad)
    ds = readers.open_dataset(bad, units={"strd": "J m**-2"})
    assert ds["rlds"].attrs["units"] == "W m-2"


def test_celsius_is_refused_not_guessed(tmp_path) -> None:
    (src,) = _write(tmp_path / "a", layout="new", split_streams=False)
    bad = tmp_path / src.name
    shutil.copy(src, bad)
    with netCDF4.Dataset(bad, "a") as nc:
        nc["t2m"].units = "degC"
    with pytest.raises(DataError, match=r"'t2m' has units 'degC'"):
        readers.open_dataset(bad)


def test_split_files_must_cover_the_same_times(tmp_path) -> None:
    files = _write(tmp_path, layout="new", steps=48)  # two days, instant + accum each
    without_last_accum = [f for f in files if not ("accum" in f.name and "20200102" in f.name)]
    with pytest.raises(DataError, match=r"different times.*stepType-accum"):
        readers.open_dataset(without_last_accum)
    # one stream alone is fine
    instant = [f for f in files if "instant" in f.name]
    assert set(readers.open_dataset(instant).data_vars) == {"tas", "uas", "vas", "psl"}


def test_only_the_instant_file_is_needed_for_instant_variables(tmp_path) -> None:
    files = _write(tmp_path, layout="new", steps=48)
    ds = readers.open_dataset(files, variables=["tas", "psl"])
    assert set(ds.data_vars) == {"tas", "psl"} and ds.sizes["time"] == 48


def test_files_on_different_grids_are_refused(tmp_path) -> None:
    a = _write(tmp_path / "a", layout="new", split_streams=False)
    b = _write(tmp_path / "b", layout="new", split_streams=False, start="2020-01-02", nx=10)
    with pytest.raises(DataError, match="longitude differs"):
        readers.open_dataset(a + b)


def test_forecast_layout_is_refused(tmp_path) -> None:
    (src,) = _write(tmp_path / "a", layout="new", split_streams=False, steps=2)
    bad = tmp_path / "forecast.nc"
    ds = xr.open_dataset(src).load()
    ds = ds.expand_dims(forecast_period=[1]).transpose("valid_time", "forecast_period", ...)
    ds.to_netcdf(bad)
    with pytest.raises(DataError, match="forecast start and step"):
        readers.open_dataset(bad, product="era5")


def test_unknown_option_is_refused(tmp_path) -> None:
    files = _write(tmp_path, layout="new", split_streams=False)
    with pytest.raises(DataError, match="accumulation_seconds and time_step"):
        readers.open_dataset(files, central_meridian=0.0)
    with pytest.raises(DataError, match="time_step must be one of"):
        readers.open_dataset(files, time_step="hourly")


def test_glorys_files_are_not_claimed(tmp_path) -> None:
    files = write_product("cmems-glorys12", tmp_path, ny=6, nx=8, days=2, days_per_file=2)
    assert readers.detect(files[0]) == "cmems-glorys12"
