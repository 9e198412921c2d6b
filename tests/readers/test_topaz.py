"""CMEMS Arctic TOPAZ4 reader: contract, plus the grid-relative vector traps."""

from __future__ import annotations

import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from reader_contract import ReaderContract

import kgcm.readers as readers
from kgcm.errors import DataError
from kgcm.synthetic.products import truth, write_product

SMALL = {"ny": 10, "nx": 10, "spacing_km": 300.0, "days": 2}


class TestTopaz(ReaderContract):
    reader = "cmems-topaz"
    write_options = {"ny": 14, "nx": 14, "spacing_km": 250.0, "days": 3}
    expected = ("sithick", "siconc", "zos", "uo", "vo", "usi", "vsi")
    tolerance = {name: 1e-5 for name in expected}


class TestTopazMultiDayFiles(ReaderContract):
    reader = "cmems-topaz"
    write_options = {
        "ny": 12,
        "nx": 12,
        "spacing_km": 300.0,
        "days": 4,
        "days_per_file": 2,
        "xy_units": "km",
        "variables": ("sithick", "vxsi", "vysi"),
    }
    expected = ("sithick", "usi", "vsi")
    tolerance = {name: 1e-5 for name in expected}


def _write(tmp_path: Path, **options) -> list[Path]:
    return write_product("cmems-topaz", tmp_path, **{**SMALL, **options})


def _assert_matches_truth(ds, flow: str, names=("usi", "vsi", "uo", "vo")) -> None:
    true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values, flow=flow)
    ocean = ds["mask"].values.astype(bool)[None]
    for name in names:
        got = ds[name].values
        sel = ocean & np.isfinite(got)
        assert sel.mean() > 0.3
        np.testing.assert_allclose(got[sel], np.broadcast_to(true[name], got.shape)[sel], atol=1e-5)


def test_fixture_lat_lon_follow_the_projection(tmp_path) -> None:
    pyproj = pytest.importorskip("pyproj")
    (path,) = _write(tmp_path, days=1)
    with netCDF4.Dataset(path) as nc:
        gm = nc["stereographic"]
        assert gm.grid_mapping_name == "polar_stereographic"
        assert gm.straight_vertical_longitude_from_pole == -45.0
        assert nc["x"].units == "100 km"
        x = nc["x"][:] * 1e5
        y = nc["y"][:] * 1e5
        lat, lon = nc["latitude"][:], nc["longitude"][:]
        proj = pyproj.Proj(gm.proj4)
    xx, yy = np.meshgrid(x, y)
    lon_p, lat_p = proj(xx, yy, inverse=True)
    np.testing.assert_allclose(lat, lat_p, atol=1e-4)
    np.testing.assert_allclose(
        np.exp(1j * np.deg2rad(lon)), np.exp(1j * np.deg2rad(lon_p)), atol=1e-5
    )


def test_rigid_flow_needs_nontrivial_rotation(tmp_path) -> None:
    """The files' x/y components are far from east/north, so an unrotated read would fail."""
    files = _write(tmp_path, flow="rigid")
    ds = readers.open_dataset(files)
    with netCDF4.Dataset(files[0]) as nc:
        stored = np.ma.filled(nc["vxsi"][0], np.nan)
        lon = nc["longitude"][:]
    angle = -np.deg2rad(lon + 45.0)
    assert np.ptp(np.angle(np.exp(1j * angle))) > np.pi  # angles all round the pole
    east = ds["usi"].isel(time=0).values
    sel = np.isfinite(east)
    assert np.nanmax(np.abs(stored[sel] - east[sel])) > 0.1
    _assert_matches_truth(ds, "rigid")


def test_missing_grid_mapping_is_refused_unless_meridian_given(tmp_path) -> None:
    files = _write(tmp_path, grid_mapping=False, flow="rigid")
    with pytest.raises(DataError, match=r"central_meridian=.*-45") as info:
        readers.open_dataset(files)
    assert files[0].name in str(info.value) and "vxsi" in str(info.value)
    # scalars need no meridian
    assert "sithick" in readers.open_dataset(files, variables=["sithick"])
    _assert_matches_truth(readers.open_dataset(files, central_meridian=-45.0), "rigid")


def test_wrong_meridian_is_caught_by_the_lat_lon_grid(tmp_path) -> None:
    files = _write(tmp_path, grid_mapping=False)
    with pytest.raises(DataError, match="median mismatch"):
        readers.open_dataset(files, central_meridian=0.0)


def test_meridian_disagreeing_with_the_file_is_refused(tmp_path) -> None:
    files = _write(tmp_path)
    with pytest.raises(DataError, match="disagrees with the file's grid mapping"):
        readers.open_dataset(files, central_meridian=0.0)
    assert readers.open_dataset(files, central_meridian=-45.0).attrs["reader"] == "cmems-topaz"


def test_unknown_units_are_refused(tmp_path) -> None:
    (path,) = _write(tmp_path / "a", days=1)
    bad = tmp_path / path.name
    shutil.copy(path, bad)
    with netCDF4.Dataset(bad, "a") as nc:
        nc["vxsi"].units = "knots"
    with pytest.raises(DataError, match=r"'vxsi' has units 'knots'") as info:
        readers.open_dataset(bad)
    assert bad.name in str(info.value)
    ds = readers.open_dataset(bad, units={"vxsi": "m s-1"})
    assert ds["usi"].attrs["units"] == "m s-1"


def test_half_a_vector_is_refused(tmp_path) -> None:
    files = _write(tmp_path, variables=("sithick", "vxsi"))
    with pytest.raises(DataError, match="vysi"):
        readers.open_dataset(files)
    assert set(readers.open_dataset(files, variables=["sithick"]).data_vars) == {"sithick", "mask"}


def test_unknown_option_is_refused(tmp_path) -> None:
    files = _write(tmp_path, days=1)
    with pytest.raises(DataError, match="central_meridian"):
        readers.open_dataset(files, mesh_mask="x.nc")
