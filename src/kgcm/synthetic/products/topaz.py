r"""CMEMS Arctic TOPAZ4 reanalysis (``ARCTIC_MULTIYEAR_PHY_002_003``, dataset
``cmems_mod_arc_phy_my_topaz4_P1D-m``) files: north polar stereographic grid, daily.

Layout copied from the product: dims ``time, y, x`` (ocean velocities carry a one-level ``depth``
dim), projection coordinates ``x(x)``/``y(y)`` (``units = "100 km"`` as in the product;
``xy_units`` writes ``"km"`` or ``"m"`` instead), 2-D ``latitude(y, x)``/``longitude(y, x)``, a
grid-mapping variable ``stereographic`` (CF ``polar_stereographic``,
``straight_vertical_longitude_from_pole = -45``, ``latitude_of_projection_origin = 90``, sphere of
radius 6378273 m) named by every field's ``grid_mapping`` attribute, and float32 fields with
``_FillValue = -32767`` on land: ``sithick``, ``siconc``, ``zos`` and the ALONG-GRID vectors
``vxsi``/``vysi`` (ice) and ``vxo``/``vyo`` (ocean). Time is hours since 1950-01-01.

The grid is :math:`x_i = (i - (n_x - 1)/2)\,\Delta`, :math:`y_j = (j - (n_y - 1)/2)\,\Delta`
(:math:`\Delta` = ``spacing_km``, 12.5 km in the product; tests use a coarse spacing so that a tiny
grid reaches the land of :func:`kgcm.synthetic.products.land`). Latitude and longitude come from
the spherical polar stereographic inverse with true scale at the pole,

.. math::

    \rho = \sqrt{x^2 + y^2}, \quad \phi = 90° - 2\arctan\frac{\rho}{2R}, \quad
    \lambda = \lambda_0 + \operatorname{atan2}(x, -y),

and the grid components are the east/north truth turned into the grid frame, i.e. the inverse
of :func:`kgcm.readers.geometry.rotate_to_east_north` with the exact angle of this projection,
:math:`\alpha = -(\lambda - \lambda_0)`. Truth is evaluated on the stored (float32) lat/lon.
``grid_mapping=False`` writes files without the grid-mapping variable and attributes (as some
regridded or hand-made subsets are), which a reader must refuse to rotate without being told
the central meridian.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd

from kgcm.errors import ConfigError
from kgcm.readers.geometry import polar_stereographic_angle, rotate_to_east_north
from kgcm.synthetic.products import land, time_blocks, truth

FILL = np.float32(-32767.0)
#: sphere radius (m) of the TOPAZ4 grid's projection
EARTH_RADIUS = 6378273.0
#: central meridian (degrees east) of the TOPAZ4 grid's projection
CENTRAL_MERIDIAN = -45.0
#: metres per unit of the projection coordinates, by ``units`` attribute
XY_UNITS = {"100 km": 1.0e5, "km": 1.0e3, "m": 1.0}
#: name -> (standard_name, units, long_name, has depth, canonical truth key, grid component)
VARIABLES = {
    "sithick": ("sea_ice_thickness", "m", "Sea ice thickness", False, "sithick", None),
    "siconc": ("sea_ice_area_fraction", "1", "Sea ice area fraction", False, "siconc", None),
    "zos": ("sea_surface_height_above_geoid", "m", "Sea surface height", False, "zos", None),
    "vxsi": ("sea_ice_x_velocity", "m s-1", "Sea ice x velocity", False, "usi", "x"),
    "vysi": ("sea_ice_y_velocity", "m s-1", "Sea ice y velocity", False, "vsi", "y"),
    "vxo": ("sea_water_x_velocity", "m s-1", "Sea water x velocity", True, "uo", "x"),
    "vyo": ("sea_water_y_velocity", "m s-1", "Sea water y velocity", True, "vo", "y"),
}
#: (x component, y component) -> (east truth key, north truth key)
PAIRS = {("vxsi", "vysi"): ("usi", "vsi"), ("vxo", "vyo"): ("uo", "vo")}


def grid(
    ny: int, nx: int, spacing_km: float = 12.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Projection coordinates ``x (nx,)``, ``y (ny,)`` in metres and ``lat, lon (ny, nx)`` in
    degrees (float32, as stored) of a pole-centred TOPAZ-like grid."""
    step = spacing_km * 1.0e3
    x = (np.arange(nx) - (nx - 1) / 2.0) * step
    y = (np.arange(ny) - (ny - 1) / 2.0) * step
    xx, yy = np.meshgrid(x, y)
    rho = np.hypot(xx, yy)
    lat = 90.0 - 2.0 * np.rad2deg(np.arctan(rho / (2.0 * EARTH_RADIUS)))
    lon = CENTRAL_MERIDIAN + np.rad2deg(np.arctan2(xx, -yy))
    lon = (lon + 180.0) % 360.0 - 180.0
    return x, y, lat.astype(np.float32), lon.astype(np.float32)


def grid_fields(
    lat: np.ndarray, lon: np.ndarray, times: pd.DatetimeIndex, *, flow: str
) -> dict[str, np.ndarray]:
    """Truth as the product stores it: scalars as they are, vectors along the grid x/y axes.

    Returns arrays ``(time, y, x)`` keyed by the product's variable names (land not applied).
    """
    true = truth(lat, lon, times, flow=flow)
    out = {name: true[spec[4]] for name, spec in VARIABLES.items() if spec[5] is None}
    angle = polar_stereographic_angle(np.asarray(lon, dtype=np.float64), CENTRAL_MERIDIAN)
    for (xname, yname), (east, north) in PAIRS.items():
        # grid components: east/north turned by -alpha (the inverse of the reader's rotation)
        out[xname], out[yname] = rotate_to_east_north(true[east], true[north], -angle)
    return out


def write(
    directory: Path,
    *,
    ny: int = 24,
    nx: int = 24,
    spacing_km: float = 12.5,
    start: str = "2020-01-01",
    days: int = 10,
    days_per_file: int = 1,
    flow: str = "default",
    variables: tuple[str, ...] = tuple(VARIABLES),
    grid_mapping: bool = True,
    xy_units: str = "100 km",
) -> list[Path]:
    """Write ``days`` daily steps, ``days_per_file`` per file; returns the file paths.

    Parameters
    ----------
    directory : where the files go.
    ny, nx : grid size; ``spacing_km`` the grid spacing (12.5 km in the product).
    start, days, days_per_file : the daily time axis and how it is cut into files.
    flow : ``"default"`` or ``"rigid"`` (see :func:`kgcm.synthetic.products.truth`).
    variables : product variable names to write (keys of :data:`VARIABLES`).
    grid_mapping : write the ``stereographic`` grid-mapping variable and attributes.
    xy_units : ``units`` of the projection coordinates: ``"100 km"``, ``"km"`` or ``"m"``.
    """
    unknown = sorted(set(variables) - set(VARIABLES))
    if unknown:
        raise ConfigError(f"unknown TOPAZ variables {unknown}; known: {sorted(VARIABLES)}.")
    if xy_units not in XY_UNITS:
        raise ConfigError(f"xy_units must be one of {sorted(XY_UNITS)}; got {xy_units!r}.")
    x, y, lat, lon = grid(ny, nx, spacing_km)
    is_land = land(lat, lon)
    times = pd.date_range(start, periods=days, freq="D")
    paths = []
    for block in time_blocks(times, days_per_file):
        path = directory / (
            f"cmems_mod_arc_phy_my_topaz4_P1D-m_{block[0]:%Y-%m-%d}-{block[-1]:%Y-%m-%d}.nc"
        )
        fields = grid_fields(lat, lon, block, flow=flow)
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.title = "Arctic Ocean Physics Reanalysis (TOPAZ4), daily means"
            nc.institution = "Norwegian Meteorological Institute (MET Norway)"
            nc.source = "TOPAZ4 coupled ocean and sea ice data assimilation system"
            nc.product_id = "ARCTIC_MULTIYEAR_PHY_002_003"
            nc.Conventions = "CF-1.7"
            nc.createDimension("time", None)
            nc.createDimension("depth", 1)
            nc.createDimension("y", ny)
            nc.createDimension("x", nx)
            t = nc.createVariable("time", "f8", ("time",))
            t.units = "hours since 1950-01-01 00:00:00"
            t.calendar = "gregorian"
            t.standard_name, t.axis = "time", "T"
            t[:] = netCDF4.date2num(block.to_pydatetime(), t.units, t.calendar)
            d = nc.createVariable("depth", "f4", ("depth",))
            d.units, d.positive, d.standard_name = "m", "down", "depth"
            d[:] = [0.0]
            for name, values, axis in (("x", x, "X"), ("y", y, "Y")):
                v = nc.createVariable(name, "f8", (name,))
                v.standard_name = f"projection_{name}_coordinate"
                v.units, v.axis = xy_units, axis
                v[:] = values / XY_UNITS[xy_units]
            for name, values, units in (
                ("latitude", lat, "degrees_north"),
                ("longitude", lon, "degrees_east"),
            ):
                v = nc.createVariable(name, "f4", ("y", "x"))
                v.standard_name, v.long_name, v.units = name, name.capitalize(), units
                v[:] = values
            if grid_mapping:
                gm = nc.createVariable("stereographic", "i4", ())
                gm.grid_mapping_name = "polar_stereographic"
                gm.straight_vertical_longitude_from_pole = CENTRAL_MERIDIAN
                gm.latitude_of_projection_origin = 90.0
                gm.scale_factor_at_projection_origin = 1.0
                gm.false_easting = 0.0
                gm.false_northing = 0.0
                gm.semi_major_axis = EARTH_RADIUS
                gm.semi_minor_axis = EARTH_RADIUS
                gm.proj4 = (
                    f"+proj=stere +lon_0={CENTRAL_MERIDIAN:g} +lat_0=90 +lat_ts=90 "
                    f"+a={EARTH_RADIUS:.0f} +b={EARTH_RADIUS:.0f} +units=m"
                )
            for name in variables:
                std, units, long_name, has_depth, _, _ = VARIABLES[name]
                dims = ("time", "depth", "y", "x") if has_depth else ("time", "y", "x")
                var = nc.createVariable(name, "f4", dims, fill_value=FILL)
                var.standard_name, var.units, var.long_name = std, units, long_name
                var.coordinates = "latitude longitude"
                if grid_mapping:
                    var.grid_mapping = "stereographic"
                data = np.where(is_land[None], np.nan, fields[name]).astype(np.float32)
                data = np.ma.masked_invalid(data)
                var[:] = data[:, None] if has_depth else data
        paths.append(path)
    return paths
