"""ERA5 single-level files as the Copernicus Climate Data Store delivers them.

Two layouts, copied from the CDS's NetCDF output:

* ``layout="new"`` (the CDS since September 2024): NetCDF4, time dim ``valid_time`` (int64
  ``seconds since 1970-01-01``), a scalar ``number`` coordinate (0 for the reanalysis), with
  ``expver=True`` the ``expver`` string variable along ``valid_time`` the CDS writes (``"0001"``
  ERA5, ``"0005"`` ERA5T for the last step; off by default: with netCDF-C 4.10.1 / HDF5 2.2.0 a
  file holding a variable-length string variable, opened lazily several times in one process,
  made the next ``netCDF4.Dataset`` open of it crash, which a test process opening the same
  fixture many times hits),
  float64 ``latitude`` (descending, 90 first) and ``longitude``, float32 variables with NaN as
  ``_FillValue`` and the ``GRIB_*`` attributes cfgrib writes. A request mixing instantaneous
  and accumulated variables comes as two files, ``..._stepType-instant.nc`` and
  ``..._stepType-accum.nc`` (``split_streams=True``).
* ``layout="old"`` (the legacy CDS, ``grib_to_netcdf``): NetCDF3 64-bit offset, time dim
  ``time`` (int32 ``hours since 1900-01-01 00:00:00.0``), float32 ``latitude`` (descending) and
  ``longitude``, int16 variables packed per file with ``scale_factor``/``add_offset`` spanning
  the file's range and ``_FillValue = missing_value = -32767``. ``expver=True`` adds the
  ``expver`` dimension (1 = ERA5, 5 = ERA5T) the legacy CDS wrote for requests reaching the
  preliminary period: each step holds data under one ``expver`` and fill under the other.

Variables: ``t2m`` (K), ``u10``/``v10`` (m s**-1, east/north), ``msl`` (Pa) and the accumulated
``ssrd``/``strd`` (J m**-2): the true flux of :func:`kgcm.synthetic.products.truth` at the valid
time times ``accumulation_seconds`` (3600 for the hourly reanalysis, 86400 for the monthly means,
whose accumulations are per day). Atmospheric fields cover land too: nothing is filled.
``ensemble`` > 1 writes a ``number`` dimension of that many members (an ensemble product).
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd

from kgcm.errors import ConfigError
from kgcm.synthetic.products import pack_int, time_blocks, truth

FILL = -32767
#: product name -> (canonical truth key, units, long_name, standard_name, paramId, accumulated)
VARIABLES = {
    "t2m": ("tas", "K", "2 metre temperature", None, 167, False),
    "u10": ("uas", "m s**-1", "10 metre U wind component", None, 165, False),
    "v10": ("vas", "m s**-1", "10 metre V wind component", None, 166, False),
    "msl": ("psl", "Pa", "Mean sea level pressure", "air_pressure_at_mean_sea_level", 151, False),
    "ssrd": (
        "rsds",
        "J m**-2",
        "Surface short-wave (solar) radiation downwards",
        "surface_downwelling_shortwave_flux_in_air",
        169,
        True,
    ),
    "strd": (
        "rlds",
        "J m**-2",
        "Surface long-wave (thermal) radiation downwards",
        None,
        175,
        True,
    ),
}


def grid(ny: int, nx: int, lat_min: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """1-D latitude (north to south, from 90) and longitude (from ``lon0``, eastward)."""
    lat = np.linspace(90.0, lat_min, ny)
    lon = lon0 + np.arange(nx) * (360.0 / nx)
    return lat, lon


def write(
    directory: Path,
    *,
    layout: str = "new",
    ny: int = 13,
    nx: int = 24,
    lat_min: float = 60.0,
    lon0: float = 0.0,
    start: str = "2020-01-01",
    steps: int = 48,
    freq: str = "h",
    steps_per_file: int = 24,
    variables: tuple[str, ...] = tuple(VARIABLES),
    split_streams: bool = True,
    accumulation_seconds: float | None = None,
    expver: bool = False,
    ensemble: int = 0,
    flow: str = "default",
) -> list[Path]:
    """Write ``steps`` time steps every ``freq`` (pandas frequency: ``"h"``, ``"6h"``, ``"D"``,
    ``"MS"``), ``steps_per_file`` per file; returns the file paths.

    ``accumulation_seconds`` defaults to 3600 for sub-daily and daily steps and 86400 for
    monthly ones (``freq="MS"``), as ERA5 stores them. ``flow`` is passed to
    :func:`kgcm.synthetic.products.truth` (it changes ocean and ice velocities only: winds are
    east/north in ERA5, so there is nothing to rotate).
    """
    if layout not in ("new", "old"):
        raise ConfigError(f"layout must be 'new' or 'old'; got {layout!r}.")
    unknown = [v for v in variables if v not in VARIABLES]
    if unknown:
        raise ConfigError(f"unknown ERA5 variables {unknown}; known: {list(VARIABLES)}.")
    if accumulation_seconds is None:
        accumulation_seconds = 86400.0 if freq == "MS" else 3600.0
    lat, lon = grid(ny, nx, lat_min, lon0)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    times = pd.date_range(start, periods=steps, freq=freq)
    groups = (
        [
            [v for v in variables if not VARIABLES[v][5]],
            [v for v in variables if VARIABLES[v][5]],
        ]
        if layout == "new" and split_streams
        else [list(variables)]
    )
    groups = [g for g in groups if g]
    paths = []
    for block in time_blocks(times, steps_per_file):
        fields = truth(lat2, lon2, block, flow=flow)
        for group in groups:
            kind = "accum" if all(VARIABLES[v][5] for v in group) else "instant"
            suffix = f"_stepType-{kind}" if len(groups) > 1 else ""
            path = directory / f"era5_single_levels_{block[0]:%Y%m%d%H}{suffix}.nc"
            data = {}
            for name in group:
                key, _, _, _, _, accumulated = VARIABLES[name]
                values = np.asarray(fields[key], dtype=np.float64)
                data[name] = values * accumulation_seconds if accumulated else values
            if layout == "new":
                _write_new(path, block, lat, lon, data, kind, expver, ensemble)
            else:
                _write_old(path, block, lat, lon, data, expver, ensemble)
            paths.append(path)
    return paths


def _members(values: np.ndarray, ensemble: int) -> np.ndarray:
    """``(time, y, x)`` -> ``(time, number, y, x)`` with members differing slightly."""
    offsets = 0.01 * np.arange(ensemble)[None, :, None, None]
    return values[:, None] * (1.0 + offsets)


def _write_new(
    path: Path,
    block: pd.DatetimeIndex,
    lat: np.ndarray,
    lon: np.ndarray,
    data: dict[str, np.ndarray],
    kind: str,
    expver: bool,
    ensemble: int,
) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.GRIB_centre = "ecmf"
        nc.GRIB_centreDescription = "European Centre for Medium-Range Weather Forecasts"
        nc.GRIB_subCentre = np.int64(0)
        nc.Conventions = "CF-1.7"
        nc.institution = "European Centre for Medium-Range Weather Forecasts"
        nc.history = (
            "2024-10-01T00:00 GRIB to CDM+CF via cfgrib-0.9.14.1/ecCodes-2.36.0 with "
            f'{{"source": "tmp.grib", "filter_by_keys": {{"stepType": ["{kind}"]}}, '
            '"encode_cf": ["parameter", "time", "geography", "vertical"]}'
        )
        nc.createDimension("valid_time", len(block))
        nc.createDimension("latitude", len(lat))
        nc.createDimension("longitude", len(lon))
        dims: tuple[str, ...] = ("valid_time", "latitude", "longitude")
        if ensemble > 1:
            nc.createDimension("number", ensemble)
            dims = ("valid_time", "number", "latitude", "longitude")
            number = nc.createVariable("number", "i8", ("number",))
            number[:] = np.arange(ensemble)
        else:
            number = nc.createVariable("number", "i8", ())
            number[...] = 0
        number.long_name, number.units = "ensemble member numerical id", "1"
        number.standard_name = "realization"
        t = nc.createVariable("valid_time", "i8", ("valid_time",))
        t.long_name, t.standard_name = "time", "time"
        t.units, t.calendar = "seconds since 1970-01-01", "proleptic_gregorian"
        t[:] = ((block - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)).to_numpy()
        for name, values, units in (
            ("latitude", lat, "degrees_north"),
            ("longitude", lon, "degrees_east"),
        ):
            v = nc.createVariable(name, "f8", (name,), fill_value=np.nan)
            v.units, v.standard_name, v.long_name = units, name, name
            v.stored_direction = "decreasing" if name == "latitude" else "increasing"
            v[:] = values
        if expver:
            ev = nc.createVariable("expver", str, ("valid_time",))
            ev.long_name = "Experiment version"
            labels = ["0001"] * len(block)
            labels[-1] = "0005"  # the last step is preliminary ERA5T
            ev[:] = np.array(labels, dtype=object)
        for name, values in data.items():
            _, units, long_name, std, param, accumulated = VARIABLES[name]
            var = nc.createVariable(name, "f4", dims, fill_value=np.float32(np.nan))
            var.GRIB_paramId = np.int64(param)
            var.GRIB_stepType = "accum" if accumulated else "instant"
            var.GRIB_dataType = "fc" if accumulated else "an"
            var.GRIB_gridType = "regular_ll"
            var.GRIB_units = units
            var.long_name, var.units = long_name, units
            var.standard_name = std or "unknown"
            var.coordinates = "number valid_time latitude longitude expver"
            var[:] = (_members(values, ensemble) if ensemble > 1 else values).astype(np.float32)


def _write_old(
    path: Path,
    block: pd.DatetimeIndex,
    lat: np.ndarray,
    lon: np.ndarray,
    data: dict[str, np.ndarray],
    expver: bool,
    ensemble: int,
) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.Conventions = "CF-1.6"
        nc.history = (
            "2021-03-01 00:00:00 GMT by grib_to_netcdf-2.20.0: /opt/ecmwf/eccodes/bin/"
            "grib_to_netcdf -S param -o /cache/data/adaptor.mars.internal.nc /cache/tmp.grib"
        )
        nc.createDimension("longitude", len(lon))
        nc.createDimension("latitude", len(lat))
        dims: list[str] = ["time", "latitude", "longitude"]
        if ensemble > 1:
            nc.createDimension("number", ensemble)
            dims.insert(1, "number")
            number = nc.createVariable("number", "i4", ("number",))
            number.long_name = "ensemble_member"
            number[:] = np.arange(ensemble)
        if expver:
            nc.createDimension("expver", 2)
            dims.insert(1, "expver")
            ev = nc.createVariable("expver", "i4", ("expver",))
            ev.long_name = "expver"
            ev[:] = [1, 5]
        nc.createDimension("time", None)
        for name, values, units in (
            ("longitude", lon, "degrees_east"),
            ("latitude", lat, "degrees_north"),
        ):
            v = nc.createVariable(name, "f4", (name,))
            v.units, v.long_name = units, name
            v[:] = values
        t = nc.createVariable("time", "i4", ("time",))
        t.units, t.long_name, t.calendar = "hours since 1900-01-01 00:00:00.0", "time", "gregorian"
        t[:] = ((block - pd.Timestamp("1900-01-01")) // pd.Timedelta(hours=1)).to_numpy()
        for name, values in data.items():
            _, units, long_name, std, _, _ = VARIABLES[name]
            full = _members(values, ensemble) if ensemble > 1 else values
            if expver:  # ERA5 in expver 1 except the last step, which is ERA5T (expver 5)
                final = full.copy()
                final[-1] = np.nan
                prelim = np.full_like(full, np.nan)
                prelim[-1] = full[-1]
                full = np.stack([final, prelim], axis=1)
            # grib_to_netcdf packs each variable over the file's own range
            lo, hi = float(np.nanmin(full)), float(np.nanmax(full))
            scale = max(hi - lo, 1e-12) / (2**16 - 4)
            offset = 0.5 * (hi + lo)  # the range maps to -32766..32766, clear of the fill
            var = nc.createVariable(name, "i2", tuple(dims), fill_value=FILL)
            var.set_auto_maskandscale(False)
            var.scale_factor, var.add_offset = scale, offset
            var.missing_value = np.int16(FILL)
            var.units, var.long_name = units, long_name
            if std:
                var.standard_name = std
            var[:] = pack_int(full, scale=scale, offset=offset, fill=FILL, dtype=np.int16)
