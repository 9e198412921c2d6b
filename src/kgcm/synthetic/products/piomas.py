r"""PIOMAS v2.1 files: headerless little-endian float32 records on the 120 x 360 model grid.

Layout copied from the product:

* data files ``heff.HYYYY`` (monthly effective thickness, m), ``hiday.HYYYY`` (daily effective
  thickness, m) and ``ssh.HYYYY`` (monthly sea-surface height, cm), each optionally gzipped
  (``.gz``, as distributed). A file is ``k`` records of ``120 x 360`` float32 (``<f4``), no header;
  within a record x (360) runs fastest, then y (120), i.e. C order ``(y, x)``. ``k`` is 12 for a
  complete year of monthly fields (fewer for the current year) and the number of days written for
  ``hiday``. Land is stored as 0, as is open water in ``heff``/``hiday``.
* ``grid.dat``: text, the scalar-grid longitudes (120 x 360 values) then latitudes, in the same
  order, written as the model does (Fortran ``(10f8.2)``: ten 8-character fields a line).
* ``io.dat_360_120.output``: the land mask ``kmt`` (number of ocean levels, 0 on land) as text,
  Fortran ``(360i2)``: one line per y row, 360 two-character integers with no separator.

Truth: ``heff``/``hiday`` hold EFFECTIVE thickness (ice volume per cell area),
``truth["sithick"] * truth["siconc"]`` (:func:`true_fields`), set to 0 over the ice-free
ocean south of :data:`ICE_FREE_LAT` (so open-water zeros exist next to land zeros); ``ssh`` holds
``truth["zos"]`` in cm. Monthly records are the MEAN over the days of the month
(:func:`monthly_mean`); daily records are the truth on that day. Grid coordinates are rounded to
two decimals (as ``grid.dat`` stores them) before the truth is computed. The generated grid is a
smooth curvilinear grid from 45°N to near the pole (not the model's displaced-pole grid; the
reader takes coordinates from ``grid.dat`` and does not depend on it).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from kgcm.errors import ConfigError
from kgcm.synthetic.products import land, truth

NY, NX = 120, 360
#: open water (heff = 0) south of this latitude in generated files
ICE_FREE_LAT = 55.0
#: data file kind -> (truth key, factor from truth units, monthly?)
KINDS = {"heff": ("sithick_effective", 1.0, True), "hiday": ("sithick_effective", 1.0, False)}
KINDS["ssh"] = ("zos", 100.0, True)
GRID_FILE = "grid.dat"
KMT_FILE = "io.dat_360_120.output"


def grid() -> tuple[np.ndarray, np.ndarray]:
    """Longitude (0..360) and latitude ``(120, 360)`` of the generated grid, rounded to 0.01."""
    j, i = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
    lon = i * (360.0 / NX) + 0.5
    frac = j / (NY - 1)
    lat = 45.0 + 44.5 * frac + 2.0 * np.sin(np.deg2rad(lon)) * (1.0 - frac)
    return np.round(lon, 2), np.round(lat, 2)


def kmt(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Ocean levels ``(120, 360)``: 0 on :func:`kgcm.synthetic.products.land`, 1..30 elsewhere."""
    levels = 1 + np.round(29.0 * (0.5 + 0.5 * np.cos(np.deg2rad(5.0 * lon)))).astype(int)
    return np.where(land(lat, lon), 0, levels)


def true_fields(
    lat: np.ndarray, lon: np.ndarray, time: pd.DatetimeIndex, *, flow: str = "default"
) -> dict[str, np.ndarray]:
    """:func:`kgcm.synthetic.products.truth` at ``time`` plus the effective thickness
    ``sithick_effective = sithick * siconc`` (m), 0 south of :data:`ICE_FREE_LAT`."""
    fields = dict(truth(lat, lon, time, flow=flow))
    heff = fields["sithick"] * fields["siconc"]
    fields["sithick_effective"] = np.where(np.asarray(lat)[None] < ICE_FREE_LAT, 0.0, heff)
    return fields


def monthly_mean(
    lat: np.ndarray, lon: np.ndarray, month: pd.Timestamp, *, flow: str = "default"
) -> dict[str, np.ndarray]:
    """:func:`true_fields` averaged over the days of ``month``: arrays ``(y, x)``."""
    first = pd.Timestamp(month).to_period("M").start_time
    days = pd.date_range(first, periods=first.days_in_month, freq="D")
    return {k: v.mean(axis=0) for k, v in true_fields(lat, lon, days, flow=flow).items()}


def format_grid(lon: np.ndarray, lat: np.ndarray) -> str:
    """``grid.dat`` text: lon then lat, x fastest, Fortran ``(10f8.2)``."""
    values = np.concatenate([lon.ravel(), lat.ravel()])
    fields = np.char.mod("%8.2f", values).reshape(-1, 10)
    return "\n".join("".join(row) for row in fields) + "\n"


def format_kmt(levels: np.ndarray) -> str:
    """``io.dat_360_120.output`` text: one line per y row, Fortran ``(360i2)``."""
    fields = np.char.mod("%2d", levels)
    return "\n".join("".join(row) for row in fields) + "\n"


def write(
    directory: Path,
    *,
    year: int = 2020,
    kinds: tuple[str, ...] = ("heff",),
    months: int = 12,
    days: int = 5,
    compress: bool = True,
    flow: str = "default",
) -> list[Path]:
    """Write data files of ``year`` plus ``grid.dat`` and ``io.dat_360_120.output``.

    Parameters
    ----------
    directory : where the files go.
    year : the year in the names (``heff.H2020``).
    kinds : data files to write, from ``"heff"``, ``"hiday"``, ``"ssh"``.
    months : records in the monthly files (12 for a complete year).
    days : records in ``hiday`` (from 1 January).
    compress : gzip the data files (``.gz``) as distributed.
    flow : passed to :func:`kgcm.synthetic.products.truth`.

    Returns
    -------
    The data files only (the grid and mask files are written next to them, under their product
    names :data:`GRID_FILE` and :data:`KMT_FILE`).
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ConfigError(f"unknown PIOMAS file kinds {unknown}; known: {sorted(KINDS)}.")
    if not 1 <= months <= 12 or not 1 <= days <= pd.Timestamp(year, 12, 31).day_of_year:
        raise ConfigError(f"months must be 1..12 and days 1..days in {year}; got {months}, {days}.")
    lon, lat = grid()
    levels = kmt(lat, lon)
    (directory / GRID_FILE).write_text(format_grid(lon, lat))
    (directory / KMT_FILE).write_text(format_kmt(levels))
    is_land = levels == 0
    means: dict[int, dict[str, np.ndarray]] = {}  # month -> monthly_mean, shared by the kinds
    paths = []
    for kind in kinds:
        key, factor, monthly = KINDS[kind]
        path = directory / (f"{kind}.H{year}" + (".gz" if compress else ""))
        # gzip's command-line default level (6); the level does not change the format
        fh = gzip.open(path, "wb", compresslevel=6) if compress else path.open("wb")
        with fh:
            if monthly:
                for m in range(1, months + 1):
                    if m not in means:
                        means[m] = monthly_mean(lat, lon, pd.Timestamp(year, m, 1), flow=flow)
                    fh.write(_record(means[m][key] * factor, is_land))
            else:
                times = pd.date_range(f"{year}-01-01", periods=days, freq="D")
                for t in times:
                    record = true_fields(lat, lon, pd.DatetimeIndex([t]), flow=flow)[key][0]
                    fh.write(_record(record * factor, is_land))
        paths.append(path)
    return paths


def _record(values: np.ndarray, is_land: np.ndarray) -> bytes:
    return np.where(is_land, 0.0, values).astype("<f4").tobytes(order="C")
