"""ECMWF ERA5 single levels, as the Copernicus Climate Data Store delivers them in NetCDF.

The atmospheric confounders of the ocean forcing (``docs/pipeline.md``): ``t2m`` → ``tas`` (K),
``u10``/``v10`` → ``uas``/``vas`` (m s-1, already east/north), ``msl`` → ``psl`` (Pa), and the
accumulated radiation ``ssrd``/``strd`` (J m-2) → ``rsds``/``rlds`` (W m-2, a mean flux).

Layouts read (each decoded with mask-and-scale):

* the CDS since September 2024: time dim ``valid_time``, a scalar ``number`` coordinate, an
  ``expver`` string coordinate along time, float32 with NaN fill. A request mixing
  instantaneous and accumulated variables arrives as two files (``stepType-instant`` and
  ``stepType-accum``) on the same times: files holding different variables are merged, files
  holding the same variables are joined along time.
* the legacy CDS (``grib_to_netcdf``): time dim ``time``, int16 packed with ``scale_factor``/
  ``add_offset`` per file and ``_FillValue``/``missing_value`` -32767.

Grid: 1-D ``latitude`` (ERA5 stores it north to south; returned south to north) and
``longitude`` (kept as the file gives it, 0..360 or -180..180), as 2-D ``lat``/``lon``.
Atmospheric fields cover land, so the reader gives no ``mask``: the ocean products do.

``number`` (ensemble member): a scalar or length-1 coordinate is dropped; several members are
refused (an ensemble product: choose one member or use the reanalysis), since averaging or
stacking members is a modelling choice the reader must not make. ``expver``: ERA5 (``1``) and
its preliminary continuation ERA5T (``5``). In the legacy layout it is a dimension holding
each step under one of them and fill under the other: the two are combined, ERA5 where it has
data, ERA5T elsewhere; the labels are recorded in ``attrs["era5_expver"]`` (ERA5T steps may
still be revised by ECMWF). In the new layout it is a variable-length string label per step,
which is dropped unread (``attrs["era5_expver"] = "per-step-labels-not-read"``): reading it
while xarray holds the file open made later opens of the file fail in HDF5 (netCDF-C 4.10.1,
HDF5 2.2.0), and the values are ERA5's either way.

Time step and accumulations. ERA5 accumulations are over a processing period ending at the
valid time; a mean flux is the accumulation divided by that period:

* sub-daily steps (hourly, or every 3 or 6 hours from the hourly reanalysis): 3600 s, the
  hourly reanalysis's one-hour accumulation, whichever hours were downloaded. The ensemble
  products accumulate over 3 hours: they are refused by their ``number`` dimension, and
  ``accumulation_seconds=10800`` reads an ensemble member or mean file taken apart;
* monthly steps (month starts; the monthly averaged reanalysis): 86400 s, its accumulations
  being scaled to "per day";
* daily steps: not decidable from the file. The CDS's post-processed daily statistics hold the
  daily mean of hourly accumulations (3600 s), a daily sum 86400 s, a once-a-day download of
  the hourly data 3600 s: the reader refuses accumulated variables at a daily step unless
  ``accumulation_seconds=`` says which. Instantaneous variables at a daily step are taken as
  the file's daily value.

Reader options: ``accumulation_seconds`` (overrides the rule above) and ``time_step``
(``"sub-daily"``, ``"daily"`` or ``"monthly"``: only needed when the files hold one time
step, whose spacing cannot be measured). The dataset's ``attrs["time_step"]`` is the detected
kind; sub-daily data also carry ``time_interval_hours``. ``kgcm prepare`` turns sub-daily data
into daily means with ``resample = "mean"`` and refuses days with missing hours.
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
    canonical_variable,
    netcdf_header,
    open_netcdf,
)

#: product variable -> canonical name
NAMES = {"t2m": "tas", "u10": "uas", "v10": "vas", "msl": "psl", "ssrd": "rsds", "strd": "rlds"}
#: accumulated product variables (J m-2 over the processing period)
ACCUMULATED = ("ssrd", "strd")
#: the time dim: new CDS, legacy CDS
TIME_NAMES = ("valid_time", "time")
#: dims of files laid out by forecast start and step, which this reader does not read
FORECAST_DIMS = ("forecast_reference_time", "forecast_period", "step")
TIME_STEP_KINDS = ("sub-daily", "daily", "monthly")
#: accepted spellings (lower case, single spaces) of an accumulation and of a flux
_J_M2 = ("j m**-2", "j m-2", "j m^-2", "j/m2", "j/m^2", "j m**-2 s**0")
_W_M2 = ("w m**-2", "w m-2", "w m^-2", "w/m2", "w/m^2")
#: ERA5 final before ERA5T when a step has both
_EXPVER_ORDER = ("1", "5")


class Era5Reader(Reader):
    """Reader of ERA5 single-level NetCDF files from the Climate Data Store (old and new)."""

    name: ClassVar[str] = "era5"
    product: ClassVar[str] = (
        "ECMWF ERA5 single levels (CDS reanalysis-era5-single-levels), regular 0.25 deg "
        "lat/lon, hourly (also daily statistics, monthly means)"
    )
    time_step: ClassVar[str] = "sub-daily"
    provides: ClassVar[tuple[str, ...]] = tuple(NAMES.values())

    def guess_can_open(self, path: Path) -> bool:
        header = netcdf_header(path)
        if header is None:
            return False
        variables, _ = header
        if not {"latitude", "longitude"} <= set(variables):
            return False
        if variables["latitude"]["_dims"] != ("latitude",):
            return False
        if variables["longitude"]["_dims"] != ("longitude",):
            return False
        if not any(t in variables for t in TIME_NAMES):
            return False
        fields = [v for v in NAMES if v in variables]
        return bool(fields) and all(
            variables[v]["_dims"][-2:] == ("latitude", "longitude") for v in fields
        )

    def open(self, paths: Any, **options: Any) -> xr.Dataset:
        self._detected: dict[str, Any] = {}
        return super().open(paths, **options)

    def finish(self, ds: xr.Dataset, files: list[Path], opts: OpenOptions) -> xr.Dataset:
        out = super().finish(ds, files, opts)
        out.attrs.update(getattr(self, "_detected", {}))
        return out

    def _open(
        self,
        files: list[Path],
        opts: OpenOptions,
        *,
        accumulation_seconds: float | None = None,
        time_step: str | None = None,
        **options: Any,
    ) -> xr.Dataset:
        if options:
            raise DataError(
                f"{self.name} has no options {sorted(options)}; its own options are "
                f"accumulation_seconds and time_step."
            )
        if time_step is not None and time_step not in TIME_STEP_KINDS:
            raise DataError(f"time_step must be one of {TIME_STEP_KINDS}; got {time_step!r}.")
        if accumulation_seconds is not None and not float(accumulation_seconds) > 0:
            raise DataError(
                f"accumulation_seconds must be a positive number of seconds; got "
                f"{accumulation_seconds!r}."
            )
        source = _describe(files)
        wanted = [v for v in NAMES if opts.variables is None or NAMES[v] in opts.variables]
        if not wanted:
            raise DataError(
                f"{source}: {self.name} data has no {list(opts.variables or ())}; it provides "
                f"{list(self.provides)}. Atmospheric fields cover land: the ocean products give "
                f"the mask."
            )
        parts = [_open_one(f, wanted, opts.chunks) for f in files]
        raw = _combine(parts, files, source)
        present = [v for v in NAMES if v in raw]
        if not present:
            raise DataError(f"{source}: none of the ERA5 variables {list(NAMES)} is in the files.")
        times = pd.DatetimeIndex(raw["time"].values)
        kind, interval = _time_step(times, time_step, source)
        accumulated = [v for v in present if v in ACCUMULATED]
        seconds = _accumulation_seconds(kind, accumulated, accumulation_seconds, source)

        out: dict[str, xr.DataArray] = {}
        for var in present:
            da = raw[var]
            if var in ACCUMULATED:
                out[NAMES[var]] = _to_flux(da, var, seconds, source=source, units=opts.units)
            else:
                out[NAMES[var]] = canonical_variable(
                    da, NAMES[var], source=source, units=opts.units
                )
        ds = xr.Dataset(out)
        lat = raw["latitude"].values.astype(np.float64)
        lon = raw["longitude"].values.astype(np.float64)
        if lat.size > 1 and lat[0] > lat[-1]:  # ERA5 runs north to south; y runs northward
            ds = ds.isel(latitude=slice(None, None, -1))
            lat = lat[::-1]
        ds = ds.rename({"latitude": "y", "longitude": "x"}).drop_vars(["y", "x"], errors="ignore")
        lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
        ds = ds.assign_coords(lat=(("y", "x"), lat2), lon=(("y", "x"), lon2))
        self._detected = {"time_step": kind, "era5_expver": raw.attrs.get("era5_expver", "")}
        if interval is not None:
            self._detected["time_interval_hours"] = interval
        if accumulated:
            self._detected["accumulation_seconds"] = seconds
        return ds


def _open_one(path: Path, wanted: list[str], chunks: Any) -> xr.Dataset:
    """One file as ``(time, latitude, longitude)`` product variables (lazy)."""
    header = netcdf_header(path)
    if header is None:
        # let open_netcdf name the file and say it cannot be read
        open_netcdf([path], chunks=None, concat_dim="time")
        raise DataError(f"{path}: cannot be read as NetCDF.")
    variables, _ = header
    forecast = [d for d in FORECAST_DIMS if d in variables]
    if forecast:
        raise DataError(
            f"{path}: laid out by forecast start and step ({forecast}), not by valid time. "
            f"Request the reanalysis from reanalysis-era5-single-levels, whose accumulations "
            f"come on valid_time."
        )
    names = [t for t in TIME_NAMES if t in variables and variables[t]["_dims"] == (t,)]
    if len(names) != 1:
        raise DataError(
            f"{path}: expected one time dimension, 'valid_time' (CDS since 2024) or 'time' "
            f"(legacy CDS); found {names or 'none'}."
        )
    tname = names[0]
    chunk_map = (
        {{"time": tname, "y": "latitude", "x": "longitude"}.get(k, k): v for k, v in chunks.items()}
        if isinstance(chunks, Mapping)
        else chunks
    )
    present = [v for v in wanted if v in variables]
    drop = [v for v in NAMES if v in variables and v not in present]
    expver_labels: list[str] = []
    if "expver" in variables and variables["expver"]["_dims"] == (tname,):
        # the new layout's per-step label is a variable-length string. It is not read: reading
        # it while xarray holds the file open made later opens of the file fail in HDF5
        # ("NetCDF: HDF error"), and the label is provenance only
        expver_labels = ["per-step-labels-not-read"]
        drop.append("expver")
    raw = open_netcdf([path], chunks=chunk_map, concat_dim=tname)
    raw = raw.drop_vars(drop)
    raw = raw.rename({tname: "time"})
    if "number" in raw.dims:
        if raw.sizes["number"] > 1:
            raise DataError(
                f"{path}: holds {raw.sizes['number']} ensemble members (dimension 'number'); "
                f"kgcm reads one field per variable. Select one member (e.g. with xarray "
                f"isel(number=0)) or download the reanalysis (product_type 'reanalysis')."
            )
        raw = raw.isel(number=0, drop=True)
    raw = raw.drop_vars("number", errors="ignore")
    if "expver" in raw.dims:
        labels = [str(int(v)) if _is_int(v) else str(v) for v in raw["expver"].values]
        order = sorted(
            range(len(labels)),
            key=lambda i: _EXPVER_ORDER.index(labels[i]) if labels[i] in _EXPVER_ORDER else 99,
        )
        combined = {}
        for v in present:
            da = raw[v].isel(expver=order[0], drop=True)
            for i in order[1:]:
                da = da.combine_first(raw[v].isel(expver=i, drop=True))
            combined[v] = da.assign_attrs(raw[v].attrs)
        keep = {c: raw[c] for c in ("latitude", "longitude")}
        raw = xr.Dataset(combined, coords={"time": raw["time"], **keep})
        expver_labels = labels
    elif "expver" in raw.variables:
        raise DataError(
            f"{path}: 'expver' has dims {raw['expver'].dims}; expected a dimension (legacy CDS) "
            f"or a label along {tname} (CDS since 2024)."
        )
    for v in present:
        extra = set(raw[v].dims) - {"time", "latitude", "longitude"}
        if extra:
            raise DataError(
                f"{path}: {v} has unexpected dims {sorted(extra)}; expected ({tname}, latitude, "
                f"longitude)."
            )
        raw[v] = raw[v].transpose("time", "latitude", "longitude")
    raw = raw[present].assign_coords(latitude=raw["latitude"], longitude=raw["longitude"])
    raw.attrs["era5_expver"] = " ".join(expver_labels)
    return raw


def _is_int(value: Any) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError):
        return False


def _combine(parts: list[xr.Dataset], files: list[Path], source: str) -> xr.Dataset:
    """Join files with the same variables along time; merge groups with different variables."""
    first = parts[0]
    for f, p in zip(files[1:], parts[1:], strict=True):
        for c in ("latitude", "longitude"):
            if p.sizes[c] != first.sizes[c] or not np.allclose(p[c].values, first[c].values):
                raise DataError(
                    f"{f}: its {c} differs from that of {files[0]}; ERA5 files read together "
                    f"must share the grid (same area and resolution in the request)."
                )
    # a file with none of the requested variables (the accum file when only t2m is wanted)
    # adds nothing
    if any(p.data_vars for p in parts):
        parts = [p for p in parts if p.data_vars]
    groups: dict[tuple[str, ...], list[xr.Dataset]] = {}
    for p in parts:
        groups.setdefault(tuple(sorted(str(v) for v in p.data_vars)), []).append(p)
    joined = []
    for group in groups.values():
        ds = group[0] if len(group) == 1 else xr.concat(
            group, dim="time", data_vars="minimal", coords="minimal", compat="override",
            join="override",
        )  # fmt: skip
        joined.append(ds.sortby("time"))
    if len(joined) == 1:
        out = joined[0]
    else:
        spans = [pd.DatetimeIndex(ds["time"].values) for ds in joined]
        if any(len(s) != len(spans[0]) or not (s == spans[0]).all() for s in spans[1:]):
            listing = {
                "+".join(sorted(map(str, ds.data_vars))): f"{len(s)} steps {s[0]} .. {s[-1]}"
                for ds, s in zip(joined, spans, strict=True)
            }
            raise DataError(
                f"{source}: files holding different variables cover different times "
                f"({listing}); give each variable for the same times (the CDS splits one "
                f"request into stepType-instant and stepType-accum files: keep both)."
            )
        out = xr.merge(
            [ds.drop_vars(["latitude", "longitude"]) for ds in joined[1:]] + [joined[0]],
            join="override",
            compat="override",
        )
    labels = sorted({lab for p in parts for lab in p.attrs.get("era5_expver", "").split()})
    out.attrs = {"era5_expver": " ".join(labels)}
    return out


def _time_step(times: pd.DatetimeIndex, given: str | None, source: str) -> tuple[str, float | None]:
    """``(kind, hours between steps or None)`` from the time stamps (or ``given``)."""
    unique = times.unique().sort_values()
    if given is not None:
        hours = None
        if given == "sub-daily" and len(unique) > 1:
            hours = float((unique[1:] - unique[:-1]).min() / pd.Timedelta(hours=1))
        return given, hours
    if len(unique) < 2:
        raise DataError(
            f"{source}: holds a single time step ({unique[0] if len(unique) else 'none'}), so "
            f"its spacing (hourly, daily or monthly) cannot be measured; pass "
            f"time_step='sub-daily', 'daily' or 'monthly' to the reader."
        )
    gaps = unique[1:] - unique[:-1]
    smallest = gaps.min()
    hour, day = pd.Timedelta(hours=1), pd.Timedelta(days=1)
    month_starts = bool(
        (unique.day == 1).all() and (unique.hour == 0).all() and (unique.minute == 0).all()
    )
    if smallest < day:
        zero = pd.Timedelta(0)
        if smallest % hour != zero or day % smallest != zero or (gaps % smallest != zero).any():
            raise DataError(
                f"{source}: time steps {sorted({str(g) for g in gaps})[:5]} apart are not a "
                f"whole number of hours dividing a day; expected ERA5 hourly data (every 1, 3 "
                f"or 6 hours)."
            )
        if month_starts and (gaps > pd.Timedelta(days=25)).any():
            raise DataError(
                f"{source}: sub-daily steps on the first day of each month only: this looks "
                f"like the monthly averaged reanalysis by hour of day, which kgcm does not read. "
                f"Download the monthly averaged reanalysis or the hourly data."
            )
        return "sub-daily", float(smallest / hour)
    if smallest == day and not (gaps % day != pd.Timedelta(0)).any():
        return "daily", None
    if month_starts and smallest >= pd.Timedelta(days=28):
        return "monthly", None
    raise DataError(
        f"{source}: time steps {sorted({str(g) for g in gaps})[:5]} apart are neither hourly, "
        f"daily nor monthly (month starts); expected ERA5 hourly data, daily statistics or "
        f"monthly means."
    )


def _accumulation_seconds(
    kind: str, accumulated: list[str], given: float | None, source: str
) -> float:
    """The processing period of ERA5 accumulations at this time step (see the module doc)."""
    if given is not None:
        return float(given)
    if kind == "sub-daily":
        return 3600.0
    if kind == "monthly":
        return 86400.0
    if accumulated:
        raise DataError(
            f"{source}: {accumulated} are accumulations (J m-2) at a daily step, and the file "
            f"does not say over how long: the CDS daily statistics hold the daily mean of "
            f"hourly accumulations (pass accumulation_seconds=3600), a daily sum needs "
            f"accumulation_seconds=86400. Or download hourly data and let kgcm prepare average "
            f"it (resample = 'mean')."
        )
    return 3600.0


def _to_flux(
    da: xr.DataArray, var: str, seconds: float, *, source: str, units: Mapping[str, str]
) -> xr.DataArray:
    """An accumulation (J m-2 over ``seconds``) as a mean flux (W m-2); a flux is kept."""
    given = units.get(var, da.attrs.get("units"))
    key = " ".join(str(given).strip().lower().split()) if given is not None else None
    if key in _J_M2:
        out = da / seconds
        note = f"{given} accumulated over {seconds:g} s, divided by {seconds:g} s"
    elif key in _W_M2:
        out, note = da, ""
    else:
        raise DataError(
            f"{source}: variable {var!r} has units {given!r}; expected an accumulation in "
            f"J m**-2 (ERA5) or a flux in W m**-2. If the attribute is wrong, pass "
            f"units={{{var!r}: 'J m**-2'}} to the reader."
        )
    out.attrs = {**da.attrs, "units": "W m-2"}
    if note:
        out.attrs["kgcm_converted_from"] = note
    return out.rename(NAMES[var])
