"""PIOMAS v2.1 binary reader (headerless files + grid.dat + kmt)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from reader_contract import ReaderContract

import kgcm.readers as readers
import kgcm.readers.piomas as piomas_reader
from kgcm.errors import DataError
from kgcm.readers.schema import CANONICAL
from kgcm.synthetic.products import land, write_product
from kgcm.synthetic.products.piomas import (
    GRID_FILE,
    ICE_FREE_LAT,
    KMT_FILE,
    grid,
    kmt,
    monthly_mean,
    true_fields,
)


def options(files: list[Path]) -> dict[str, Any]:
    """The reader's required options for files written by the PIOMAS writer."""
    return {"grid": files[0].parent / GRID_FILE, "kmt": files[0].parent / KMT_FILE}


class PiomasContract(ReaderContract):
    """The shared contract with ``grid``/``kmt`` passed on every open (PIOMAS files are
    headerless, so the contract's option-less opens are given the model grid files here)."""

    @pytest.fixture(scope="class")
    @classmethod
    def ds(cls, files) -> xr.Dataset:
        return readers.open_dataset(files, **options(files))

    def _check_values(self, ds: xr.Dataset, flow: str) -> None:
        # monthly records are means over the month; daily records are the day's truth
        lat, lon = ds["lat"].values, ds["lon"].values
        ocean = ds["mask"].values.astype(bool)
        times = pd.DatetimeIndex(ds["time"].values)
        for i, t in enumerate(times):
            if ds.attrs["time_step"] == "monthly":
                true = monthly_mean(lat, lon, t, flow=flow)
            else:
                true = {k: v[0] for k, v in true_fields(lat, lon, times[i : i + 1]).items()}
            for name in self.expected:
                got = ds[name].isel(time=i).values
                sel = ocean & np.isfinite(got)
                assert sel.mean() > 0.3, f"{name}: too few valid values"
                np.testing.assert_allclose(
                    got[sel], true[name][sel], atol=self.tolerance[name], err_msg=name
                )

    def test_detected_by_content(self, files, tmp_path) -> None:
        # detection is by name pattern + exact size (a headerless file has no content to check)
        assert readers.detect(files[0]) == self.reader
        same_name = tmp_path / files[0].name
        same_name.write_bytes(files[0].read_bytes())
        assert readers.detect(same_name) == self.reader
        renamed = tmp_path / "renamed.bin"
        renamed.write_bytes(files[0].read_bytes())
        with pytest.raises(DataError, match="no reader recognises"):
            readers.detect(renamed)
        with pytest.raises(DataError, match="known by its name"):
            readers.open_dataset(renamed, product=self.reader, **options(files))

    def test_rigid_rotation_gives_east_north(self) -> None:
        pytest.skip("PIOMAS ice velocity (icevel) is on the separate vector grid: not read")

    def test_select_before_loading(self, files) -> None:
        full = readers.open_dataset(files, **options(files))
        times = full["time"].values
        ds = readers.open_dataset(
            files,
            variables=[self.expected[0]],
            time=(times[1], None),
            region=(70, 90, -180, 180),
            **options(files),
        )
        assert set(ds.data_vars) <= {self.expected[0], "mask"}
        assert ds.sizes["time"] == full.sizes["time"] - 1
        valid = np.isfinite(ds[self.expected[0]].isel(time=0).values)
        assert valid.any() and (ds["lat"].values[valid] >= 70).all()

    def test_missing_variable_is_clear(self, files) -> None:
        have = set(readers.open_dataset(files, **options(files)).data_vars)
        missing = sorted(set(CANONICAL) - have)
        with pytest.raises(DataError, match="has no"):
            readers.open_dataset(files, variables=[missing[0]], **options(files))

    def test_truncated_file_is_named(self, files, tmp_path) -> None:
        bad = tmp_path / files[0].name
        data = files[0].read_bytes()
        bad.write_bytes(data[: len(data) // 2 + 7])
        with pytest.raises(DataError, match=str(bad.name)):
            readers.open_dataset(bad, product=self.reader, **options(files)).load()

    def test_duplicated_times_refused(self, files, tmp_path) -> None:
        copy = tmp_path / files[0].name
        shutil.copy(files[0], copy)
        with pytest.raises(DataError, match="more than once"):
            readers.open_dataset([files[0], copy], product=self.reader, **options(files))


class TestPiomasMonthlyGzip(PiomasContract):
    reader = "piomas"
    write_options = {"kinds": ("heff", "ssh"), "months": 3}
    expected = ("sithick_effective", "zos")
    tolerance = {"sithick_effective": 1e-5, "zos": 1e-6}


class TestPiomasDailyRaw(PiomasContract):
    reader = "piomas"
    write_options = {"kinds": ("hiday",), "days": 3, "compress": False}
    expected = ("sithick_effective",)
    tolerance = {"sithick_effective": 1e-5}


# ---- product-specific ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heff(tmp_path_factory) -> list[Path]:
    return write_product("piomas", tmp_path_factory.mktemp("piomas"), months=2)


@pytest.fixture(scope="module")
def raw_heff(tmp_path_factory) -> list[Path]:
    return write_product("piomas", tmp_path_factory.mktemp("piomas-raw"), months=4, compress=False)


def test_effective_thickness_never_sithick(heff) -> None:
    ds = readers.open_dataset(heff, **options(heff))
    assert "sithick" not in ds
    assert ds["sithick_effective"].attrs["cell_methods"] == "area: mean where sea"
    with pytest.raises(DataError, match="has no"):
        readers.open_dataset(heff, variables=["sithick"], **options(heff))


def test_open_water_zero_is_not_land(heff) -> None:
    ds = readers.open_dataset(heff, **options(heff))
    lat, lon = ds["lat"].values, ds["lon"].values
    is_land = land(lat, lon)
    open_water = (lat < ICE_FREE_LAT) & ~is_land
    assert open_water.any()
    values = ds["sithick_effective"].values
    assert (values[:, open_water] == 0.0).all()  # ocean zeros stay zeros
    assert np.isnan(values[:, is_land]).all()  # land zeros become NaN
    assert (ds["mask"].values[open_water] == 1).all()
    assert (ds["mask"].values[is_land] == 0).all()


def test_without_mask_on_purpose(heff) -> None:
    ds = readers.open_dataset(heff, grid=options(heff)["grid"], kmt=False)
    assert "mask" not in ds
    assert "none" in ds.attrs["land_mask"]
    is_land = land(ds["lat"].values, ds["lon"].values)
    assert (ds["sithick_effective"].values[:, is_land] == 0.0).all()


def test_grid_is_required(heff) -> None:
    with pytest.raises(DataError, match=r"heff\.H2020\.gz: .*grid='.*grid\.dat'"):
        readers.open_dataset(heff, kmt=options(heff)["kmt"])


def test_kmt_or_false_is_required(heff) -> None:
    with pytest.raises(DataError, match=r"kmt='.*io\.dat_360_120\.output'.*kmt=False"):
        readers.open_dataset(heff, grid=options(heff)["grid"])


def test_grid_file_layout(heff, tmp_path) -> None:
    lon, lat = piomas_reader.read_grid(options(heff)["grid"])
    ref_lon, ref_lat = grid()
    np.testing.assert_array_equal(lon, ref_lon)
    np.testing.assert_array_equal(lat, ref_lat)
    first_line = options(heff)["grid"].read_text().splitlines()[0]
    assert len(first_line) == 80  # Fortran (10f8.2)
    pop = tmp_path / "grid.dat.pop"
    pop.write_text(" 1.00" * (7 * 120 * 360))
    with pytest.raises(DataError, match=r"grid\.dat\.pop"):
        readers.open_dataset(heff, grid=pop, kmt=False)
    swapped = tmp_path / "grid.dat"  # latitudes first: the second block is then > 90
    swapped.write_text(" ".join(f"{v:.2f}" for v in np.concatenate([ref_lat, ref_lon]).ravel()))
    with pytest.raises(DataError, match="beyond 90"):
        piomas_reader.read_grid(swapped)


def test_kmt_fixed_width_layout(heff, tmp_path) -> None:
    path = options(heff)["kmt"]
    lines = path.read_text().splitlines()
    assert len(lines) == 120 and all(len(line) == 720 for line in lines)
    assert any(len(line.split()) < 360 for line in lines)  # two-digit fields touch
    lon, lat = grid()
    np.testing.assert_array_equal(piomas_reader.read_kmt(path), kmt(lat, lon))
    bad = tmp_path / KMT_FILE
    bad.write_text("\n".join(" ".join("12" for _ in range(360)) for _ in range(120)))
    with pytest.raises(DataError, match=r"\(360i2\)"):
        piomas_reader.read_kmt(bad)


def test_monthly_stamps_and_bounds(heff) -> None:
    ds = readers.open_dataset(heff, **options(heff))
    assert ds.attrs["time_step"] == "monthly"
    assert list(pd.DatetimeIndex(ds["time"].values)) == [
        pd.Timestamp("2020-01-16 12:00"),
        pd.Timestamp("2020-02-15 12:00"),
    ]
    assert list(pd.DatetimeIndex(ds["time_end"].values)) == [
        pd.Timestamp("2020-02-01"),
        pd.Timestamp("2020-03-01"),
    ]


def test_daily_and_monthly_not_mixed(tmp_path) -> None:
    files = write_product("piomas", tmp_path, kinds=("heff", "hiday"), months=1, days=2)
    with pytest.raises(DataError, match="separate calls"):
        readers.open_dataset(files, **options(files))


def test_open_reads_nothing_and_tasks_read_records(raw_heff, monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    original = piomas_reader._read_records

    def counting(f, first, count):
        calls.append((first, count))
        return original(f, first, count)

    monkeypatch.setattr(piomas_reader, "_read_records", counting)
    ds = readers.open_dataset(raw_heff, chunks={"time": 1}, **options(raw_heff))
    assert calls == []
    assert ds["sithick_effective"].chunks[0] == (1, 1, 1, 1)
    ds["sithick_effective"].isel(time=2).load()
    assert calls == [(2, 1)]


def test_gzip_is_one_task_per_file(heff, monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    original = piomas_reader._read_records

    def counting(f, first, count):
        calls.append((first, count))
        return original(f, first, count)

    monkeypatch.setattr(piomas_reader, "_read_records", counting)
    ds = readers.open_dataset(heff, chunks={"time": 1, "y": 60, "x": 180}, **options(heff))
    assert calls == []
    assert ds["sithick_effective"].chunks == ((1, 1), (60, 60), (180, 180))
    ds["sithick_effective"].load()
    assert calls == [(0, 2)]


def test_size_must_be_whole_records(raw_heff, tmp_path) -> None:
    bad = tmp_path / raw_heff[0].name
    bad.write_bytes(raw_heff[0].read_bytes()[:-10])
    assert not readers.get_reader("piomas").guess_can_open(bad)
    with pytest.raises(DataError, match=r"heff\.H2020: size .* not k whole records"):
        readers.open_dataset(bad, product="piomas", **options(raw_heff))
    thirteen = tmp_path / "heff.H2021"
    thirteen.write_bytes(b"\0" * (13 * 120 * 360 * 4))
    assert not readers.get_reader("piomas").guess_can_open(thirteen)


def test_gzip_uncompressed_size_read_from_trailer(tmp_path) -> None:
    path = tmp_path / "heff.H2019.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(np.zeros((5, 120, 360), "<f4").tobytes())
    info = piomas_reader._inspect(path)
    assert info is not None and info.records == 5 and info.compressed


def test_other_readers_do_not_claim_piomas(heff) -> None:
    claims = [n for n in readers.list_readers() if readers.get_reader(n).guess_can_open(heff[0])]
    assert claims == ["piomas"]
