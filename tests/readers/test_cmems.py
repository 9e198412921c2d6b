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
