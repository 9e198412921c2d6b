"""The paper's CSV reader: detection by columns, canonical series, the speed check, one parser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kgcm.readers as readers
from kgcm.errors import DataError, InputError
from kgcm.readers.paper_csv import COLUMNS, check_speed, read_paper_csv
from kgcm.readers.schema import CANONICAL, check_canonical
from kgcm.synthetic.paper import load_series, standin_series

NAME = "arctic_s2s_multivar_2020_2024.csv"


@pytest.fixture(scope="module")
def standin() -> pd.DataFrame:
    return standin_series(n_days=90)


@pytest.fixture(scope="module")
def paper_file(tmp_path_factory, standin) -> Path:
    path = tmp_path_factory.mktemp("paper") / NAME
    standin.reset_index().to_csv(path, index=False)
    return path


def write(tmp_path: Path, frame: pd.DataFrame, name: str = NAME) -> Path:
    path = tmp_path / name
    frame.reset_index().to_csv(path, index=False)
    return path


# ---- detection and schema --------------------------------------------------------------------


def test_detected_by_content(paper_file, tmp_path) -> None:
    assert "paper-csv" in readers.list_readers()
    assert readers.detect(paper_file) == "paper-csv"
    renamed = tmp_path / "renamed.dat"
    renamed.write_bytes(paper_file.read_bytes())
    assert readers.detect(renamed) == "paper-csv"


def test_not_claimed_when_columns_differ(tmp_path, standin) -> None:
    reader = readers.get_reader("paper-csv")
    extra = standin.assign(extra=1.0)
    assert not reader.guess_can_open(write(tmp_path, extra, "extra.csv"))
    assert not reader.guess_can_open(write(tmp_path, standin.drop(columns="zos"), "less.csv"))
    binary = tmp_path / "bin.nc"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe")
    assert not reader.guess_can_open(binary)


def test_canonical_series(paper_file, standin) -> None:
    ds = readers.open_dataset(paper_file)
    check_canonical(ds)
    assert dict(ds.sizes) == {"time": 90}
    assert set(ds.data_vars) == {"uo", "vo", "zos", "sithick"}
    for name in ds.data_vars:
        assert ds[name].attrs["units"] == CANONICAL[name].units
        assert ds[name].attrs["standard_name"] == CANONICAL[name].standard_name
    np.testing.assert_allclose(ds["uo"].values, standin["uoe"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(ds["vo"].values, standin["von"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(ds["sithick"].values, standin["sithick"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(ds["total_vel"].values, standin["total_vel"].to_numpy())
    assert ds["total_vel"].attrs["units"] == "m s-1"
    assert ds.attrs["reader"] == "paper-csv" and ds.attrs["speed_check"] == "bound"
    assert ds.attrs["time_step"] == "daily" and ds.attrs["n_missing"] == 0
    assert ds["time"].dtype == np.dtype("datetime64[ns]")


def test_selection(paper_file) -> None:
    ds = readers.open_dataset(paper_file, variables=["zos"], time=("2020-01-11", None))
    assert list(ds.data_vars) == ["zos"] and ds.sizes["time"] == 80
    assert "total_vel" in ds.coords
    with pytest.raises(DataError, match="has no"):
        readers.open_dataset(paper_file, variables=["siconc"])
    with pytest.raises(DataError, match="no region to select"):
        readers.open_dataset(paper_file, region=(70, 90, -180, 180))
    with pytest.raises(DataError, match=r"paper-csv has no options \['fill'\]"):
        readers.open_dataset(paper_file, fill="interpolate")


# ---- one parser ------------------------------------------------------------------------------


def test_load_series_uses_the_same_parser(paper_file) -> None:
    frame = read_paper_csv(paper_file)
    series = load_series(paper_file)
    pd.testing.assert_frame_equal(series, frame)
    assert list(series.columns) == list(COLUMNS)
    assert series.attrs["source"] == str(paper_file)


def test_any_date_column_name(tmp_path, standin) -> None:
    frame = standin.reset_index().rename(columns={"time": "Unnamed: 0"})
    path = tmp_path / "unnamed.csv"
    frame.to_csv(path, index=False)
    assert readers.detect(path) == "paper-csv"
    assert read_paper_csv(path).attrs["date_column"] == "Unnamed: 0"


def test_units_override(tmp_path, standin) -> None:
    path = write(tmp_path, standin.assign(zos=standin["zos"] * 100))
    ds = readers.open_dataset(path, units={"zos": "cm"})
    np.testing.assert_allclose(ds["zos"].values, standin["zos"].to_numpy(), atol=1e-12)
    with pytest.raises(DataError, match=r"units given for \['ssh'\]"):
        read_paper_csv(path, units={"ssh": "cm"})


# ---- the speed check -------------------------------------------------------------------------


def test_speed_below_mean_velocity_refused(tmp_path, standin) -> None:
    bad = standin.copy()
    magnitude = np.hypot(bad["uoe"], bad["von"])
    bad["total_vel"] = magnitude * 0.5
    path = write(tmp_path, bad)
    with pytest.raises(
        DataError,
        match=r"total_vel is smaller than sqrt\(uoe² \+ von²\) on 90 rows \(first on 2020-01-01: "
        r"total_vel .* m/s, sqrt\(uoe² \+ von²\) .* m/s\)\. A mean speed can never be smaller",
    ):
        readers.open_dataset(path)
    ds = readers.open_dataset(path, speed_check="none")
    assert ds.attrs["speed_check"] == "none"


def test_speed_equal_mode(tmp_path, standin) -> None:
    # the stand-in is an area mean: its speed exceeds |mean velocity|, so 'equal' refuses it
    with pytest.raises(DataError, match=r"differs from sqrt\(uoe² \+ von²\).*speed_check='bound'"):
        check_speed(standin, mode="equal", source="standin")
    point = standin.assign(total_vel=np.hypot(standin["uoe"], standin["von"]) * 1.001)
    check_speed(point, mode="equal", source="point")
    check_speed(point, mode="bound", source="point")
    with pytest.raises(DataError, match="speed_check must be 'bound', 'equal' or 'none'"):
        check_speed(point, mode="strict", source="point")  # type: ignore[arg-type]


# ---- errors ----------------------------------------------------------------------------------


def test_missing_column_named(tmp_path, standin) -> None:
    path = write(tmp_path, standin.drop(columns="zos"))
    with pytest.raises(DataError, match=r"lacks columns \['zos'\]; the paper's CSV has"):
        readers.open_dataset(path, product="paper-csv")
    with pytest.raises(InputError, match=r"lacks columns \['zos'\]"):
        load_series(path)


def test_gaps_and_duplicates_refused(tmp_path, standin) -> None:
    gap = standin.drop(index=standin.index[10:12])
    with pytest.raises(DataError, match=r"2 days are missing .*first: 2020-01-11"):
        read_paper_csv(write(tmp_path, gap, "gap.csv"))
    dup = standin.copy()
    dup.index = dup.index.where(dup.index != dup.index[5], dup.index[4])
    with pytest.raises(DataError, match="date 2020-01-05 appears more than once"):
        read_paper_csv(write(tmp_path, dup, "dup.csv"))
    weekly = standin.iloc[::7]
    with pytest.raises(DataError, match="the paper's CSV is daily; these dates are 7-day"):
        read_paper_csv(write(tmp_path, weekly, "weekly.csv"))


def test_missing_values_reported_by_reader_refused_by_protocol(tmp_path, standin) -> None:
    holes = standin.copy()
    holes.iloc[3, holes.columns.get_loc("sithick")] = np.nan
    path = write(tmp_path, holes)
    ds = readers.open_dataset(path)
    assert ds["sithick"].attrs["n_missing"] == 1 and ds.attrs["n_missing"] == 1
    with pytest.raises(InputError, match=r"has missing values in \['sithick'\]"):
        load_series(path)


def test_non_numeric_value_named(tmp_path, standin) -> None:
    frame = standin.reset_index()
    frame["zos"] = frame["zos"].astype(object)
    frame.loc[2, "zos"] = "n/a?"
    path = tmp_path / NAME
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'zos', row 3 \(line 4\): 'n/a\?' is not a number"):
        read_paper_csv(path)
