"""NSIDC-0116 v4.1 ice-motion reader."""

from __future__ import annotations

import shutil

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from reader_contract import ReaderContract

import kgcm.readers as readers
from kgcm.errors import DataError
from kgcm.synthetic.products import land, write_product
from kgcm.synthetic.products.nsidc0116 import NO_ICE_LAT, coastal


class TestNsidc0116(ReaderContract):
    reader = "nsidc-0116"
    write_options = {"n": 21, "days": 3}
    expected = ("usi", "vsi")
    tolerance = {"usi": 1e-6, "vsi": 1e-6}

    def test_select_before_loading(self, files) -> None:
        # the contract asks for expected[0] alone; a vector product gives its pair together
        with pytest.raises(DataError, match=r"ask for both, variables=\['usi', 'vsi'\]"):
            readers.open_dataset(files, variables=["usi"])
        full = readers.open_dataset(files)
        times = full["time"].values
        ds = readers.open_dataset(
            files, variables=["usi", "vsi"], time=(times[1], None), region=(70, 90, -180, 180)
        )
        assert set(ds.data_vars) == {"usi", "vsi"}
        assert ds.sizes["time"] == full.sizes["time"] - 1
        valid = np.isfinite(ds["usi"].isel(time=0).values)
        assert valid.any() and (ds["lat"].values[valid] >= 70).all()


@pytest.fixture(scope="module")
def year_file(tmp_path_factory):
    return write_product("nsidc-0116", tmp_path_factory.mktemp("nsidc"), n=21, days=2)[0]


def _copy(path, tmp_path, edit):
    """A copy of ``path`` (same name) changed in place by ``edit(nc)``."""
    out = tmp_path / path.name
    shutil.copy(path, out)
    with netCDF4.Dataset(out, "a") as nc:
        edit(nc)
    return out


def test_rotation_is_nsidc_formula(year_file) -> None:
    ds = readers.open_dataset(year_file)
    with netCDF4.Dataset(year_file) as nc:
        u = np.ma.filled(nc["u"][:], np.nan) / 100.0
        v = np.ma.filled(nc["v"][:], np.nan) / 100.0
        lon = np.deg2rad(nc["longitude"][:].astype(np.float64))
    ue = u * np.cos(lon) + v * np.sin(lon)
    vn = -u * np.sin(lon) + v * np.cos(lon)
    got_u, got_v = ds["usi"].values, ds["vsi"].values
    ok = np.isfinite(got_u)
    assert ok.mean() > 0.3
    np.testing.assert_allclose(got_u[ok], ue[ok], atol=1e-7)
    np.testing.assert_allclose(got_v[ok], vn[ok], atol=1e-7)


def test_land_coast_and_no_vector_cells_are_nan(year_file) -> None:
    ds = readers.open_dataset(year_file)
    lat, lon = ds["lat"].values, ds["lon"].values
    is_land = land(lat, lon)
    is_coast = coastal(is_land)
    no_vector = (lat < NO_ICE_LAT) & ~is_land & ~is_coast
    ice = ~(is_land | is_coast | no_vector)
    assert is_coast.any() and no_vector.any()
    for name in ("usi", "vsi"):
        values = ds[name].values
        assert np.isnan(values[:, is_land | is_coast | no_vector]).all(), name
        assert np.isfinite(values[:, ice]).all(), name
    assert "mask" not in ds


def test_one_file_per_year_series(tmp_path) -> None:
    files = write_product("nsidc-0116", tmp_path, n=15, start="2020-12-30", days=4)
    assert [f.name for f in files] == [
        "icemotion_daily_nh_25km_20200101_20201231_v4.1.nc",
        "icemotion_daily_nh_25km_20210101_20211231_v4.1.nc",
    ]
    ds = readers.open_dataset(list(reversed(files)))
    assert list(pd.DatetimeIndex(ds["time"].values)) == list(pd.date_range("2020-12-30", periods=4))


def test_julian_calendar_is_mapped_by_date(tmp_path) -> None:
    files = write_product("nsidc-0116", tmp_path, n=15, days=2, calendar="julian")
    ds = readers.open_dataset(files)
    assert list(pd.DatetimeIndex(ds["time"].values)) == list(pd.date_range("2020-01-01", periods=2))


def test_unknown_units_refused(year_file, tmp_path) -> None:
    bad = _copy(year_file, tmp_path, lambda nc: nc["u"].setncattr("units", "km/day"))
    with pytest.raises(DataError, match=r"'u' has units 'km/day'"):
        readers.open_dataset(bad)


def test_units_override(year_file, tmp_path) -> None:
    bad = _copy(year_file, tmp_path, lambda nc: [nc[v].delncattr("units") for v in ("u", "v")])
    with pytest.raises(DataError, match="no 'units' attribute"):
        readers.open_dataset(bad)
    ds = readers.open_dataset(bad, units={"u": "cm/s", "v": "cm/s"})
    ref = readers.open_dataset(year_file)
    xr.testing.assert_allclose(ds["usi"], ref["usi"])


def test_other_central_meridian_refused(year_file, tmp_path) -> None:
    bad = _copy(
        year_file, tmp_path, lambda nc: nc["crs"].setncattr("longitude_of_projection_origin", 45.0)
    )
    with pytest.raises(DataError, match="central meridian 0"):
        readers.open_dataset(bad)


def test_southern_grid_refused(year_file, tmp_path) -> None:
    bad = _copy(
        year_file, tmp_path, lambda nc: nc["crs"].setncattr("latitude_of_projection_origin", -90.0)
    )
    with pytest.raises(DataError, match="northern files"):
        readers.open_dataset(bad)


def test_flipped_x_axis_refused(year_file, tmp_path) -> None:
    def flip(nc: netCDF4.Dataset) -> None:
        for name in ("latitude", "longitude"):
            nc[name][:] = nc[name][:][:, ::-1]

    bad = _copy(year_file, tmp_path, flip)
    with pytest.raises(DataError, match="flipped or transposed"):
        readers.open_dataset(bad)


def test_chunks_by_canonical_dims(year_file) -> None:
    ds = readers.open_dataset(year_file, chunks={"time": 1})
    assert ds["usi"].chunks[0] == (1, 1)
