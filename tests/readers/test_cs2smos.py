"""CS2SMOS weekly merged thickness reader."""

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
from kgcm.synthetic.products.cs2smos import window_mean, window_starts


class TestCs2Smos(ReaderContract):
    reader = "cs2smos"
    write_options = {"n": 24, "windows": 3, "stride": 7}
    expected = ("sithick", "siconc")
    tolerance = {"sithick": 6e-4, "siconc": 1e-4}

    def _check_values(self, ds: xr.Dataset, flow: str) -> None:
        # a step is the truth averaged over its window [time_start, time_end), not a point value
        lat, lon = ds["lat"].values, ds["lon"].values
        ocean = ds["mask"].values.astype(bool)
        for i, first in enumerate(pd.DatetimeIndex(ds["time_start"].values)):
            true = window_mean(lat, lon, first, flow=flow)
            for name in self.expected:
                got = ds[name].isel(time=i).values
                sel = ocean & np.isfinite(got)
                assert sel.mean() > 0.3, f"{name}: too few valid values"
                np.testing.assert_allclose(
                    got[sel], true[name][sel], atol=self.tolerance[name], err_msg=name
                )


@pytest.fixture(scope="module")
def weekly(tmp_path_factory):
    return write_product("cs2smos", tmp_path_factory.mktemp("cs2smos"), n=16, windows=2)


def _copy(path, tmp_path, edit):
    out = tmp_path / path.name
    shutil.copy(path, out)
    with netCDF4.Dataset(out, "a") as nc:
        edit(nc)
    return out


def test_time_is_window_centre_with_bounds(weekly) -> None:
    ds = readers.open_dataset(weekly)
    assert ds.attrs["time_step"] == "7-day"
    start = pd.DatetimeIndex(ds["time_start"].values)
    end = pd.DatetimeIndex(ds["time_end"].values)
    assert list(start) == [pd.Timestamp("2020-10-26"), pd.Timestamp("2020-11-02")]
    assert ((end - start) == pd.Timedelta(days=7)).all()
    assert (pd.DatetimeIndex(ds["time"].values) == start + pd.Timedelta(hours=84)).all()
    # the bounds follow a time selection
    sub = readers.open_dataset(weekly, time=("2020-11-01", None))
    assert list(pd.DatetimeIndex(sub["time_start"].values)) == [pd.Timestamp("2020-11-02")]


def test_running_windows_overlap(tmp_path) -> None:
    files = write_product("cs2smos", tmp_path, n=12, windows=3, stride=1)
    ds = readers.open_dataset(files)
    assert list(pd.DatetimeIndex(ds["time_start"].values)) == list(
        pd.date_range("2020-10-26", periods=3)
    )
    assert "overlap" in ds.attrs["time_window"]


def test_no_summer_windows() -> None:
    starts = window_starts("2021-04-17", 3, 7)
    assert starts[:2] == [pd.Timestamp("2021-04-17"), pd.Timestamp("2021-04-24")]
    assert starts[2] == pd.Timestamp("2021-10-02")  # Apr 24 + 23 weeks: first all-October window


def test_land_fill_and_mask_from_concentration(weekly) -> None:
    ds = readers.open_dataset(weekly, variables=["sithick"])
    is_land = land(ds["lat"].values, ds["lon"].values)
    assert set(ds.data_vars) == {"sithick", "mask"}
    assert (ds["mask"].values == ~is_land).all()
    assert np.isnan(ds["sithick"].values[:, is_land]).all()


def test_old_variable_names(weekly, tmp_path) -> None:
    def rename(nc: netCDF4.Dataset) -> None:
        nc.renameVariable("analysis_sea_ice_thickness", "analysis_ice_thickness")
        nc.renameVariable("sea_ice_concentration", "ice_conc")

    old = _copy(weekly[0], tmp_path, rename)
    assert readers.detect(old) == "cs2smos"
    ds = readers.open_dataset(old)
    ref = readers.open_dataset(weekly[0])
    xr.testing.assert_allclose(ds["sithick"], ref["sithick"])


def test_window_not_seven_days_refused(weekly, tmp_path) -> None:
    def monthly(nc: netCDF4.Dataset) -> None:
        nc["time_bnds"][0, 1] = nc["time_bnds"][0, 0] + 30 * 86400

    bad = _copy(weekly[0], tmp_path, monthly)
    with pytest.raises(DataError, match="not 7 days"):
        readers.open_dataset(bad)


def test_inclusive_end_second_accepted(weekly, tmp_path) -> None:
    def inclusive(nc: netCDF4.Dataset) -> None:
        nc["time_bnds"][0, 1] = nc["time_bnds"][0, 1] - 1

    ds = readers.open_dataset(_copy(weekly[0], tmp_path, inclusive))
    assert pd.Timestamp(ds["time_end"].values[0]) == pd.Timestamp("2020-11-02")


def test_missing_time_bnds_refused(weekly, tmp_path) -> None:
    bad = _copy(weekly[0], tmp_path, lambda nc: nc.renameVariable("time_bnds", "window"))
    with pytest.raises(DataError, match="no time_bnds"):
        readers.open_dataset(bad, product="cs2smos")


def test_not_claimed_by_other_readers(weekly, tmp_path) -> None:
    # another product's file is not claimed by this reader
    glorys = write_product("cmems-glorys12", tmp_path, ny=4, nx=6, days=1)[0]
    assert not readers.get_reader("cs2smos").guess_can_open(glorys)
