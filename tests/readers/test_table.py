"""The generic table reader: the real Barents-Kara file, explicit date parsing, clear errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kgcm.readers as readers
from kgcm.errors import DataError
from kgcm.readers import table as table_module
from kgcm.readers.schema import check_canonical
from kgcm.readers.table import open_table, read_table

BARENTS_KARA = (
    Path(__file__).parents[2]
    / "examples"
    / "barents-kara"
    / "BarKara_Arctic_GBI_regional_data_1979_2018.csv"
)
BK_OPTIONS = {
    "date_column": "Date",
    "date_format": "%m/%d/%y",
    "variables": ["sea_ice_extent", "LW_down", "specific_humidity"],
    "units": {"sea_ice_extent": "km2", "LW_down": "W m-2", "specific_humidity": "g kg-1"},
}


def write(tmp_path: Path, text: str, name: str = "table.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def daily(n: int = 5, start: str = "2020-01-01", fmt: str = "%Y-%m-%d") -> list[str]:
    return [f"{t:{fmt}}" for t in pd.date_range(start, periods=n, freq="D")]


def csv(dates: list[str], **columns: list[object]) -> str:
    header = ",".join(["date", *columns])
    rows = [",".join([d, *(str(v[i]) for v in columns.values())]) for i, d in enumerate(dates)]
    return "\n".join([header, *rows]) + "\n"


# ---- the real Barents-Kara table -------------------------------------------------------------


class TestBarentsKara:
    def test_reads_fast_and_complete(self) -> None:
        started = time.perf_counter()
        ds = open_table(BARENTS_KARA, **BK_OPTIONS)
        seconds = time.perf_counter() - started
        assert seconds < 2.0, f"reading took {seconds:.2f} s"
        assert dict(ds.sizes) == {"time": 14610}
        times = pd.DatetimeIndex(ds["time"].values)
        assert times[0] == pd.Timestamp("1979-01-01")
        assert times[-1] == pd.Timestamp("2018-12-31")
        assert (np.diff(times.asi8) == pd.Timedelta(days=1).value).all()
        assert not times.has_duplicates
        assert list(ds.data_vars) == ["sea_ice_extent", "LW_down", "specific_humidity"]
        assert ds["sea_ice_extent"].dtype == np.float64
        assert ds["sea_ice_extent"].attrs["units"] == "km2"
        assert ds["sea_ice_extent"].attrs["n_missing"] == 0
        assert float(ds["sea_ice_extent"][0]) == 2032175.0
        assert float(ds["LW_down"][-1]) == pytest.approx(230.5115576)
        assert ds.attrs["kgcm_schema"] == "table"
        assert ds.attrs["product"] == "table"
        assert ds.attrs["file"] == str(BARENTS_KARA)
        assert ds.attrs["time_step"] == "daily"
        assert ds.attrs["n_missing"] == 0 and ds.attrs["fill"] == "none"
        assert ds.attrs["kgcm_version"]
        check_canonical(ds)

    def test_date_format_is_detected_the_same(self) -> None:
        ds = open_table(BARENTS_KARA)
        assert ds.attrs["date_format"] == "%m/%d/%y" and ds.attrs["date_column"] == "Date"
        assert len(ds.data_vars) == 8
        explicit = open_table(BARENTS_KARA, **BK_OPTIONS)
        np.testing.assert_array_equal(ds["time"].values, explicit["time"].values)

    def test_through_the_registry(self) -> None:
        ds = readers.open_dataset(BARENTS_KARA, product="table", **BK_OPTIONS)
        assert ds.attrs["reader"] == "table" and ds.sizes["time"] == 14610

    def test_not_detected_without_product(self) -> None:
        with pytest.raises(DataError, match="product='table'"):
            readers.detect(BARENTS_KARA)


# ---- reading ---------------------------------------------------------------------------------


def test_listed_and_never_guessed(tmp_path) -> None:
    assert "table" in readers.list_readers()
    path = write(tmp_path, csv(daily(3), a=[1, 2, 3]))
    assert readers.get_reader("table").guess_can_open(path) is False


def test_rename_units_and_canonical_conversion(tmp_path) -> None:
    path = write(tmp_path, csv(daily(4), thick_cm=[100, 150, 200, 250], wind=[1, 2, 3, 4]))
    ds = open_table(
        path,
        variables={"sithick": "thick_cm", "wind_speed": "wind"},
        units={"sithick": "cm", "wind_speed": "m/s"},
    )
    assert list(ds.data_vars) == ["sithick", "wind_speed"]
    np.testing.assert_allclose(ds["sithick"].values, [1.0, 1.5, 2.0, 2.5])
    assert ds["sithick"].attrs["units"] == "m"
    assert ds["sithick"].attrs["standard_name"] == "sea_ice_thickness"
    assert ds["sithick"].attrs["source_column"] == "thick_cm"
    assert ds["wind_speed"].attrs["units"] == "m/s"
    assert ds["time"].dtype == np.dtype("datetime64[ns]")


def test_time_selection(tmp_path) -> None:
    path = write(tmp_path, csv(daily(10), a=list(range(10))))
    ds = open_table(path, time=("2020-01-03", "2020-01-05"))
    assert ds.sizes["time"] == 3 and float(ds["a"][0]) == 2.0
    with pytest.raises(DataError, match=r"no date within time=.*covers 2020-01-01 to 2020-01-10"):
        open_table(path, time=("2021-01-01", None))


def test_missing_values_counted_not_filled(tmp_path) -> None:
    path = write(tmp_path, csv(daily(5), a=[1, "", 3, "NA", 5], b=[1, 2, 3, -999, 5]))
    ds = open_table(path, na_values=[-999])
    assert ds["a"].attrs["n_missing"] == 2 and ds["b"].attrs["n_missing"] == 1
    assert ds.attrs["n_missing"] == 3 and ds.attrs["fill"] == "none"
    assert np.isnan(ds["a"].values[[1, 3]]).all()


def test_fill_interpolate_is_explicit_and_recorded(tmp_path) -> None:
    dates = daily(6)
    del dates[2]  # a gap on 2020-01-03
    path = write(tmp_path, csv(dates, a=["", 2, 4, "", 6]))
    ds = open_table(path, fill="interpolate")
    assert ds.sizes["time"] == 6
    # leading NaN stays; the gap day and the interior NaN are interpolated in time
    np.testing.assert_allclose(ds["a"].values, [np.nan, 2, 3, 4, 5, 6])
    assert ds["a"].attrs["n_filled"] == 2 and ds["a"].attrs["n_missing"] == 1
    assert ds.attrs["n_inserted_steps"] == 1
    assert ds.attrs["fill"].startswith("interpolate")


def test_monthly_and_weekly_steps(tmp_path) -> None:
    months = [f"{t:%Y-%m-%d}" for t in pd.date_range("2000-01-31", periods=6, freq="ME")]
    ds = open_table(write(tmp_path, csv(months, a=range(6)), "m.csv"))
    assert ds.attrs["time_step"] == "monthly"
    weeks = [f"{t:%Y-%m-%d}" for t in pd.date_range("2000-01-03", periods=6, freq="7D")]
    assert open_table(write(tmp_path, csv(weeks, a=range(6)), "w.csv")).attrs["time_step"] == (
        "7-day"
    )


def test_tsv_and_iso_times(tmp_path) -> None:
    text = "time\tx\n2020-01-01T12:00:00\t1\n2020-01-02T12:00:00\t2\n"
    ds = open_table(write(tmp_path, text, "t.tsv"))
    assert ds.attrs["date_format"] == "ISO8601" and ds.sizes["time"] == 2


def test_parquet_round_trip(tmp_path) -> None:
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0]}, index=pd.date_range("2020-01-01", periods=3, name="time")
    )
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    ds = open_table(path)
    np.testing.assert_allclose(ds["a"].values, [1, 2, 3])
    assert ds.attrs["date_format"] == "native"


def test_read_table_frame(tmp_path) -> None:
    path = write(tmp_path, csv(daily(3), a=[1, 2, 3], note=["x", "y", "z"]))
    frame = read_table(path, columns=["a"])
    assert list(frame.columns) == ["a"] and frame.index.name == "time"
    assert frame.attrs["time_step"] == "daily" and frame.attrs["missing_dates"] == []


# ---- errors, with their text -----------------------------------------------------------------


def test_duplicated_dates_refused(tmp_path) -> None:
    dates = daily(4)
    dates[2] = dates[1]
    path = write(tmp_path, csv(dates, a=range(4)))
    with pytest.raises(
        DataError,
        match=r"date 2020-01-02 appears more than once in column 'date' \(row 2 \(line 3\) and "
        r"row 3 \(line 4\); 1 duplicated dates in all\)",
    ):
        open_table(path)


def test_unparseable_date_names_row_and_value(tmp_path) -> None:
    dates = daily(5, fmt="%m/%d/%y")
    dates[3] = "13/45/79"
    path = write(tmp_path, csv(dates, a=range(5)))
    with pytest.raises(
        DataError, match=r"column 'date', row 4 \(line 5\): '13/45/79' is not a date"
    ):
        open_table(path)
    with pytest.raises(
        DataError,
        match=r"row 4 \(line 5\): '13/45/79' is not a date in format '%m/%d/%y' \(1 such rows\)",
    ):
        open_table(path, date_format="%m/%d/%y")


def test_empty_date_refused(tmp_path) -> None:
    path = write(tmp_path, "date,a\n2020-01-01,1\n,2\n2020-01-03,3\n")
    with pytest.raises(DataError, match=r"has no date in row 2 \(line 3\)"):
        open_table(path)


def test_ambiguous_day_month_refused(tmp_path) -> None:
    path = write(tmp_path, csv(["1/2/2020", "2/2/2020", "3/2/2020"], a=[1, 2, 3]))
    with pytest.raises(DataError, match=r"fit both '%m/%d/%Y' and '%d/%m/%Y'.*date_format="):
        open_table(path)
    # with the format given, the same file is read (monthly, day 2)
    assert open_table(path, date_format="%m/%d/%Y").attrs["time_step"] == "monthly"


def test_two_digit_year_in_the_future_refused(tmp_path) -> None:
    path = write(tmp_path, csv(["1/1/60", "1/2/60", "1/3/60"], a=[1, 2, 3]))
    with pytest.raises(DataError, match=r"two-digit year read as 2060-01-01, which is in the"):
        open_table(path, date_format="%m/%d/%y")


def test_decreasing_dates_refused(tmp_path) -> None:
    path = write(tmp_path, csv(["2020-01-02", "2020-01-01", "2020-01-03"], a=[1, 2, 3]))
    with pytest.raises(DataError, match=r"row 2 \(line 3\): date 2020-01-01 comes after"):
        open_table(path)


def test_out_of_range_dates_refused(tmp_path) -> None:
    path = write(tmp_path, csv(["1700-01-01", "1700-01-02"], a=[1, 2]))
    with pytest.raises(DataError, match="is outside 1800-2300"):
        open_table(path)


def test_gaps_refused_without_fill(tmp_path) -> None:
    dates = daily(10)
    del dates[4:6]
    path = write(tmp_path, csv(dates, a=range(8)))
    with pytest.raises(
        DataError, match=r"daily dates have gaps: 2 missing .*first: 2020-01-05.*fill='interpolate'"
    ):
        open_table(path)


def test_irregular_steps_refused(tmp_path) -> None:
    dates = ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04T12:00:00"]
    path = write(tmp_path, csv(dates, a=range(4)))
    with pytest.raises(DataError, match="not a whole number of daily steps"):
        open_table(path)


def test_non_numeric_value_names_row_and_column(tmp_path) -> None:
    path = write(tmp_path, csv(daily(4), a=[1, 2, 3, 4], b=[1, "x", 3, "y"]))
    with pytest.raises(
        DataError,
        match=r"column 'b', row 2 \(line 3\): 'x' is not a number \(2 such rows\).*"
        r"na_values=\['x'\]",
    ):
        open_table(path)
    assert list(open_table(path, variables=["a"]).data_vars) == ["a"]


def test_missing_column_did_you_mean(tmp_path) -> None:
    path = write(tmp_path, csv(daily(3), LW_down=[1, 2, 3]))
    with pytest.raises(DataError, match=r"no column 'LW_dwn'.*Did you mean 'LW_down'\?"):
        open_table(path, variables=["LW_dwn"])
    with pytest.raises(DataError, match=r"no column 'dat' to read dates.*Did you mean 'date'\?"):
        open_table(path, date_column="dat")


def test_date_column_must_be_found(tmp_path) -> None:
    path = write(tmp_path, "when,a\n2020-01-01,1\n2020-01-02,2\n")
    with pytest.raises(DataError, match=r"no date column found .*date_column='<column>'"):
        open_table(path)
    assert open_table(path, date_column="when").sizes["time"] == 2
    both = write(tmp_path, "date,time,a\n2020-01-01,2020-01-01,1\n", "both.csv")
    with pytest.raises(
        DataError, match=r"several columns could hold the dates \(\['date', 'time'\]\)"
    ):
        open_table(both)


def test_variable_option_errors(tmp_path) -> None:
    path = write(tmp_path, csv(daily(3), a=[1, 2, 3]))
    with pytest.raises(DataError, match="holds the dates; it cannot also be a variable"):
        open_table(path, variables=["date"])
    with pytest.raises(DataError, match="got the string 'a'"):
        open_table(path, variables="a")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="units given for \\['b'\\]"):
        open_table(path, units={"b": "m"})
    with pytest.raises(DataError, match="'zos' is a canonical name, so its units must be known"):
        open_table(path, variables={"zos": "a"})
    with pytest.raises(DataError, match="fill must be None or 'interpolate'"):
        open_table(path, fill="zero")  # type: ignore[arg-type]


def test_file_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_table(tmp_path / "none.csv")
    with pytest.raises(DataError, match="cannot tell the table format"):
        open_table(write(tmp_path, "a", "t.xlsx"))
    semi = write(tmp_path, "date;a\n2020-01-01;1\n2020-01-02;2\n", "semi.csv")
    with pytest.raises(DataError, match="Pass sep=';'"):
        open_table(semi)
    assert open_table(semi, sep=";").sizes["time"] == 2
    with pytest.raises(DataError, match="a time series needs at least two"):
        open_table(write(tmp_path, "date,a\n2020-01-01,1\n", "one.csv"))


def test_parquet_without_pyarrow_is_clear(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(table_module, "_pyarrow_available", lambda: False)
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(
        DataError, match=r"needs the pyarrow package.*pip install 'kgcm\[parquet\]'"
    ):
        open_table(path)


def test_reader_options_checked(tmp_path) -> None:
    path = write(tmp_path, csv(daily(3), a=[1, 2, 3]))
    with pytest.raises(DataError, match=r"no option 'date_fromat'.*Did you mean 'date_format'\?"):
        readers.open_dataset(path, product="table", date_fromat="%Y")
    with pytest.raises(DataError, match="option 'region' does not apply to a table"):
        readers.open_dataset(path, product="table", region=(60, 90, -180, 180))
    other = write(tmp_path, csv(daily(3), a=[1, 2, 3]), "other.csv")
    with pytest.raises(DataError, match="reads one file at a time; got 2"):
        readers.open_dataset([path, other], product="table")
