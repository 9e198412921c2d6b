r"""NSIDC-0116 v4.1 (Polar Pathfinder daily 25 km EASE-Grid sea-ice motion vectors) files.

Layout copied from the product: one NetCDF file per calendar year named
``icemotion_daily_nh_25km_YYYY0101_YYYY1231_v4.1.nc`` (the name keeps the full-year span even when
``days`` writes only part of a year), dims ``time, y, x``, projection coordinates ``x``/``y`` in
metres (``y`` decreasing: row 0 is the top of the map), 2-D float32 ``latitude``/``longitude``, a
``crs`` grid-mapping variable (original EASE-Grid North: spherical Lambert azimuthal equal area,
radius 6371.228 km, central meridian 0), float32 ``u``/``v`` in cm/s ALONG the grid's x/y axes and
int16 ``icemotion_error_estimate``; time in days since 1970-01-01.

The true east/north ice velocity (:func:`kgcm.synthetic.products.truth` ``usi``/``vsi``) is turned
into grid components with the inverse of NSIDC's rotation,

.. math::

    u = u_e\cos\lambda - v_n\sin\lambda, \qquad v = u_e\sin\lambda + v_n\cos\lambda ,

so a reader that applies ``u_e = u cos(lon) + v sin(lon)``, ``v_n = -u sin(lon) + v cos(lon)``
gets the truth back. Cells are written in four kinds, as the product has them:

* land (:func:`kgcm.synthetic.products.land`): ``u``/``v`` are ``_FillValue`` (-9999 here; the
  reader relies only on the declared ``_FillValue``), error 0;
* ocean without vectors (south of :data:`NO_ICE_LAT`): ``u = v = 0`` and error 0, the product's
  "no vector here" code;
* coastal false ice (ocean cells next to land, the interpolation's spurious ice): plausible but
  wrong vectors with a NEGATIVE error estimate, which a reader must discard;
* ice: true vectors with a positive error estimate.

Latitude/longitude are rounded to float32 before the truth is computed, so the truth is exact on
the coordinates a reader reads. Smaller grids than 361 x 361 keep the product's extent (the cell
size grows), so tests can use a few hundred cells.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd

from kgcm.synthetic.products import land, truth

#: EASE-Grid North: sphere radius (m), cells, cell size (m) of the 361 x 361 product grid
RADIUS_M = 6371228.0
N_CELLS = 361
CELL_M = 25067.525
#: fill of ``u``/``v`` on land
FILL = -9999.0
#: no ice (and so no vectors) south of this latitude in generated files
NO_ICE_LAT = 45.0
#: the spurious coastal vector (cm/s, grid x and y)
COASTAL_VECTOR_CMS = (7.0, -4.0)


def grid(n: int = N_CELLS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Projection ``x`` (increasing), ``y`` (decreasing), both ``(n,)`` in metres, and 2-D
    ``latitude``, ``longitude`` ``(n, n)`` in degrees (float32-rounded) of an EASE-Grid North
    covering the product's extent with ``n`` cells a side."""
    cell = CELL_M * (N_CELLS - 1) / (n - 1)
    centre = (n - 1) / 2.0
    x = (np.arange(n) - centre) * cell
    y = (centre - np.arange(n)) * cell
    xx, yy = np.meshgrid(x, y)
    rho = np.hypot(xx, yy)
    lat = 90.0 - 2.0 * np.rad2deg(np.arcsin(np.clip(rho / (2.0 * RADIUS_M), -1.0, 1.0)))
    lon = np.rad2deg(np.arctan2(xx, -yy))
    return (
        x,
        y,
        lat.astype(np.float32).astype(np.float64),
        lon.astype(np.float32).astype(np.float64),
    )


def coastal(is_land: np.ndarray) -> np.ndarray:
    """Ocean cells with a land cell among their 4 neighbours ``(y, x)``."""
    padded = np.pad(is_land, 1, mode="edge")
    near = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return near & ~is_land


def write(
    directory: Path,
    *,
    n: int = N_CELLS,
    start: str = "2020-01-01",
    days: int = 5,
    flow: str = "default",
    calendar: str = "standard",
) -> list[Path]:
    """Write ``days`` daily steps from ``start``, one file per calendar year; returns the paths.

    Parameters
    ----------
    directory : where the files go.
    n : cells a side (361 in the product; smaller for tests, same extent).
    start, days : first day and number of days.
    flow : ``"default"`` or ``"rigid"`` (see :func:`kgcm.synthetic.products.truth`).
    calendar : the ``time`` variable's CF calendar attribute.
    """
    x, y, lat, lon = grid(n)
    is_land = land(lat, lon)
    is_coast = coastal(is_land)
    no_ice = (lat < NO_ICE_LAT) & ~is_land & ~is_coast
    lam = np.deg2rad(lon)
    cos, sin = np.cos(lam)[None], np.sin(lam)[None]
    times = pd.date_range(start, periods=days, freq="D")
    paths = []
    for year in sorted(set(times.year)):
        block = times[times.year == year]
        path = directory / f"icemotion_daily_nh_25km_{year}0101_{year}1231_v4.1.nc"
        fields = truth(lat, lon, block, flow=flow)
        ue, vn = fields["usi"] * 100.0, fields["vsi"] * 100.0  # m/s -> cm/s
        u = ue * cos - vn * sin
        v = ue * sin + vn * cos
        # error estimate: a smooth positive field (the product stores sqrt(error variance) x 10)
        error = np.broadcast_to(np.round(20.0 + 30.0 * (90.0 - lat) / 60.0), u.shape).copy()
        u = np.where(is_coast[None], COASTAL_VECTOR_CMS[0], u)
        v = np.where(is_coast[None], COASTAL_VECTOR_CMS[1], v)
        error = np.where(is_coast[None], -(error + 1000.0), error)
        u = np.where(no_ice[None], 0.0, u)
        v = np.where(no_ice[None], 0.0, v)
        error = np.where(no_ice[None] | is_land[None], 0.0, error)
        u = np.where(is_land[None], FILL, u)
        v = np.where(is_land[None], FILL, v)
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.title = "Polar Pathfinder Daily 25 km EASE-Grid Sea Ice Motion Vectors"
            nc.Conventions = "CF-1.6"
            nc.version = "4.1"
            nc.id = "NSIDC-0116"
            nc.institution = "National Snow and Ice Data Center"
            nc.createDimension("time", None)
            nc.createDimension("y", n)
            nc.createDimension("x", n)
            crs = nc.createVariable("crs", "i4")
            crs.grid_mapping_name = "lambert_azimuthal_equal_area"
            crs.long_name = "NSIDC EASE-Grid North"
            crs.longitude_of_projection_origin = 0.0
            crs.latitude_of_projection_origin = 90.0
            crs.false_easting = 0.0
            crs.false_northing = 0.0
            crs.semi_major_axis = RADIUS_M
            crs.semi_minor_axis = RADIUS_M
            crs.proj4text = (
                "+proj=laea +lat_0=90 +lon_0=0 +x_0=0 +y_0=0 +a=6371228 +b=6371228 +units=m "
                "+no_defs"
            )
            crs.srid = "urn:ogc:def:crs:EPSG::3408"
            t = nc.createVariable("time", "f8", ("time",))
            t.units = "days since 1970-01-01 00:00:00"
            t.calendar = calendar
            t.standard_name = "time"
            t.long_name = "time"
            t[:] = netCDF4.date2num(block.to_pydatetime(), t.units, t.calendar)
            for name, values, std in (
                ("x", x, "projection_x_coordinate"),
                ("y", y, "projection_y_coordinate"),
            ):
                var = nc.createVariable(name, "f8", (name,))
                var.units, var.standard_name, var.axis = "meters", std, name.upper()
                var[:] = values
            for name, values, units in (
                ("latitude", lat, "degrees_north"),
                ("longitude", lon, "degrees_east"),
            ):
                var = nc.createVariable(name, "f4", ("y", "x"))
                var.units, var.standard_name, var.long_name = units, name, name
                var[:] = values
            for name, values, long_name in (
                ("u", u, "Sea ice x velocity"),
                ("v", v, "Sea ice y velocity"),
            ):
                var = nc.createVariable(name, "f4", ("time", "y", "x"), fill_value=FILL)
                var.long_name = long_name
                var.units = "cm/s"
                var.grid_mapping = "crs"
                var.coordinates = "latitude longitude"
                var[:] = values.astype(np.float32)
            err = nc.createVariable("icemotion_error_estimate", "i2", ("time", "y", "x"))
            err.long_name = "Sea ice motion error estimate"
            err.comment = (
                "square root of the estimated error variance x 10; 0: no vector; negative: "
                "possible false ice near coasts"
            )
            err.grid_mapping = "crs"
            err.coordinates = "latitude longitude"
            err[:] = error.astype(np.int16)
        paths.append(path)
    return paths
