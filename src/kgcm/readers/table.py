r"""Generic tables: a CSV or Parquet file with one date column and one row per time step.

:func:`open_table` returns the ``(time,)`` series layout of the canonical schema: one float
variable per selected column, named by the column or by the name you give it. Column names that
are not canonical are kept (``attrs["kgcm_schema"] = "table"`` tells
:func:`kgcm.readers.schema.check_canonical` so); a column renamed to a canonical name
(``{"sithick": "thickness_cm"}``) is converted to the canonical unit, which then must be given
in ``units``.

Every check is explicit, because a table has no metadata to fall back on:

- dates: the format is given (``date_format="%m/%d/%y"``) or found among a short list of
  unambiguous candidates (:data:`DATE_FORMATS`); two candidates that read the column
  differently (1/2/79: 2 January or 1 February?) are an error, not a guess. Two-digit years
  (``%y``) read 69-99 as 1969-1999 and 00-68 as 2000-2068, so dates after today are refused.
- the time axis: every date within 1800-2300, strictly increasing, no duplicates, one regular
  step (daily, 7-day or monthly) without gaps.
- values: every selected column numeric; a non-number is named by row and column. Missing values
  are counted (``attrs["n_missing"]`` per variable) and kept as NaN unless
  ``fill="interpolate"`` is asked for, which is recorded in the attributes.

The registry reader ``table`` (:class:`TableReader`) wraps :func:`open_table` so that
``kgcm.readers.open_dataset(path, product="table", ...)`` works. Its ``guess_can_open`` is always
False: almost any CSV has a date column, so a table reader that claimed them would make content
detection ambiguous for the CSV layouts kgcm knows (``paper-csv``). Tables are chosen explicitly.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import xarray as xr

from kgcm.errors import DataError, did_you_mean
from kgcm.readers.base import Paths, Reader, expand_paths
from kgcm.readers.schema import CANONICAL, apply_attrs, check_canonical

__all__ = ["DATE_COLUMN_NAMES", "DATE_FORMATS", "TableReader", "open_table", "read_table"]

#: Column names (compared in lower case) taken as the date column when ``date_column="auto"``.
DATE_COLUMN_NAMES = ("time", "date", "datetime", "timestamp", "day")

#: Formats tried, in order, when ``date_format`` is None. ``ISO8601`` covers 2020-01-31,
#: 2020-01-31T12:00, 20200131 and time-zone offsets. Day-first and month-first formats are both
#: tried so that a column that fits both is refused as ambiguous instead of read one way.
DATE_FORMATS = (
    "ISO8601",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%m/%d/%y",
    "%d/%m/%y",
    "%d.%m.%Y",
    "%d-%m-%Y",
)

#: Dates outside this range are refused: they come from a wrong format, not from data.
SANE_RANGE = (pd.Timestamp("1800-01-01"), pd.Timestamp("2300-12-31"))

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst")
PARQUET_SUFFIXES = (".parquet", ".pq")

Fill = Literal["interpolate"] | None


# --------------------------------------------------------------------------------------------
# Reading the file


def _kind(path: Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file name (a table has no magic bytes to read)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in CSV_SUFFIXES:
        return "csv"
    if last in PARQUET_SUFFIXES:
        return "parquet"
    raise DataError(
        f"{path}: cannot tell the table format from the name; expected a name ending in "
        f"{list(CSV_SUFFIXES + PARQUET_SUFFIXES)} (CSV may be compressed: "
        f"{list(COMPRESSION_SUFFIXES)}). Rename the file."
    )


def _pyarrow_available() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def _read_raw(path: Path, *, sep: str | None, na_values: Sequence[Any] | None) -> pd.DataFrame:
    kind = _kind(path)
    if kind == "parquet":
        if not _pyarrow_available():
            raise DataError(
                f"{path}: reading Parquet needs the pyarrow package, which is not installed. "
                f"Install it with: pip install 'kgcm[parquet]' (or save the table as CSV)."
            )
        try:
            raw = pd.read_parquet(path, engine="pyarrow")
        except Exception as exc:
            raise DataError(
                f"{path}: cannot be read as Parquet ({exc.__class__.__name__}: {exc}). The file "
                f"may be truncated or corrupt."
            ) from exc
        if not isinstance(raw.index, pd.RangeIndex):
            # pandas stores a named index (often the dates) in the file: make it a column again
            raw = raw.reset_index()
        if na_values:
            raw = raw.mask(raw.isin(list(na_values)))
        return raw
    if sep is None:
        sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    try:
        raw = pd.read_csv(path, sep=sep, na_values=list(na_values) if na_values else None)
    except Exception as exc:
        raise DataError(
            f"{path}: cannot be read as a {sep!r}-separated table ({exc.__class__.__name__}: "
            f"{exc}). Check the separator (sep=) and that the file is complete."
        ) from exc
    if raw.shape[1] == 1 and any(c in str(raw.columns[0]) for c in ";\t|,"):
        other = next(c for c in ";\t|," if c in str(raw.columns[0]))
        raise DataError(
            f"{path}: read one column {str(raw.columns[0])!r} with separator {sep!r}; the "
            f"header looks {other!r}-separated. Pass sep={other!r}."
        )
    return raw


def _row(i: int, kind: str) -> str:
    """Human position of data row ``i`` (0-based): row number and, for CSV, the file line."""
    return f"row {i + 1} (line {i + 2})" if kind == "csv" else f"row {i + 1}"


# --------------------------------------------------------------------------------------------
# Dates


def _find_date_column(columns: Sequence[str], date_column: str, source: str) -> str:
    names = [str(c) for c in columns]
    if date_column != "auto":
        if date_column not in names:
            raise DataError(
                f"{source}: no column {date_column!r} to read dates from; the columns are "
                f"{names}.{did_you_mean(date_column, names)}"
            )
        return date_column
    found = [c for c in names if c.strip().lower() in DATE_COLUMN_NAMES]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f"{source}: no date column found (looked for a column named one of "
            f"{list(DATE_COLUMN_NAMES)}, any case); the columns are {names}. Name it with "
            f"date_column='<column>'."
        )
    raise DataError(
        f"{source}: several columns could hold the dates ({found}); choose one with "
        f"date_column='<column>'."
    )


def _parse_with(values: pd.Series, fmt: str) -> pd.DatetimeIndex:
    """Dates in ``fmt`` (NaT where a value does not fit), naive, in UTC when zones were given."""
    try:
        parsed = pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError):
        return pd.DatetimeIndex(np.full(len(values), np.datetime64("NaT"), "datetime64[ns]"))
    return pd.DatetimeIndex(parsed).tz_localize(None)


def _parse_dates(
    column: pd.Series, *, name: str, date_format: str | None, source: str, kind: str
) -> tuple[pd.DatetimeIndex, str]:
    """The column as dates and the format that read it; errors name the row and the value."""
    empty = np.flatnonzero(column.isna().to_numpy())
    if empty.size:
        raise DataError(
            f"{source}: column {name!r} has no date in {_row(int(empty[0]), kind)} "
            f"({empty.size} empty dates in all). Every row needs a date: fill or drop those rows."
        )
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        index = pd.DatetimeIndex(column)
        if index.tz is not None:
            index = index.tz_convert("UTC").tz_localize(None)
        return index, "native"
    text = column.astype(str).str.strip()
    if date_format is not None:
        parsed = _parse_with(text, date_format)
        bad = np.flatnonzero(parsed.isna())
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{source}: column {name!r}, {_row(i, kind)}: {text.iloc[i]!r} is not a date in "
                f"format {date_format!r} ({bad.size} such rows). Fix the file or the format "
                f"(strftime codes, e.g. '%Y-%m-%d', '%m/%d/%y')."
            )
        return parsed, date_format
    # prune on a sample first: most candidates fail on the first rows
    sample = pd.concat([text.iloc[:200], text.iloc[-200:]])
    candidates = [f for f in DATE_FORMATS if _parse_with(sample, f).notna().all()]
    results = {f: _parse_with(text, f) for f in candidates}
    full = {f: r for f, r in results.items() if r.notna().all()}
    if not full:
        scored = results or {f: _parse_with(text, f) for f in DATE_FORMATS}
        best = max(scored, key=lambda f: int(scored[f].notna().sum()))
        bad = np.flatnonzero(scored[best].isna())
        i = int(bad[0])
        raise DataError(
            f"{source}: column {name!r}, {_row(i, kind)}: {text.iloc[i]!r} is not a date "
            f"(the closest format, {best!r}, fails on {bad.size} rows; tried "
            f"{list(DATE_FORMATS)}). Fix the value, or pass date_format='<strftime format>'."
        )
    formats = list(full)
    first = full[formats[0]]
    differ = [f for f in formats[1:] if not full[f].equals(first)]
    if differ:
        raise DataError(
            f"{source}: the dates in column {name!r} fit both {formats[0]!r} and {differ[0]!r}, "
            f"which read them differently (e.g. {text.iloc[0]!r} is {first[0].date()} or "
            f"{full[differ[0]][0].date()}). Pass date_format= to say which."
        )
    return first, formats[0]


def _check_dates(index: pd.DatetimeIndex, *, name: str, fmt: str, source: str, kind: str) -> None:
    """Sane range, no duplicates, strictly increasing."""
    low, high = SANE_RANGE
    outside = np.flatnonzero((index < low) | (index > high))
    if outside.size:
        i = int(outside[0])
        raise DataError(
            f"{source}: column {name!r}, {_row(i, kind)}: date {index[i]} is outside "
            f"{low.year}-{high.year}; the date format {fmt!r} does not fit this column. Pass "
            f"date_format='<strftime format>'."
        )
    if "%y" in fmt and index.max() > pd.Timestamp.now():
        i = int(np.argmax(index > pd.Timestamp.now()))
        raise DataError(
            f"{source}: column {name!r}, {_row(i, kind)}: two-digit year read as "
            f"{index[i].date()}, which is in the future ('%y' reads 00-68 as 2000-2068). If "
            f"the data are older, write four-digit years in the file."
        )
    dup = index.duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup)
        first = index[rows[0]]
        same = rows[index[rows] == first][:2]
        raise DataError(
            f"{source}: date {first.date()} appears more than once in column {name!r} "
            f"({_row(int(same[0]), kind)} and {_row(int(same[1]), kind)}; "
            f"{int(index.duplicated().sum())} duplicated dates in all). Give each date once."
        )
    back = np.flatnonzero(np.diff(index.asi8) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise DataError(
            f"{source}: column {name!r}, {_row(i, kind)}: date {index[i].date()} comes after "
            f"{index[i - 1].date()} in the file; the dates must increase. Sort the file by date."
        )


def _time_step(index: pd.DatetimeIndex, *, source: str) -> tuple[str, pd.DatetimeIndex]:
    """The regular step (``daily``, ``7-day``, ``monthly``) and the dates missing from it."""
    if len(index) < 2:
        raise DataError(f"{source}: {len(index)} dated row; a time series needs at least two.")
    steps = np.diff(index.asi8)
    day = pd.Timedelta(days=1).value
    common = int(pd.Series(steps).mode().iloc[0])
    for label, step in (("daily", day), ("7-day", 7 * day)):
        if common == step:
            odd = np.flatnonzero(steps % step != 0)
            if odd.size:
                i = int(odd[0])
                raise DataError(
                    f"{source}: the dates are {label} but {index[i]} is followed by "
                    f"{index[i + 1]}, which is not a whole number of {label} steps later."
                )
            full = pd.date_range(index[0], index[-1], freq=pd.Timedelta(step))
            return label, full.difference(index)
    if 28 * day <= common <= 31 * day:
        periods = index.to_period("M")
        one_a_month = not periods.has_duplicates
        same_day = (index.day == index[0].day).all() or index.is_month_end.all()
        if one_a_month and same_day:
            full = pd.period_range(periods[0], periods[-1], freq="M")
            return "monthly", full.difference(periods).to_timestamp()
    i = int(np.flatnonzero(steps != common)[0]) if (steps != common).any() else 0
    raise DataError(
        f"{source}: the dates have no regular step (daily, 7-day or monthly): the most common "
        f"step is {pd.Timedelta(common)}, but {index[i]} is followed by {index[i + 1]}. Resample "
        f"the table to one step first."
    )


# --------------------------------------------------------------------------------------------
# Values


def _normalise_variables(
    variables: Sequence[str] | Mapping[str, str] | None, *, source: str
) -> dict[str, str] | None:
    """``{output name: column}`` in output order (None: every column but the dates)."""
    if variables is None:
        return None
    if isinstance(variables, str):
        raise DataError(
            f"{source}: variables must be a list of columns or a {{name: column}} mapping; got "
            f"the string {variables!r} (write [{variables!r}])."
        )
    mapping = (
        {str(k): str(v) for k, v in variables.items()}
        if isinstance(variables, Mapping)
        else {str(c): str(c) for c in variables}
    )
    if not mapping:
        raise DataError(f"{source}: no variables selected; give at least one column.")
    if "time" in mapping:
        raise DataError(f"{source}: 'time' is the dimension name; give the variable another name.")
    return mapping


def _check_columns(
    names: Sequence[str], columns: Sequence[str], *, date_column: str, source: str
) -> None:
    for column in columns:
        if column not in names:
            raise DataError(
                f"{source}: no column {column!r}; the columns are {list(names)}."
                f"{did_you_mean(column, names)}"
            )
        if column == date_column:
            raise DataError(
                f"{source}: column {column!r} holds the dates; it cannot also be a variable."
            )


def _numeric(raw: pd.DataFrame, columns: Sequence[str], *, source: str, kind: str) -> pd.DataFrame:
    """The columns as float64; a value that is not a number is named by row and column."""
    out = {}
    for column in columns:
        values = raw[column]
        if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype
        ):
            out[column] = values.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        number = pd.to_numeric(values, errors="coerce")
        bad = np.flatnonzero(number.isna().to_numpy() & values.notna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{source}: column {column!r}, {_row(i, kind)}: {values.iloc[i]!r} is not a "
                f"number ({bad.size} such rows). Fix the file; if it marks missing data, pass "
                f"na_values=[{values.iloc[i]!r}]; or leave the column out of variables."
            )
        out[column] = number.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out, index=raw.index)


def read_table(
    path: str | os.PathLike[str],
    *,
    date_column: str = "auto",
    date_format: str | None = None,
    columns: Sequence[str] | None = None,
    na_values: Sequence[Any] | None = None,
    sep: str | None = None,
) -> pd.DataFrame:
    """Read and check a dated table; the one parser behind :func:`open_table` and ``paper-csv``.

    Parameters
    ----------
    path : a ``.csv`` / ``.tsv`` / ``.txt`` file (optionally compressed) or ``.parquet``.
    date_column : the column holding the dates, or ``"auto"`` for the one column named
        ``time``, ``date``, ``datetime``, ``timestamp`` or ``day`` (any case).
    date_format : strftime format of the dates (``"%m/%d/%y"``); None tries
        :data:`DATE_FORMATS` and refuses ambiguity.
    columns : value columns to keep (None: every column but the dates); all must be numeric.
    na_values : extra cell values that mean "missing" (e.g. ``[-999]``), besides empty cells and
        ``NA``/``NaN``.
    sep : CSV separator (default ``","``, tab for ``.tsv``).

    Returns
    -------
    DataFrame of shape ``(n_time, n_columns)``, float64, indexed by a strictly increasing
    ``DatetimeIndex`` named ``time`` with a regular step; NaN where values are
    missing. ``attrs`` holds ``source``, ``date_column``, ``date_format``, ``time_step``,
    ``kind`` (``"csv"``/``"parquet"``) and ``missing_dates`` (ISO dates absent from the
    regular step: gaps are reported here, not refused; :func:`open_table` refuses them).

    Raises
    ------
    DataError
        naming the file, and the row, column and value where one is at fault.
    """
    file = Path(path)
    source = str(file)
    if not file.is_file():
        raise DataError(f"{source!r} does not exist (or is not a file).")
    kind = _kind(file)
    raw = _read_raw(file, sep=sep, na_values=na_values)
    if raw.empty:
        raise DataError(f"{source}: the table has no data rows.")
    raw.columns = [str(c) for c in raw.columns]
    name = _find_date_column(raw.columns, date_column, source)
    index, fmt = _parse_dates(
        raw[name], name=name, date_format=date_format, source=source, kind=kind
    )
    # the checks count steps in ns; the frame keeps the resolution pandas parsed to
    _check_dates(index.as_unit("ns"), name=name, fmt=fmt, source=source, kind=kind)
    step, missing = _time_step(index.as_unit("ns"), source=source)
    if columns is None:
        selected = [c for c in raw.columns if c != name]
    else:
        selected = list(dict.fromkeys(str(c) for c in columns))
        _check_columns(list(raw.columns), selected, date_column=name, source=source)
    frame = _numeric(raw, selected, source=source, kind=kind)
    frame.index = pd.DatetimeIndex(index, name="time")
    frame.attrs.update(
        source=source,
        kind=kind,
        date_column=name,
        date_format=fmt,
        time_step=step,
        missing_dates=[str(t.date()) for t in missing],
    )
    return frame


def _refuse_gaps(frame: pd.DataFrame, *, fill: Fill) -> None:
    missing = frame.attrs["missing_dates"]
    if not missing:
        return
    step = frame.attrs["time_step"]
    if fill == "interpolate" and step != "monthly":
        return
    fix = (
        "add the missing months to the file (NaN values are fine)"
        if step == "monthly"
        else "add the missing rows to the file, or pass fill='interpolate' to insert them and "
        "interpolate linearly in time (recorded in the attributes)"
    )
    raise DataError(
        f"{frame.attrs['source']}: the {step} dates have gaps: {len(missing)} missing from "
        f"{frame.index[0].date()} to {frame.index[-1].date()} (first: {missing[0]}). Either {fix}."
    )


def open_table(
    path: str | os.PathLike[str],
    *,
    date_column: str = "auto",
    date_format: str | None = None,
    variables: Sequence[str] | Mapping[str, str] | None = None,
    units: Mapping[str, str] | None = None,
    time: tuple[Any, Any] | None = None,
    na_values: Sequence[Any] | None = None,
    fill: Fill = None,
    sep: str | None = None,
) -> xr.Dataset:
    """A dated table as a ``(time,)`` dataset, one float variable per selected column.

    Parameters
    ----------
    path : CSV (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz`` etc.) or Parquet (``.parquet``,
        needs ``pip install 'kgcm[parquet]'``).
    date_column : the date column, or ``"auto"`` (see :func:`read_table`).
    date_format : strftime format of the dates, or None to detect it (ambiguity is an error).
    variables : columns to keep, as a list (names kept) or ``{new_name: column}``; None keeps
        every column but the dates.
    units : ``{variable: units}`` (by output name), stored as the ``units`` attribute. Required
        for a variable renamed to a canonical name (``sithick``, ``zos``, ...), which is then
        converted to the canonical unit.
    time : ``(start, end)``, inclusive; either may be None.
    na_values : extra cell values meaning "missing" (``[-999]``).
    fill : None (NaN stay NaN, gaps in the dates are an error) or ``"interpolate"``: insert the
        missing daily/7-day steps and fill interior NaN linearly in time; counts are recorded in
        the attributes (``fill``, ``n_filled``, ``n_inserted_steps``). Leading and trailing NaN
        stay NaN.
    sep : CSV separator (default ``","``, tab for ``.tsv``).

    Returns
    -------
    xarray.Dataset with dim ``time`` only; variables ``(time,)`` float64 with attrs
    ``source_column``, ``n_missing`` (NaN left after any fill) and ``units`` where given;
    ``attrs``: ``product="table"``, ``reader="table"``, ``kgcm_schema="table"``, ``file``,
    ``source_files``, ``n_source_files``, ``kgcm_version``, ``time_step``, ``date_column``,
    ``date_format``, ``n_missing`` (total), ``fill``.

    Examples
    --------
    The Barents-Kara regional table (dates as M/D/YY):

    >>> ds = open_table(  # doctest: +SKIP
    ...     "BarKara_Arctic_GBI_regional_data_1979_2018.csv",
    ...     date_column="Date",
    ...     date_format="%m/%d/%y",
    ...     variables=["sea_ice_extent", "LW_down", "specific_humidity"],
    ...     units={"sea_ice_extent": "km2", "LW_down": "W m-2", "specific_humidity": "g kg-1"},
    ... )
    """
    if fill not in (None, "interpolate"):
        raise DataError(f"fill must be None or 'interpolate'; got {fill!r}.")
    source = os.fspath(path)
    mapping = _normalise_variables(variables, source=source)
    frame = read_table(
        path,
        date_column=date_column,
        date_format=date_format,
        columns=None if mapping is None else list(mapping.values()),
        na_values=na_values,
        sep=sep,
    )
    if mapping is None:
        mapping = {c: c for c in frame.columns}
    _refuse_gaps(frame, fill=fill)
    n_inserted = 0
    n_filled: dict[str, int] = {}
    if fill == "interpolate":
        attrs = dict(frame.attrs)
        if attrs["missing_dates"]:
            inserted = pd.DatetimeIndex(attrs["missing_dates"]).as_unit(frame.index.unit)
            full = frame.index.union(inserted)
            n_inserted = len(full) - len(frame)
            frame = frame.reindex(full)
            frame.index.name = "time"
        before = frame.isna().sum()
        frame = frame.interpolate(method="time", limit_area="inside")
        n_filled = {c: int(before[c] - frame[c].isna().sum()) for c in frame.columns}
        frame.attrs = attrs
    if time is not None:
        start, end = (pd.Timestamp(t) if t is not None else None for t in time)
        first, last = frame.index[0].date(), frame.index[-1].date()
        frame = frame.loc[start:end]
        if frame.empty:
            raise DataError(
                f"{source}: no date within time={time}; the table covers {first} to {last}."
            )
    units = dict(units or {})
    unknown = [k for k in units if k not in mapping]
    if unknown:
        raise DataError(
            f"{source}: units given for {unknown}, which is not a selected variable; the "
            f"variables are {list(mapping)}.{did_you_mean(unknown[0], mapping)}"
        )
    data = {}
    for out_name, column in mapping.items():
        da = xr.DataArray(frame[column].to_numpy(), dims=("time",), name=out_name)
        da.attrs["source_column"] = column
        if out_name in units:
            da.attrs["units"] = units[out_name]
        if out_name in CANONICAL:
            from kgcm.readers.units import to_canonical_units

            if out_name not in units:
                raise DataError(
                    f"{source}: variable {out_name!r} is a canonical name, so its units must be "
                    f"known to convert it to {CANONICAL[out_name].units!r}; pass "
                    f"units={{{out_name!r}: '<units>'}}."
                )
            da = to_canonical_units(da, CANONICAL[out_name].units, variable=column, source=source)
        da.attrs["n_missing"] = int(np.isnan(da.values).sum())
        if fill == "interpolate":
            da.attrs["n_filled"] = n_filled.get(column, 0)
        data[out_name] = da
    ds = xr.Dataset(data, coords={"time": frame.index.as_unit("ns")})
    ds = apply_attrs(ds)
    ds.attrs.update(
        product="table",
        reader="table",
        kgcm_schema="table",
        file=source,
        source_files=[source],
        n_source_files=1,
        kgcm_version=_version(),
        time_step=frame.attrs["time_step"],
        date_column=frame.attrs["date_column"],
        date_format=frame.attrs["date_format"],
        n_missing=int(sum(int(ds[v].attrs["n_missing"]) for v in ds.data_vars)),
        fill="none"
        if fill is None
        else f"interpolate (linear in time); {n_inserted} inserted "
        f"steps, {sum(n_filled.values())} filled values",
        Conventions="CF-1.8",
    )
    if fill == "interpolate":
        ds.attrs["n_inserted_steps"] = n_inserted
    check_canonical(ds, source=source)
    return ds


class TableReader(Reader):
    """Any CSV or Parquet table with a date column; chosen explicitly with ``product="table"``.

    ``open(path, date_column=..., date_format=..., variables=..., units=..., time=...,
    na_values=..., fill=..., sep=...)`` is :func:`open_table` on one file. The values are read
    into memory (a daily table of 40 years is 14,610 rows). ``guess_can_open`` is always False:
    see the module docstring.
    """

    name: ClassVar[str] = "table"
    product: ClassVar[str] = (
        "any CSV/Parquet table with a date column, one row per step (choose with product='table')"
    )
    time_step: ClassVar[str] = "daily"
    provides: ClassVar[tuple[str, ...]] = ()

    #: keyword options of :func:`open_table` that ``open`` passes on
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "date_column",
        "date_format",
        "variables",
        "units",
        "time",
        "na_values",
        "fill",
        "sep",
    )

    def guess_can_open(self, path: Path) -> bool:
        return False

    def open(self, paths: Paths, **options: Any) -> xr.Dataset:
        files = expand_paths(paths)
        if len(files) != 1:
            raise DataError(
                f"the table reader reads one file at a time; got {len(files)} "
                f"({[str(f) for f in files[:3]]}...). Join the tables into one file first."
            )
        for key in ("region", "chunks"):
            if key in options:
                raise DataError(
                    f"{files[0]}: option {key!r} does not apply to a table (a (time,) series, "
                    f"read into memory); leave it out."
                )
        unknown = [k for k in options if k not in self.OPTIONS]
        if unknown:
            raise DataError(
                f"{files[0]}: the table reader has no option {unknown[0]!r}; its options are "
                f"{list(self.OPTIONS)}.{did_you_mean(unknown[0], self.OPTIONS)}"
            )
        return open_table(files[0], **options)


def _version() -> str:
    from kgcm import __version__

    return __version__
