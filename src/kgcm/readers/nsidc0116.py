r"""NSIDC-0116 v4.1: Polar Pathfinder daily 25 km EASE-Grid sea-ice motion vectors (north).

One NetCDF file per year (``icemotion_daily_nh_25km_YYYY0101_YYYY1231_v4.1.nc``), dims
``time, y(361), x(361)`` on the original EASE-Grid North (spherical Lambert azimuthal equal area,
central meridian 0, described by the ``crs`` grid-mapping variable), 2-D ``latitude``/``longitude``,
float32 ``u``/``v`` in cm/s ALONG THE GRID's x/y axes, and int16 ``icemotion_error_estimate``.

Rotation. The components are turned to east/north with NSIDC's published formulas

.. math::

    u_e = u\cos\lambda + v\sin\lambda, \qquad v_n = -u\sin\lambda + v\cos\lambda ,

i.e. :func:`kgcm.readers.geometry.rotate_to_east_north` with the polar grid angle
:math:`\alpha = -(\lambda - 0)` (:func:`kgcm.readers.geometry.polar_stereographic_angle`, central
meridian 0). The central meridian is read from ``crs`` (``longitude_of_projection_origin``) and
must be 0. The grid is then checked against the file's own latitude/longitude: the x-axis
direction measured from them (:func:`kgcm.readers.geometry.grid_angle_cartesian`) must match the
equal-area projection's (:func:`laea_x_axis_angle`) to a median of 1°, which catches a flipped or
transposed x axis or another projection.

NSIDC's rotation treats the grid as locally conformal; the equal-area projection is not, so on
the sphere the grid's x axis departs from :math:`-\lambda` by up to about 8° at the grid's
30°N corners (median 1.4° over the grid, under 1° north of 70°N). The reader follows NSIDC's
published convention, so its east/north components are those NSIDC users compute; speed is
unaffected.

Units come from the ``units`` attribute of ``u``/``v`` ("cm/s" in the product, converted to m/s;
unknown units are refused, override with ``units={"u": ..., "v": ...}``).

Invalid vectors. A vector is NaN where ``u``/``v`` are fill (land), where
``icemotion_error_estimate`` is negative (possible false ice near coasts: the product's flag for
vectors to remove) and where it is 0 (the product's "no vector here" code: a real estimate always
has a positive error). The product has no land mask, and ice motion is undefined over open water,
so no ``mask`` variable is returned: land, open water and rejected vectors are all NaN.

Times are decoded from the file; a non-standard CF calendar is converted to the standard one by
date label (``xarray.Dataset.convert_calendar``), refused if a date does not exist there.
"""

from __future__ import annotations

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
from kgcm.readers.geometry import (
    grid_angle_cartesian,
    polar_stereographic_angle,
    rotate_to_east_north,
)

#: product (x component, y component) -> canonical (east, north)
COMPONENTS = ("u", "v")
ERROR = "icemotion_error_estimate"
#: EASE-Grid North's central meridian, which NSIDC's rotation formulas assume
CENTRAL_MERIDIAN = 0.0
#: largest median disagreement (degrees) between the EASE angle and the lat/lon grid
ANGLE_TOLERANCE_DEG = 1.0


class Nsidc0116Reader(Reader):
    """Reader of NSIDC-0116 v4.1 daily ice-motion files (northern hemisphere). No options."""

    name: ClassVar[str] = "nsidc-0116"
    product: ClassVar[str] = (
        "NSIDC-0116 v4.1 Polar Pathfinder ice motion, EASE-Grid North 25 km, daily"
    )
    time_step: ClassVar[str] = "daily"
    provides: ClassVar[tuple[str, ...]] = ("usi", "vsi")

    def guess_can_open(self, path: Path) -> bool:
        header = netcdf_header(path)
        if header is None:
            return False
        variables, _ = header
        if not {"u", "v", ERROR, "latitude", "longitude", "time"} <= set(variables):
            return False
        return all(variables[v]["_dims"][-2:] == ("y", "x") for v in (*COMPONENTS, ERROR))

    def _open(self, files: list[Path], opts: OpenOptions, **options: Any) -> xr.Dataset:
        if options:
            raise DataError(f"{self.name} has no options {sorted(options)}.")
        source = _describe(files)
        if opts.variables is not None and len({"usi", "vsi"} & set(opts.variables)) == 1:
            raise DataError(
                f"{source}: usi and vsi are one vector (rotated together from u and v); ask for "
                f"both, variables=['usi', 'vsi']."
            )
        raw = open_netcdf(files, chunks=opts.chunks, concat_dim="time")
        missing = [v for v in (*COMPONENTS, ERROR, "latitude", "longitude") if v not in raw]
        if missing:
            raise DataError(
                f"{source}: NSIDC-0116 files have u, v, {ERROR}, latitude and longitude; "
                f"{missing} missing. Download the complete yearly files again."
            )
        raw = _standard_calendar(raw, source)
        lat = _coordinate(raw, "latitude", source)
        lon = _coordinate(raw, "longitude", source)
        _check_projection(raw, source)
        angle = polar_stereographic_angle(lon, CENTRAL_MERIDIAN)
        _check_angle(lat, lon, source)

        error = _grid_field(raw[ERROR], source)
        valid = error > 0  # negative: coastal false ice; 0: no vector; NaN (fill): no data
        u = canonical_variable(
            _grid_field(raw["u"], source), "usi", source=source, units=opts.units
        )
        v = canonical_variable(
            _grid_field(raw["v"], source), "vsi", source=source, units=opts.units
        )
        u_east, v_north = rotate_to_east_north(u, v, xr.DataArray(angle, dims=("y", "x")))
        drop = ["y", "x", "latitude", "longitude"]
        ds = xr.Dataset(
            {
                "usi": u_east.where(valid).rename("usi").drop_vars(drop, errors="ignore"),
                "vsi": v_north.where(valid).rename("vsi").drop_vars(drop, errors="ignore"),
            }
        )
        return ds.assign_coords(lat=(("y", "x"), lat), lon=(("y", "x"), lon))


def _grid_field(da: xr.DataArray, source: str) -> xr.DataArray:
    extra = set(da.dims) - {"time", "y", "x"}
    if extra or "time" not in da.dims:
        raise DataError(
            f"{source}: {da.name} has dims {da.dims}; NSIDC-0116 fields are (time, y, x)."
        )
    return da.transpose("time", "y", "x")


def _coordinate(raw: xr.Dataset, name: str, source: str) -> np.ndarray:
    """2-D ``(y, x)`` latitude or longitude (a copy repeated along ``time`` is reduced to one)."""
    da = raw[name]
    if "time" in da.dims:
        da = da.isel(time=0, drop=True)
    if set(da.dims) != {"y", "x"}:
        raise DataError(f"{source}: {name} has dims {da.dims}; expected (y, x).")
    return da.transpose("y", "x").values.astype(np.float64)


def _standard_calendar(raw: xr.Dataset, source: str) -> xr.Dataset:
    if np.issubdtype(raw["time"].dtype, np.datetime64):
        return raw
    try:
        out = raw.convert_calendar("standard", dim="time", use_cftime=False)
    except Exception as exc:
        raise DataError(
            f"{source}: the time axis (calendar {raw['time'].encoding.get('calendar')!r}) cannot "
            f"be mapped to the standard calendar by date ({exc}). Fix the file's time variable."
        ) from exc
    if out.sizes["time"] != raw.sizes["time"]:
        raise DataError(
            f"{source}: {raw.sizes['time'] - out.sizes['time']} dates of the file's calendar do "
            f"not exist in the standard calendar; fix the file's time variable."
        )
    pd.DatetimeIndex(out["time"].values)  # raises on anything that is not a date
    return out


def _check_projection(raw: xr.Dataset, source: str) -> None:
    """Refuse a grid mapping other than EASE-Grid North with central meridian 0."""
    names = {str(raw[v].attrs.get("grid_mapping", "")) for v in COMPONENTS} - {""}
    if len(names) > 1:
        raise DataError(f"{source}: u and v name different grid mappings {sorted(names)}.")
    gm = names.pop() if names else "crs"
    if gm not in raw.variables:
        return  # no grid mapping: the product's grid is EASE-Grid North; _check_angle verifies
    attrs = raw[gm].attrs
    kind = attrs.get("grid_mapping_name")
    if kind is not None and kind != "lambert_azimuthal_equal_area":
        raise DataError(
            f"{source}: grid mapping {gm!r} is {kind!r}; NSIDC-0116 uses the EASE-Grid "
            f"('lambert_azimuthal_equal_area'). Choose the reader of this file's product."
        )
    lat0 = attrs.get("latitude_of_projection_origin")
    if lat0 is not None and float(lat0) != 90.0:
        raise DataError(
            f"{source}: grid mapping {gm!r} has latitude_of_projection_origin {lat0}; the "
            f"{Nsidc0116Reader.name} reader handles the northern files (icemotion_daily_nh_*) only."
        )
    lon0 = attrs.get("longitude_of_projection_origin")
    if lon0 is not None and float(lon0) != CENTRAL_MERIDIAN:
        raise DataError(
            f"{source}: grid mapping {gm!r} has longitude_of_projection_origin {lon0}; NSIDC's "
            f"rotation u_e = u cos(lon) + v sin(lon) holds for central meridian 0 only."
        )


def laea_x_axis_angle(lat: np.ndarray, lon: np.ndarray, central_meridian: float) -> np.ndarray:
    r"""Direction on the sphere (radians, anticlockwise from east) of the x axis of a north polar
    Lambert azimuthal equal-area grid.

    The map's x axis is :math:`\sin\lambda'` outward-radial plus :math:`\cos\lambda'` east
    (:math:`\lambda' = \lambda - \lambda_0`); on the sphere the radial part is divided by the
    radial scale :math:`k_r = \cos(\pi/4 - \varphi/2)` and the east part by :math:`1/k_r`, so

    .. math::

        \alpha = \operatorname{atan2}\left(-\sin\lambda' / \cos^2(\pi/4 - \varphi/2),
        \cos\lambda'\right).
    """
    lam = np.deg2rad(np.asarray(lon, dtype=np.float64) - central_meridian)
    phi = np.deg2rad(np.asarray(lat, dtype=np.float64))
    return np.arctan2(-np.sin(lam) / np.cos(np.pi / 4 - phi / 2) ** 2, np.cos(lam))


def _check_angle(lat: np.ndarray, lon: np.ndarray, source: str) -> None:
    """Refuse files whose lat/lon put the grid's x axis somewhere else than EASE-Grid North."""
    measured = grid_angle_cartesian(lat, lon)
    expected = laea_x_axis_angle(lat, lon, CENTRAL_MERIDIAN)
    mismatch = np.rad2deg(np.abs(np.angle(np.exp(1j * (measured - expected)))))
    median = float(np.nanmedian(mismatch))
    if not median <= ANGLE_TOLERANCE_DEG:
        raise DataError(
            f"{source}: the x axis of the latitude/longitude grid is not where EASE-Grid North "
            f"(central meridian 0) puts it (median mismatch {median:.1f} degrees), so u/v cannot "
            f"be rotated with NSIDC's formulas. The file's x/y axes are flipped or transposed; "
            f"use the file as distributed."
        )
