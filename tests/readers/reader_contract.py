"""One contract test class that every reader's test subclasses.

A subclass sets ``reader`` (registry name) and ``write_options`` (for
:func:`kgcm.synthetic.products.write_product`), and may set ``tolerance`` (packing precision) and
``expected`` (canonical variables it must return). The shared tests check detection by content,
the canonical schema, laziness, values against the known truth (which covers vector rotation,
unit conversion, packing and fill), selection before loading, and clear errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import kgcm.readers as readers
from kgcm.errors import DataError
from kgcm.readers.schema import CANONICAL, check_canonical
from kgcm.synthetic.products import land, truth, write_product


class ReaderContract:
    reader: ClassVar[str] = ""
    write_options: ClassVar[dict[str, Any]] = {}
    expected: ClassVar[tuple[str, ...]] = ()
    tolerance: ClassVar[dict[str, float]] = {}
    #: tests that compare with truth(): the true time of each step (products with 7-day or
    #: monthly steps override to describe what one step averages; None skips value checks)
    compare_values: ClassVar[bool] = True

    # ---- fixtures --------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def files(cls, tmp_path_factory) -> list[Path]:
        return write_product(cls.reader, tmp_path_factory.mktemp(cls.reader), **cls.write_options)

    @pytest.fixture(scope="class")
    @classmethod
    def rigid_files(cls, tmp_path_factory) -> list[Path]:
        directory = tmp_path_factory.mktemp(cls.reader + "-rigid")
        return write_product(cls.reader, directory, **{**cls.write_options, "flow": "rigid"})

    @pytest.fixture(scope="class")
    @classmethod
    def ds(cls, files) -> xr.Dataset:
        return readers.open_dataset(files)

    # ---- detection -------------------------------------------------------------------------
    def test_detected_by_content(self, files, tmp_path) -> None:
        assert readers.detect(files[0]) == self.reader
        # content, not the name: a renamed copy is still recognised
        renamed = tmp_path / "renamed.bin"
        renamed.write_bytes(files[0].read_bytes())
        assert readers.detect(renamed) == self.reader

    def test_listed(self) -> None:
        assert self.reader in readers.list_readers()

    # ---- schema ----------------------------------------------------------------------------
    def test_canonical_schema(self, ds) -> None:
        check_canonical(ds)
        assert set(self.expected) <= set(ds.data_vars)
        for name in ds.data_vars:
            if name in CANONICAL:
                assert ds[name].attrs["standard_name"] == CANONICAL[name].standard_name
                assert ds[name].attrs["units"] == CANONICAL[name].units
        assert ds.attrs["reader"] == self.reader
        assert ds.attrs["n_source_files"] >= 1
        assert ds.attrs["time_step"] in ("sub-daily", "daily", "7-day", "monthly")
        assert pd.DatetimeIndex(ds["time"].values).is_monotonic_increasing

    def test_lazy(self, ds) -> None:
        for name in self.expected:
            assert ds[name].chunks is not None, f"{name} was loaded eagerly"

    # ---- values ----------------------------------------------------------------------------
    def _check_values(self, ds: xr.Dataset, flow: str) -> None:
        if not self.compare_values:
            pytest.skip("this product's steps are not point values of the truth")
        true = truth(ds["lat"].values, ds["lon"].values, ds["time"].values, flow=flow)
        ocean = (
            ds["mask"].values.astype(bool)
            if "mask" in ds
            else ~land(ds["lat"].values, ds["lon"].values)
        )
        for name in self.expected:
            if name not in true:
                continue
            got = ds[name].values
            tol = self.tolerance.get(name, 1e-3)
            sel = ocean[None] & np.isfinite(got)
            assert sel.mean() > 0.3, f"{name}: too few valid values"
            np.testing.assert_allclose(
                got[sel], np.broadcast_to(true[name], got.shape)[sel], atol=tol, err_msg=name
            )

    def test_values_match_truth(self, ds) -> None:
        self._check_values(ds, "default")

    def test_rigid_rotation_gives_east_north(self, rigid_files) -> None:
        ds = readers.open_dataset(rigid_files)
        pairs = [p for p in (("uo", "vo"), ("usi", "vsi")) if p[0] in ds]
        if not pairs:
            pytest.skip("no velocities in this product")
        self._check_values(ds, "rigid")

    def test_land_is_masked(self, ds) -> None:
        if "mask" not in ds:
            pytest.skip("product has no land mask")
        is_land = land(ds["lat"].values, ds["lon"].values)
        mask = ds["mask"].values
        assert mask.dtype == np.int8
        assert (mask[is_land] == 0).all()
        for name in self.expected:
            assert np.isnan(ds[name].values[:, is_land]).all(), f"{name}: land not NaN"

    # ---- selection -------------------------------------------------------------------------
    def test_select_before_loading(self, files) -> None:
        full = readers.open_dataset(files)
        times = full["time"].values
        ds = readers.open_dataset(
            files, variables=[self.expected[0]], time=(times[1], None), region=(70, 90, -180, 180)
        )
        assert set(ds.data_vars) <= {self.expected[0], "mask"}
        assert ds.sizes["time"] == full.sizes["time"] - 1
        if "y" in ds.dims:
            valid = np.isfinite(ds[self.expected[0]].isel(time=0).values)
            assert (ds["lat"].values[valid] >= 70).all()

    def test_missing_variable_is_clear(self, files) -> None:
        missing = sorted(set(CANONICAL) - set(readers.open_dataset(files).data_vars))
        if not missing:
            pytest.skip("product has every canonical variable")
        with pytest.raises(DataError, match="has no"):
            readers.open_dataset(files, variables=[missing[0]])

    def test_truncated_file_is_named(self, files, tmp_path) -> None:
        bad = tmp_path / files[0].name
        data = files[0].read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError, match=str(bad.name)):
            readers.open_dataset(bad, product=self.reader).load()

    def test_duplicated_times_refused(self, files) -> None:
        with pytest.raises(DataError):
            readers.open_dataset([files[0], files[0]], product=self.reader)
