"""ECMWF ORAS5 reader: contract, plus land stored as 0, the mesh mask, multi-file merging and
rotation on the twisted ORCA-like grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
from reader_contract import ReaderContract

import kgcm.readers as readers
from kgcm.errors import DataError
from kgcm.readers.geometry import grid_angle, grid_angle_cartesian, polar_stereographic_angle
from kgcm.synthetic.products import land, truth, write_product
from kgcm.synthetic.products.oras5 import grid

SMALL = {"ny": 12, "nx": 14, "months": 2}


class TestOras5(ReaderContract):
    reader = "oras5"
    write_options = {"ny": 16, "nx": 20, "months": 2}
    expected = ("sithick", "zos", "siconc", "uo", "vo", "usi", "vsi")
    tolerance = {"sithick": 1e-5, "zos": 1e-5, "siconc": 1e-5}


def _write(tmp_path: Path, **options) -> list[Path]:
    return write_product("oras5", tmp_path, **{**SMALL, **options})


def _data_files(files: list[Path]) -> list[Path]:
    return [f for f in files if f.name != "mesh_mask.nc"]


def test_product_file_names_and_detection(tmp_path) -> None:
    files = _write(tmp_path, variables=("sossheig", "vozocrtx"), start="2014-12")
    names = sorted(f.name for f in files)
    assert names == [
        "mesh_mask.nc",
        "sossheig_control_monthly_highres_2D_201412_CONS_v0.1.nc",
        "sossheig_control_monthly_highres_2D_201501_OPER_v0.1.nc",
        "vozocrtx_control_monthly_highres_3D_201412_CONS_v0.1.nc",
        "vozocrtx_control_monthly_highres_3D_201501_OPER_v0.1.nc",
    ]
    # the mesh mask is ORAS5 content too (so a directory glob works), and no one else's
    assert {readers.detect(f) for f in files} == {"oras5"}
    ds = readers.open_dataset(str(tmp_path / "*.nc"), variables=["zos"])
    assert ds.sizes["time"] == 2


def test_time_stamps_are_the_products_month_centres(tmp_path) -> None:
    files = _write(tmp_path, variables=("iicethic",), start="2020-01", months=3)
    ds = readers.open_dataset(files)
    assert ds.attrs["time_step"] == "monthly"
    expected = pd.DatetimeIndex(["2020-01-16 12:00", "2020-02-15 12:00", "2020-03-16 12:00"])
    assert (pd.DatetimeIndex(ds["time"].values) == expected).all()


def test_land_zero_is_masked_and_open_water_zero_is_kept(tmp_path) -> None:
    files = _write(tmp_path, open_water_lat=72.0, variables=("iicethic", "ileadfra", "sossheig"))
    sit_file = next(f for f in files if f.name.startswith("iicethic"))
    with netCDF4.Dataset(sit_file) as nc:
        stored = np.asarray(nc["iicethic"][0])
        lat, lon = nc["nav_lat"][:], nc["nav_lon"][:]
    is_land = land(lat, lon)
    open_water = ~is_land & (lat < 72.0)
    assert is_land.any() and open_water.any()
    assert (stored[is_land] == 0).all()  # the trap: land written as 0, not as fill
    assert (stored[open_water] == 0).all()

    ds = readers.open_dataset(files)
    sit = ds["sithick"].isel(time=0).values
    assert np.isnan(sit[is_land]).all()
    assert (sit[open_water] == 0).all()  # open-ocean 0 survives as 0
    assert (ds["siconc"].isel(time=0).values[open_water] == 0).all()
    assert (ds["mask"].values == (~is_land).astype(np.int8)).all()


def test_mesh_mask_is_required(tmp_path) -> None:
    files = _write(tmp_path, variables=("iicethic",))
    data, mesh = _data_files(files), tmp_path / "mesh_mask.nc"
    with pytest.raises(DataError, match="land cannot be told from ice-free ocean") as info:
        readers.open_dataset(data)
    assert data[0].name in str(info.value) and "mesh_mask" in str(info.value)
    by_option = readers.open_dataset(data, mesh_mask=mesh)
    among_paths = readers.open_dataset(files)
    assert by_option["sithick"].equals(among_paths["sithick"])
    with pytest.raises(DataError, match="give one"):
        readers.open_dataset(files, mesh_mask=mesh)
    with pytest.raises(DataError, match="only a mesh mask"):
        readers.open_dataset([mesh])


def test_mesh_mask_of_another_grid_is_refused(tmp_path) -> None:
    files = _write(tmp_path / "a", variables=("iicethic",))
    other = _write(tmp_path / "b", variables=("iicethic",), ny=8, nx=8, months=1)
    with pytest.raises(DataError, match="differs from the mesh mask"):
        readers.open_dataset(_data_files(files), mesh_mask=other[-1])
    twisted = _write(tmp_path / "c", variables=("iicethic",), twist=0.6, months=1)
    with pytest.raises(DataError, match="another grid"):
        readers.open_dataset(_data_files(files), mesh_mask=twisted[-1])


def test_one_variable_per_file_is_merged_by_variable_and_time(tmp_path) -> None:
    files = _write(tmp_path, variables=("iicethic", "sossheig"), months=3)
    shuffled = [files[-1], *reversed(files[:-1])]
    ds = readers.open_dataset(shuffled)
    assert set(ds.data_vars) == {"sithick", "zos", "mask"}
    assert ds.sizes["time"] == 3
    assert pd.DatetimeIndex(ds["time"].values).is_monotonic_increasing
    assert ds.attrs["n_source_files"] == 7
    # one variable missing a month is refused, not padded with NaN
    incomplete = [
        f for f in files if not f.name.startswith("sossheig_control_monthly_highres_2D_202002")
    ]
    with pytest.raises(DataError, match=r"only in the second: \['2020-02'\]"):
        readers.open_dataset(incomplete)


def test_surface_level_is_used(tmp_path) -> None:
    files = _write(tmp_path, variables=("vozocrtx", "vomecrty"), months=1)
    with netCDF4.Dataset(files[0]) as nc:
        assert nc["vozocrtx"].dimensions == ("time_counter", "depthu", "y", "x")
        assert nc["vozocrtx"].shape[1] == 2
    ds = readers.open_dataset(files)
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values)
    sel = ds["mask"].values.astype(bool)
    np.testing.assert_allclose(ds["uo"].values[0][sel], true["uo"][0][sel], atol=1e-3)


def test_rotation_on_the_twisted_grid(tmp_path) -> None:
    """Rigid flow: the stored i/j components are far from east/north and the grid's angle
    differs from a plain polar stereographic grid's, so the rotation really is exercised."""
    files = _write(tmp_path, flow="rigid", variables=("iicevelu", "iicevelv"), months=1)
    ds = readers.open_dataset(files)
    with netCDF4.Dataset(files[0]) as nc:
        stored = np.asarray(nc["iicevelu"][0])
    _, lon, angle = grid(SMALL["ny"], SMALL["nx"])
    twist = np.angle(np.exp(1j * (angle - polar_stereographic_angle(lon, -80.0))))
    assert np.ptp(twist) > 0.5  # spatially varying extra twist
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values, flow="rigid")
    sel = ds["mask"].values.astype(bool)
    assert np.abs(stored[sel] - true["usi"][0][sel]).max() > 0.1
    for name in ("usi", "vsi"):
        np.testing.assert_allclose(ds[name].values[0][sel], true[name][0][sel], atol=5e-4)


def test_grid_angle_is_accurate_next_to_the_pole() -> None:
    lat, lon, angle = grid(16, 20)
    near_pole = lat > 85.0
    assert near_pole.any()
    err_cartesian = np.abs(np.angle(np.exp(1j * (grid_angle_cartesian(lat, lon) - angle))))
    err_latlon = np.abs(np.angle(np.exp(1j * (grid_angle(lat, lon) - angle))))
    assert err_cartesian.max() < 1e-3
    assert err_latlon[near_pole].max() > 10 * err_cartesian[near_pole].max()


def test_unknown_units_are_refused(tmp_path) -> None:
    files = _write(tmp_path / "a", variables=("sossheig",), months=1)
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    copies = [tmp_path / f.name for f in files]
    with netCDF4.Dataset(copies[0], "a") as nc:
        nc["sossheig"].units = "furlongs"
    with pytest.raises(DataError, match=r"'sossheig' has units 'furlongs'") as info:
        readers.open_dataset(copies)
    assert copies[0].name in str(info.value)
    assert "zos" in readers.open_dataset(copies, units={"sossheig": "m"})


def test_half_a_vector_is_refused(tmp_path) -> None:
    files = _write(tmp_path, variables=("iicethic", "iicevelu"), months=1)
    with pytest.raises(DataError, match="iicevelv"):
        readers.open_dataset(files)
