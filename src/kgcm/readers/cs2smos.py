"""AWI/ESA CS2SMOS merged CryoSat-2/SMOS sea-ice thickness: 7-day windows on EASE2-North 25 km.

One NetCDF file per 7-day window (``W_XX-ESA,SMOS_CS2,NH_25KM_EASE2_<first>_<last>_..._l4sit.nc``),
October to April only; dims ``time(1), yc(432), xc(432)``, 2-D ``lat``/``lon``; fields stored as
int32 with ``scale_factor`` (0.001 m for thickness) and ``_FillValue = -2147483647``, decoded by
mask-and-scale. Variables read (both spellings the product has used):

=========================================================  ============  ==========
product variable                                           canonical     units
=========================================================  ============  ==========
``analysis_sea_ice_thickness`` (older: ``analysis_ice_thickness``)  ``sithick``  m
``sea_ice_concentration`` (older: ``ice_conc``)            ``siconc``    % -> 1
=========================================================  ============  ==========

The analysis thickness is the thickness over the ice-covered part (not effective thickness), so it
is ``sithick``. Uncertainty, background and the single-sensor fields are not part of the canonical
schema and are not returned. Land is fill; ``mask`` comes from the concentration at the first
window (concentration covers the whole ocean, thickness only the ice), and is absent when the
files carry no concentration.

Time. ``time`` is the file's own stamp (the centre of the window); each step is a MEAN over the
window ``[time_start, time_end)``, read from ``time_bnds`` and returned as the coordinates
``time_start``/``time_end`` (:func:`kgcm.readers.base.assign_time_bounds`). A window must span
exactly 7 days (an end given as the last second of the 7th day counts as the midnight after it),
and its stamp must lie inside it. The product is updated daily, so consecutive windows usually
OVERLAP by 6 days; they are kept as they are (``attrs["time_window"]`` says so).

Resampling a 7-day series later (``kgcm prepare`` never does it silently):

* to daily: a window is not a daily value. Either interpolate linearly between window centres
  (``resample = "linear"``; with daily running windows this is the 7-day running mean itself) or
  hold each window over its own 7 days (``resample = "nearest"`` on disjoint weekly windows).
  Successive running windows share 6 of 7 days: do not treat them as independent samples.
* to monthly: average the windows weighted by the number of their days inside the month
  (``[time_start, time_end)`` overlap); ``resample = "mean"`` by centre time approximates this.
  May-September have no data: they are missing, not zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from kgcm.errors import DataError
from kgcm.readers.base import (
    OpenOptions,
    Reader,
    _describe,
    assign_time_bounds,
    canonical_variable,
    mask_from,
    netcdf_header,
    open_netcdf,
)

#: canonical name -> product spellings (current first)
NAMES: dict[str, tuple[str, ...]] = {
    "sithick": ("analysis_sea_ice_thickness", "analysis_ice_thickness"),
    "siconc": ("sea_ice_concentration", "ice_conc"),
}
WINDOW = pd.Timedelta(days=7)


class Cs2SmosReader(Reader):
    """Reader of AWI/ESA CS2SMOS weekly merged sea-ice thickness files. No options."""

    name: ClassVar[str] = "cs2smos"
    product: ClassVar[str] = (
        "AWI/ESA CS2SMOS merged CryoSat-2/SMOS sea-ice thickness, EASE2-North 25 km, "
        "7-day windows Oct-Apr"
    )
    time_step: ClassVar[str] = "7-day"
    provides: ClassVar[tuple[str, ...]] = tuple(NAMES)

    def guess_can_open(self, path: Path) -> bool:
        header = netcdf_header(path)
        if header is None:
            return False
        variables, _ = header
        if not {"lat", "lon", "time"} <= set(variables):
            return False
        thickness = [v for v in NAMES["sithick"] if v in variables]
        return bool(thickness) and variables[thickness[0]]["_dims"][-2:] == ("yc", "xc")

    def _open(self, files: list[Path], opts: OpenOptions, **options: Any) -> xr.Dataset:
        if options:
            raise DataError(f"{self.name} has no options {sorted(options)}.")
        source = _describe(files)
        chunks = opts.chunks
        if isinstance(chunks, Mapping):
            chunks = {{"y": "yc", "x": "xc"}.get(k, k): v for k, v in chunks.items()}
        raw = open_netcdf(files, chunks=chunks, concat_dim="time")
        present = {
            name: next((v for v in spell if v in raw), None) for name, spell in NAMES.items()
        }
        if present["sithick"] is None:
            raise DataError(
                f"{source}: no CS2SMOS thickness variable {list(NAMES['sithick'])} in the file."
            )
        out = {}
        for name, product_name in present.items():
            if product_name is None or (opts.variables is not None and name not in opts.variables):
                continue
            da = _field(raw[product_name], source)
            out[name] = canonical_variable(da, name, source=source, units=opts.units)
        drop = ["yc", "xc", "lat", "lon"]
        ds = xr.Dataset({k: v.drop_vars(drop, errors="ignore") for k, v in out.items()})
        ds = ds.rename({"yc": "y", "xc": "x"}) if "yc" in ds.dims else ds
        lat = _coordinate(raw, "lat", source)
        lon = _coordinate(raw, "lon", source)
        ds = ds.assign_coords(lat=(("y", "x"), lat), lon=(("y", "x"), lon))
        if present["siconc"] is not None:
            conc = _field(raw[present["siconc"]], source).rename({"yc": "y", "xc": "x"})
            ds["mask"] = mask_from(conc).drop_vars([*drop, "y", "x"], errors="ignore")
        start, end = _windows(raw, source)
        ds = assign_time_bounds(ds, start, end)
        ds.attrs["time_window"] = (
            "each step is the mean over [time_start, time_end) (7 days); time is the window "
            "centre; consecutive windows may overlap"
        )
        return ds


def _field(da: xr.DataArray, source: str) -> xr.DataArray:
    if set(da.dims) != {"time", "yc", "xc"}:
        raise DataError(
            f"{source}: {da.name} has dims {da.dims}; CS2SMOS fields are (time, yc, xc)."
        )
    return da.transpose("time", "yc", "xc")


def _coordinate(raw: xr.Dataset, name: str, source: str) -> np.ndarray:
    da = raw[name]
    if set(da.dims) != {"yc", "xc"}:
        raise DataError(f"{source}: {name} has dims {da.dims}; expected (yc, xc).")
    return da.transpose("yc", "xc").values.astype(np.float64)


def _windows(raw: xr.Dataset, source: str) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """``[start, end)`` of each window from ``time_bnds``, checked to be 7 days around ``time``."""
    if "time_bnds" not in raw:
        raise DataError(
            f"{source}: no time_bnds variable, so the 7-day window of each file is unknown. "
            f"CS2SMOS files carry time_bnds; download the files again."
        )
    bounds = raw["time_bnds"]
    if bounds.ndim != 2 or bounds.dims[0] != "time" or bounds.shape[1] != 2:
        raise DataError(f"{source}: time_bnds has dims {bounds.dims}; expected (time, 2).")
    values = bounds.values
    if not np.issubdtype(values.dtype, np.datetime64):
        raise DataError(
            f"{source}: time_bnds could not be decoded as dates (no units?); expected seconds "
            f"since 1978-01-01 as in the product."
        )
    start = pd.DatetimeIndex(values[:, 0])
    end = pd.DatetimeIndex(values[:, 1]).ceil("D")  # an inclusive last second -> next midnight
    times = pd.DatetimeIndex(raw["time"].values)
    wrong = (end - start) != WINDOW
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise DataError(
            f"{source}: the window of step {times[i]} is {start[i]} to {end[i]}, not 7 days; "
            f"this reader takes the 7-day CS2SMOS product only (monthly or daily thickness "
            f"products need their own reader)."
        )
    outside = (times < start) | (times > end)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"{source}: time {times[i]} lies outside its window {start[i]} to {end[i]}; the file's "
            f"time or time_bnds is wrong."
        )
    return start, end
