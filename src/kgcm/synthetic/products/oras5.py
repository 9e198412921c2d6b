r"""ECMWF ORAS5 (NEMO ORCA025) files: one variable per file per month, curvilinear grid.

Layout copied from the product as the Copernicus Climate Data Store ships it: one file per
variable and month named ``<var>_control_monthly_highres_<2D|3D>_<YYYYMM>_<CONS|OPER>_v0.1.nc``
(``CONS`` before 2015, ``OPER`` from 2015), dims ``time_counter, y, x`` (no coordinate variables
for ``y``/``x``), 2-D ``nav_lat``/``nav_lon`` (float32), ``time_counter`` in seconds since
1900-01-01 with ``time_counter_bounds``, float32 fields with ``_FillValue = missing_value = 1e20``.
Variables: ``iicethic`` (m), ``sossheig`` (m), ``ileadfra`` (ice concentration, 0-1, despite the
LIM2 name), ice velocity ``iicevelu``/``iicevelv`` and ocean velocity ``vozocrtx``/``vomecrty``
(m/s) ALONG THE MODEL's i/j axes; the ocean velocities are 3-D files (``depthu``/``depthv``, two
levels here, the deeper one holding half the surface value so a reader must pick the surface).

Land storage as in the product: the ice fields (``iicethic``, ``ileadfra``, ``iicevel*``) hold
0 on land, the ocean fields hold the 1e20 fill. ``mesh_mask=True`` also writes the NEMO
``mesh_mask.nc`` (dims ``t, z, y, x``; ``tmask``, ``tmaskutil``, ``glamt``/``gphit``,
``nav_lat``/``nav_lon``), the land-sea mask a reader needs, since a 0 in an ice field is land or
ice-free ocean. ``open_water_lat`` makes ocean cells south of that latitude ice free (ice fields
0 there), to check that a reader keeps those zeros.

Time stamps: the product's ``time_counter`` of a monthly mean is the centre of the month
(``time_counter_bounds`` hold its start and end), and the fields are :func:`truth` AT THAT
TIMESTAMP (not a monthly average of it), so readers can be compared with :func:`truth` at the
file's own times.

Grid (ORCA-like, curvilinear and twisted): in the north polar stereographic plane
(central meridian :data:`PLANE_MERIDIAN`, sphere of NEMO's radius), the regular complex grid
:math:`z = x + iy` is mapped by the conformal map

.. math::

    w = f(z) = z\,e^{i c z / W},

(:math:`W` the half width, :math:`c` = ``twist``), so grid lines stay orthogonal, as on ORCA,
while the grid turns against the projection's axes by a spatially varying angle
:math:`\arg f'(z)`. The x (i) axis's angle from east is exactly
:math:`\alpha = \arg f'(z) - (\lambda - \lambda_0)`, with
:math:`f'(z) = e^{icz/W}(1 + icz/W)`; grid components are the east/north truth turned by
:math:`-\alpha`. Values sit at the T point (cell centre) of every variable, U/V included.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import netCDF4
import numpy as np
import pandas as pd

from kgcm.errors import ConfigError
from kgcm.readers.geometry import rotate_to_east_north
from kgcm.synthetic.products import land, truth

FILL = np.float32(1.0e20)
#: NEMO's Earth radius (m)
EARTH_RADIUS = 6371229.0
#: central meridian of the stereographic plane the fixture grid is built in (degrees east)
PLANE_MERIDIAN = -80.0
#: depths (m) of the two levels written for 3-D variables (ORCA75's first two)
LEVELS = (0.50576, 1.555855)


class Spec(NamedTuple):
    standard_name: str
    units: str
    long_name: str
    truth_key: str
    #: ``"i"``/``"j"`` for a grid-relative component, None for a scalar
    component: str | None
    #: depth dim of a 3-D variable, None for 2-D
    depth_dim: str | None
    #: how land is stored: ``"zero"`` or ``"fill"``
    land: str


VARIABLES: dict[str, Spec] = {
    "iicethic": Spec("sea_ice_thickness", "m", "Ice thickness", "sithick", None, None, "zero"),
    "ileadfra": Spec(
        "sea_ice_area_fraction", "1", "Ice concentration", "siconc", None, None, "zero"
    ),
    "iicevelu": Spec(
        "sea_ice_x_velocity", "m/s", "Ice velocity along i-axis", "usi", "i", None, "zero"
    ),
    "iicevelv": Spec(
        "sea_ice_y_velocity", "m/s", "Ice velocity along j-axis", "vsi", "j", None, "zero"
    ),
    "sossheig": Spec(
        "sea_surface_height_above_geoid", "m", "Sea Surface Height", "zos", None, None, "fill"
    ),
    "vozocrtx": Spec("sea_water_x_velocity", "m/s", "Zonal Current", "uo", "i", "depthu", "fill"),
    "vomecrty": Spec(
        "sea_water_y_velocity", "m/s", "Meridional Current", "vo", "j", "depthv", "fill"
    ),
}
#: (i component, j component) -> (east truth key, north truth key)
PAIRS = {("iicevelu", "iicevelv"): ("usi", "vsi"), ("vozocrtx", "vomecrty"): ("uo", "vo")}
ICE = ("iicethic", "ileadfra", "iicevelu", "iicevelv")


def grid(
    ny: int, nx: int, *, lat_edge: float = 62.0, twist: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``lat, lon`` (float32, degrees, as stored) and the exact x-axis angle (radians from east)
    of the twisted ORCA-like grid ``(ny, nx)`` whose edge midpoints lie near ``lat_edge``."""
    if not 0.0 <= twist < 0.7:
        raise ConfigError(f"twist must be in [0, 0.7) to keep the grid regular; got {twist}.")
    half = 2.0 * EARTH_RADIUS * np.tan(np.deg2rad(90.0 - lat_edge) / 2.0)
    z = np.linspace(-half, half, nx)[None, :] + 1j * np.linspace(-half, half, ny)[:, None]
    turn = np.exp(1j * twist * z / half)
    w = z * turn
    lat = (90.0 - 2.0 * np.rad2deg(np.arctan(np.abs(w) / (2.0 * EARTH_RADIUS)))).astype(np.float32)
    lon = PLANE_MERIDIAN + np.rad2deg(np.arctan2(w.real, -w.imag))
    lon = ((lon + 180.0) % 360.0 - 180.0).astype(np.float32)
    derivative = turn * (1.0 + 1j * twist * z / half)
    angle = np.angle(derivative) - np.deg2rad(lon.astype(np.float64) - PLANE_MERIDIAN)
    return lat, lon, angle


def month_centres(start: str, months: int) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """Month starts ``(months + 1,)`` and the centres of the ``months`` months."""
    edges = pd.date_range(
        pd.Timestamp(start).to_period("M").to_timestamp(), periods=months + 1, freq="MS"
    )
    return edges, edges[:-1] + (edges[1:] - edges[:-1]) / 2


def grid_fields(
    lat: np.ndarray,
    lon: np.ndarray,
    angle: np.ndarray,
    times: pd.DatetimeIndex,
    *,
    flow: str,
    open_water_lat: float | None,
) -> dict[str, np.ndarray]:
    """Truth as ORAS5 stores it, keyed by product variable: arrays ``(time, y, x)``, vectors
    along the grid's i/j axes, ice fields 0 south of ``open_water_lat`` (land not applied)."""
    true = truth(lat, lon, times, flow=flow)
    out = {name: true[spec.truth_key] for name, spec in VARIABLES.items() if not spec.component}
    for (iname, jname), (east, north) in PAIRS.items():
        out[iname], out[jname] = rotate_to_east_north(true[east], true[north], -angle)
    if open_water_lat is not None:
        ice_free = (lat < open_water_lat)[None]
        for name in ICE:
            out[name] = np.where(ice_free, 0.0, out[name])
    return out


def write(
    directory: Path,
    *,
    ny: int = 20,
    nx: int = 24,
    start: str = "2020-01",
    months: int = 3,
    flow: str = "default",
    variables: tuple[str, ...] = tuple(VARIABLES),
    mesh_mask: bool = True,
    open_water_lat: float | None = None,
    twist: float = 0.3,
) -> list[Path]:
    """Write ``months`` monthly means, one file per variable and month (and ``mesh_mask.nc``).

    Parameters
    ----------
    directory : where the files go.
    ny, nx : grid size (ORCA025 is 1021 x 1442; tests use a few cells).
    start, months : first month and number of months.
    flow : ``"default"`` or ``"rigid"`` (see :func:`kgcm.synthetic.products.truth`).
    variables : product variable names to write (keys of :data:`VARIABLES`).
    mesh_mask : also write the NEMO ``mesh_mask.nc``.
    open_water_lat : ocean south of this latitude is ice free (ice fields 0); None: ice everywhere.
    twist : strength ``c`` of the grid's twist (0: a plain polar stereographic grid).

    Returns
    -------
    The data files (month by month, variable by variable), then ``mesh_mask.nc`` if written.
    """
    unknown = sorted(set(variables) - set(VARIABLES))
    if unknown:
        raise ConfigError(f"unknown ORAS5 variables {unknown}; known: {sorted(VARIABLES)}.")
    lat, lon, angle = grid(ny, nx, twist=twist)
    is_land = land(lat, lon)
    edges, centres = month_centres(start, months)
    origin = pd.Timestamp("1900-01-01")
    paths = []
    for k, centre in enumerate(centres):
        fields = grid_fields(
            lat, lon, angle, pd.DatetimeIndex([centre]), flow=flow, open_water_lat=open_water_lat
        )
        for name in variables:
            spec = VARIABLES[name]
            kind = "3D" if spec.depth_dim else "2D"
            stream = "OPER" if centre.year >= 2015 else "CONS"
            path = directory / (
                f"{name}_control_monthly_highres_{kind}_{centre:%Y%m}_{stream}_v0.1.nc"
            )
            with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
                nc.Conventions = "CF-1.1"
                nc.institution = "ECMWF"
                nc.source = "NEMO 3.4 ORCA025.L75, ocean reanalysis ORAS5"
                nc.createDimension("time_counter", None)
                nc.createDimension("axis_nbounds", 2)
                nc.createDimension("y", ny)
                nc.createDimension("x", nx)
                for coord, values, units in (
                    ("nav_lat", lat, "degrees_north"),
                    ("nav_lon", lon, "degrees_east"),
                ):
                    v = nc.createVariable(coord, "f4", ("y", "x"))
                    v.standard_name = "latitude" if coord == "nav_lat" else "longitude"
                    v.units = units
                    v[:] = values
                t = nc.createVariable("time_counter", "f8", ("time_counter",))
                t.axis, t.standard_name, t.long_name = "T", "time", "Time axis"
                t.calendar = "gregorian"
                t.units = "seconds since 1900-01-01 00:00:00"
                t.time_origin = "1900-01-01 00:00:00"
                t.bounds = "time_counter_bounds"
                t[:] = [(centre - origin).total_seconds()]
                b = nc.createVariable("time_counter_bounds", "f8", ("time_counter", "axis_nbounds"))
                b[:] = [
                    [(edges[k] - origin).total_seconds(), (edges[k + 1] - origin).total_seconds()]
                ]
                dims: tuple[str, ...] = ("time_counter", "y", "x")
                data = fields[name]
                if spec.land == "zero":
                    data = np.where(is_land[None], 0.0, data)
                else:
                    data = np.where(is_land[None], FILL, data)
                if spec.depth_dim:
                    nc.createDimension(spec.depth_dim, len(LEVELS))
                    d = nc.createVariable(spec.depth_dim, "f4", (spec.depth_dim,))
                    d.units, d.positive, d.standard_name = "m", "down", "depth"
                    d[:] = LEVELS
                    dims = ("time_counter", spec.depth_dim, "y", "x")
                    deeper = np.where(is_land[None], FILL, 0.5 * data)
                    data = np.stack([data, deeper], axis=1)
                var = nc.createVariable(name, "f4", dims, fill_value=FILL)
                var.set_auto_maskandscale(False)
                var.missing_value = FILL
                var.standard_name, var.long_name, var.units = (
                    spec.standard_name,
                    spec.long_name,
                    spec.units,
                )
                var.coordinates = "time_counter nav_lat nav_lon"
                var.online_operation = "average"
                var[:] = data.astype(np.float32)
            paths.append(path)
    if mesh_mask:
        paths.append(write_mesh_mask(directory / "mesh_mask.nc", lat, lon, ~is_land))
    return paths


def write_mesh_mask(path: Path, lat: np.ndarray, lon: np.ndarray, ocean: np.ndarray) -> Path:
    """Write a NEMO ``mesh_mask.nc`` (dims ``t, z, y, x``) with ``tmask`` 1 on ocean."""
    ny, nx = lat.shape
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("t", None)
        nc.createDimension("z", len(LEVELS))
        nc.createDimension("y", ny)
        nc.createDimension("x", nx)
        for name, values in (("nav_lat", lat), ("nav_lon", lon)):
            v = nc.createVariable(name, "f4", ("y", "x"))
            v[:] = values
        lev = nc.createVariable("nav_lev", "f4", ("z",))
        lev[:] = LEVELS
        for name, values in (("glamt", lon), ("gphit", lat)):
            v = nc.createVariable(name, "f8", ("t", "y", "x"))
            v[:] = values.astype(np.float64)[None]
        tmask = nc.createVariable("tmask", "i1", ("t", "z", "y", "x"))
        tmask[:] = np.broadcast_to(ocean.astype(np.int8), (1, len(LEVELS), ny, nx))
        util = nc.createVariable("tmaskutil", "i1", ("t", "y", "x"))
        util[:] = ocean.astype(np.int8)[None]
    return path
