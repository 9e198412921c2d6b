"""CMEMS GLORYS12 reader."""

from __future__ import annotations

from reader_contract import ReaderContract

import kgcm.readers as readers


class TestGlorys12Packed(ReaderContract):
    reader = "cmems-glorys12"
    write_options = {"ny": 12, "nx": 24, "days": 4}
    expected = ("sithick", "siconc", "zos", "uo", "vo", "usi", "vsi")
    tolerance = {"sithick": 6e-4, "zos": 2e-4, "uo": 4e-4, "vo": 4e-4}


class TestGlorys12Float(ReaderContract):
    reader = "cmems-glorys12"
    write_options = {"ny": 10, "nx": 20, "days": 3, "days_per_file": 3, "packed": False}
    expected = ("sithick", "zos", "uo", "vo")
    tolerance = {name: 1e-6 for name in expected}


def test_overlapping_files_refused(tmp_path) -> None:
    import pytest

    from kgcm.errors import DataError
    from kgcm.synthetic.products import write_product

    a = write_product("cmems-glorys12", tmp_path / "a", ny=6, nx=8, days=3, days_per_file=3)
    b = write_product(
        "cmems-glorys12", tmp_path / "b", start="2020-01-03", ny=6, nx=8, days=3, days_per_file=3
    )
    with pytest.raises(DataError, match="appear more than once"):
        readers.open_dataset(a + b)


def test_top_level_open_dataset_and_unknown_file(tmp_path) -> None:
    import pytest

    import kgcm
    from kgcm.errors import DataError

    assert kgcm.open_dataset is readers.open_dataset
    assert "cmems-glorys12" in kgcm.list_readers()
    odd = tmp_path / "notes.nc"
    odd.write_text("not a product")
    with pytest.raises(DataError, match=r"no reader recognises this file\. Known readers:") as err:
        kgcm.open_dataset(odd)
    for name in readers.list_readers():
        assert name in str(err.value)
    assert "product='<name>'" in str(err.value)
    with pytest.raises(DataError, match=r"unknown product reader .cmems-glorys.*Did you mean"):
        kgcm.open_dataset(odd, product="cmems-glorys")


def test_polygon_region(tmp_path) -> None:
    import numpy as np

    from kgcm.synthetic.products import write_product

    files = write_product("cmems-glorys12", tmp_path, ny=12, nx=24, days=2, days_per_file=2)
    # a triangle of (lon, lat) vertices, over ocean in the fixture
    triangle = [(-60.0, 70.0), (-20.0, 70.0), (-40.0, 85.0)]
    ds = readers.open_dataset(files, region=triangle, variables=["zos"])
    from matplotlib.path import Path as MplPath

    inside = (
        MplPath(np.array(triangle))
        .contains_points(np.column_stack([ds["lon"].values.ravel(), ds["lat"].values.ravel()]))
        .reshape(ds["lat"].shape)
    )
    valid = np.isfinite(ds["zos"].isel(time=0).values)
    assert valid.any() and not (valid & ~inside).any()
    assert (ds["mask"].values[~inside] == 0).all()
