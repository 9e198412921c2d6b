r"""The paper's area-mean CSV (``arctic_s2s_multivar_2020_2024.csv``, arXiv 2601.17647).

Layout: one row per day, a date column and exactly the columns :data:`COLUMNS`:

=============  ===================================================  =======  ===========
column         meaning                                              units    canonical
=============  ===================================================  =======  ===========
``uoe``        eastward surface ocean velocity, 60-90°N mean         m s-1    ``uo``
``von``        northward surface ocean velocity, 60-90°N mean        m s-1    ``vo``
``total_vel``  surface current speed, 60-90°N mean                   m s-1    (checked)
``zos``        sea-surface height, 60-90°N mean                      m        ``zos``
``sithick``    sea-ice thickness, 60-90°N mean                       m        ``sithick``
=============  ===================================================  =======  ===========

The file carries no units; those above are the paper's (SI) and can be overridden by column name
(``units={"zos": "cm"}``).

The speed check: an area mean of the speed is never smaller than the speed of the area-mean
velocity, ``mean |v| >= |mean v| = sqrt(uoe² + von²)`` (triangle inequality), and for the
paper's series it is an order of magnitude larger (cm/s against mm/s). So ``total_vel`` is *not*
``sqrt(uoe² + von²)`` here, and equality would wrongly refuse the real file. The default check,
``speed_check="bound"``, refuses rows where ``total_vel < sqrt(uoe² + von²)`` beyond rounding:
such a file has mislabelled columns or mixed units. ``speed_check="equal"`` demands
``total_vel ≈ sqrt(uoe² + von²)`` (a point series, not an area mean); ``"none"`` skips the check.
The choice is recorded in ``attrs["speed_check"]``.

``total_vel`` is kept as a non-dimension coordinate ``total_vel(time)`` (m s-1): the paper's
forcing scenario needs the speed, and the canonical schema has no speed variable.

:func:`read_paper_csv` is the one parser of this layout; :func:`kgcm.synthetic.paper.load_series`
uses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import xarray as xr

from kgcm.errors import DataError
from kgcm.readers.base import OpenOptions, Reader, canonical_variable
from kgcm.readers.table import DATE_COLUMN_NAMES, read_table

__all__ = ["COLUMNS", "PaperCsvReader", "check_speed", "read_paper_csv"]

#: The value columns of the paper's CSV, in file order.
COLUMNS = ("uoe", "von", "total_vel", "zos", "sithick")
#: Units the paper uses (the file has none).
UNITS = {"uoe": "m s-1", "von": "m s-1", "total_vel": "m s-1", "zos": "m", "sithick": "m"}
#: paper column -> canonical variable
CANONICAL_NAMES = {"uoe": "uo", "von": "vo", "zos": "zos", "sithick": "sithick"}
#: Rounding allowed by the speed check: relative, and absolute in m/s.
SPEED_RTOL = 0.01
SPEED_ATOL = 1e-4

SpeedCheck = Literal["bound", "equal", "none"]


def _date_column(columns: list[str], source: str) -> str:
    """The one column besides :data:`COLUMNS`, or the one with a date-like name."""
    others = [c for c in columns if c not in COLUMNS]
    if len(others) == 1:
        return others[0]
    named = [c for c in others if c.strip().lower() in DATE_COLUMN_NAMES]
    if len(named) == 1:
        return named[0]
    raise DataError(
        f"{source}: cannot tell which column holds the dates among {others}; the paper layout is "
        f"one date column plus {list(COLUMNS)}. Name it 'time' or 'date', or pass "
        f"date_column='<column>'."
    )


def check_speed(
    frame: pd.DataFrame,
    *,
    mode: SpeedCheck = "bound",
    source: str,
    rtol: float = SPEED_RTOL,
    atol: float = SPEED_ATOL,
) -> None:
    """Check ``total_vel`` against ``sqrt(uoe² + von²)`` (all in m/s); see the module docstring.

    Parameters
    ----------
    frame : columns ``uoe``, ``von``, ``total_vel`` (m/s), indexed by time; rows with NaN in
        any of them are not checked.
    mode : ``"bound"`` (``total_vel >= sqrt(uoe² + von²)``), ``"equal"`` or ``"none"``.
    rtol, atol : rounding allowed, relative and absolute (m/s).

    Raises
    ------
    DataError
        naming the number of offending rows, the first one (date and values) and the fix.
    """
    if mode not in ("bound", "equal", "none"):
        raise DataError(f"speed_check must be 'bound', 'equal' or 'none'; got {mode!r}.")
    if mode == "none":
        return
    speed = frame["total_vel"].to_numpy(float)
    magnitude = np.hypot(frame["uoe"].to_numpy(float), frame["von"].to_numpy(float))
    allowed = atol + rtol * magnitude
    with np.errstate(invalid="ignore"):
        if mode == "bound":
            bad = speed < magnitude - allowed
        else:
            bad = np.abs(speed - magnitude) > allowed
    bad &= np.isfinite(speed) & np.isfinite(magnitude)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    first = (
        f"first on {frame.index[i].date()}: total_vel {speed[i]:.6g} m/s, "
        f"sqrt(uoe² + von²) {magnitude[i]:.6g} m/s"
    )
    if mode == "bound":
        raise DataError(
            f"{source}: total_vel is smaller than sqrt(uoe² + von²) on {int(bad.sum())} rows "
            f"({first}). A mean speed can never be smaller than the speed of the mean velocity, "
            f"so the columns are mislabelled or in different units. Check the file; if a column "
            f"is in cm/s, pass units={{'<column>': 'cm/s'}}."
        )
    raise DataError(
        f"{source}: total_vel differs from sqrt(uoe² + von²) by more than {rtol:.0%} + "
        f"{atol:g} m/s on {int(bad.sum())} rows ({first}). For an area mean, total_vel is the "
        f"mean speed and exceeds sqrt(uoe² + von²): use speed_check='bound'."
    )


def read_paper_csv(
    path: str | os.PathLike[str],
    *,
    date_column: str = "auto",
    date_format: str | None = None,
    units: Mapping[str, str] | None = None,
    speed_check: SpeedCheck = "bound",
) -> pd.DataFrame:
    """Read and check the paper's CSV; the one parser of that layout.

    Parameters
    ----------
    path : the CSV file.
    date_column : the date column, or ``"auto"``: the one column besides :data:`COLUMNS`
        (whatever its name), else the one named ``time``/``date``/... .
    date_format : strftime format of the dates; None detects it (see
        :func:`kgcm.readers.table.read_table`).
    units : units of the file's columns where they differ from :data:`UNITS`
        (``{"zos": "cm"}``); values are converted to the SI units of :data:`UNITS`.
    speed_check : ``"bound"`` (default), ``"equal"`` or ``"none"``: see :func:`check_speed`.

    Returns
    -------
    DataFrame ``(n_days, 5)``, columns :data:`COLUMNS` in SI units, float64, indexed by a daily
    ``DatetimeIndex`` named ``time`` without gaps or duplicates; NaN where the file has no value.
    ``attrs``: ``source``, ``date_column``, ``date_format``, ``speed_check``.
    """
    from kgcm.readers.units import conversion_factor

    source = os.fspath(path)
    units = dict(units or {})
    unknown = [k for k in units if k not in COLUMNS]
    if unknown:
        raise DataError(
            f"{source}: units given for {unknown}; the paper columns are {list(COLUMNS)}."
        )
    if date_column == "auto":
        header = _header(Path(path))
        if header is None:
            raise DataError(f"{source}: cannot read a CSV header line; is it the paper's CSV?")
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DataError(
                f"{source!r} lacks columns {missing}; the paper's CSV has a date column plus "
                f"{list(COLUMNS)} (daily, SI units). For other tables use product='table'."
            )
        date_column = _date_column(header, source)
    frame = read_table(path, date_column=date_column, date_format=date_format, columns=COLUMNS)
    if frame.attrs["time_step"] != "daily":
        raise DataError(
            f"{source}: the paper's CSV is daily; these dates are {frame.attrs['time_step']}."
        )
    if frame.attrs["missing_dates"]:
        missing_dates = frame.attrs["missing_dates"]
        raise DataError(
            f"{source}: {len(missing_dates)} days are missing from the daily series (first: "
            f"{missing_dates[0]}); the paper protocol cuts 30-day windows from a gap-free "
            f"series. Add the rows (NaN values are fine), or read it with product='table', "
            f"fill='interpolate'."
        )
    attrs = dict(frame.attrs)
    factors = {
        c: conversion_factor(
            units.get(c, UNITS[c]),
            "m s-1" if UNITS[c] == "m s-1" else "m",
            variable=c,
            source=source,
        )
        for c in COLUMNS
    }
    frame = frame.loc[:, list(COLUMNS)] * pd.Series(factors)
    check_speed(frame, mode=speed_check, source=source)
    frame.attrs = {
        "source": source,
        "date_column": attrs["date_column"],
        "date_format": attrs["date_format"],
        "speed_check": speed_check,
    }
    return frame


def _header(path: Path) -> list[str] | None:
    """The comma-separated names on the first line, or None if it is not a text line."""
    try:
        with path.open("rb") as fh:
            line = fh.readline(4096)
        text = line.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    if "\x00" in text or (not text.endswith(("\n", "\r")) and len(line) >= 4096):
        return None
    return [c.strip().strip('"') for c in text.strip().split(",")]


class PaperCsvReader(Reader):
    """The paper's daily 60-90°N area-mean CSV → canonical ``(time,)`` series.

    Detected by content: a first line holding exactly one date column plus :data:`COLUMNS`.
    Options: ``date_column``, ``date_format``, ``speed_check`` (``"bound"``, ``"equal"``,
    ``"none"``) and the common ``variables``, ``time``, ``units`` (by the file's column name).
    Values are read into memory (1,620 rows).
    """

    name: ClassVar[str] = "paper-csv"
    product: ClassVar[str] = (
        "the paper's CSV (arctic_s2s_multivar_2020_2024.csv): daily 60-90N area means, "
        "uoe/von/total_vel/zos/sithick"
    )
    time_step: ClassVar[str] = "daily"
    provides: ClassVar[tuple[str, ...]] = ("uo", "vo", "zos", "sithick")

    def guess_can_open(self, path: Path) -> bool:
        header = _header(path)
        if header is None:
            return False
        return set(COLUMNS) <= set(header) and len(header) == len(COLUMNS) + 1

    def _open(self, files: list[Path], opts: OpenOptions, **options: Any) -> xr.Dataset:
        unknown = sorted(set(options) - {"date_column", "date_format", "speed_check"})
        if unknown:
            raise DataError(
                f"{self.name} has no options {unknown}; its own are date_column, date_format and "
                f"speed_check."
            )
        if len(files) != 1:
            raise DataError(
                f"{self.name} reads one file at a time; got {len(files)} files. Join them first."
            )
        if opts.region is not None:
            raise DataError(f"{files[0]}: an area-mean series has no region to select.")
        source = str(files[0])
        frame = read_paper_csv(files[0], units=opts.units, **options)
        data = {}
        for column, name in CANONICAL_NAMES.items():
            values = frame[column].to_numpy()
            da = xr.DataArray(values, dims=("time",), name=column, attrs={"units": UNITS[column]})
            da = canonical_variable(da, name, source=source, units={})
            da.attrs["source_column"] = column
            da.attrs["n_missing"] = int(np.isnan(da.values).sum())
            data[name] = da
        ds = xr.Dataset(data, coords={"time": frame.index.as_unit("ns")})
        ds = ds.assign_coords(
            total_vel=(
                "time",
                frame["total_vel"].to_numpy(),
                {
                    "units": "m s-1",
                    "long_name": "area-mean surface current speed (mean of |v|), from the file",
                    "source_column": "total_vel",
                },
            )
        )
        ds.attrs.update(
            speed_check=frame.attrs["speed_check"],
            date_column=frame.attrs["date_column"],
            date_format=frame.attrs["date_format"],
            n_missing=int(frame.isna().sum().sum()),
        )
        return ds
