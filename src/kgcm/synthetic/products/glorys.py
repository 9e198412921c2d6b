"""CMEMS GLORYS12 (GLOBAL_MULTIYEAR_PHY_001_030) files: regular lat/lon, daily.

Layout copied from the product: dims ``time, latitude, longitude`` (ocean velocities carry a
``depth`` dim of one level), variables ``sithick``, ``siconc``, ``zos``, ``uo``, ``vo``, ``usi``,
``vsi`` with CF attributes; time in hours since 1950-01-01. ``packed=True`` writes the older
NetCDF form (int16 with ``scale_factor``/``add_offset`` and ``_FillValue = -32767``),
``packed=False`` the toolbox form (float32 with NaN fill). Land is fill.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd

from kgcm.synthetic.products import land, pack_int, time_blocks, truth

FILL = -32767
#: name -> (standard_name, units, scale_factor, add_offset, has depth)
VARIABLES = {
    "sithick": ("sea_ice_thickness", "m", 0.001, 0.0, False),
    "siconc": ("sea_ice_area_fraction", "1", 3.0518e-05, 0.0, False),
    "zos": ("sea_surface_height_above_geoid", "m", 0.000305185, 0.0, False),
    "uo": ("eastward_sea_water_velocity", "m s-1", 0.000610370, 0.0, True),
    "vo": ("northward_sea_water_velocity", "m s-1", 0.000610370, 0.0, True),
    "usi": ("eastward_sea_ice_velocity", "m s-1", 3.0518e-05, 0.0, False),
    "vsi": ("northward_sea_ice_velocity", "m s-1", 3.0518e-05, 0.0, False),
}


def grid(ny: int, nx: int, lat_min: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """1-D latitude (south to north) and longitude (-180..180) of a regular grid."""
    lat = np.linspace(lat_min, 89.9, ny)
    lon = np.linspace(-180.0, 180.0, nx, endpoint=False)
    return lat, lon


def write(
    directory: Path,
    *,
    ny: int = 24,
    nx: int = 48,
    start: str = "2020-01-01",
    days: int = 10,
    days_per_file: int = 1,
    packed: bool = True,
    flow: str = "default",
    variables: tuple[str, ...] = tuple(VARIABLES),
    lat_min: float = 60.0,
) -> list[Path]:
    """Write ``days`` daily steps, ``days_per_file`` per file; returns the file paths."""
    lat, lon = grid(ny, nx, lat_min)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    is_land = land(lat2, lon2)
    paths = []
    times = pd.date_range(start, periods=days, freq="D")
    for block in time_blocks(times, days_per_file):
        path = directory / f"mercatorglorys12v1_gl12_mean_{block[0]:%Y%m%d}_R{block[-1]:%Y%m%d}.nc"
        fields = truth(lat2, lon2, block, flow=flow)
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.title = "daily mean fields from Global Ocean Physics Multi Year Reanalysis"
            nc.source = "MERCATOR GLORYS12V1"
            nc.institution = "Mercator Ocean International"
            nc.Conventions = "CF-1.6"
            nc.createDimension("time", None)
            nc.createDimension("depth", 1)
            nc.createDimension("latitude", ny)
            nc.createDimension("longitude", nx)
            t = nc.createVariable("time", "f8", ("time",))
            t.units = "hours since 1950-01-01 00:00:00"
            t.calendar = "gregorian"
            t.standard_name = "time"
            t[:] = netCDF4.date2num(block.to_pydatetime(), t.units, t.calendar)
            d = nc.createVariable("depth", "f4", ("depth",))
            d.units, d.positive, d.standard_name = "m", "down", "depth"
            d[:] = [0.494025]
            for name, values, units in (
                ("latitude", lat, "degrees_north"),
                ("longitude", lon, "degrees_east"),
            ):
                v = nc.createVariable(name, "f4", (name,))
                v.units, v.standard_name = units, name
                v[:] = values
            for name in variables:
                std, units, scale, offset, has_depth = VARIABLES[name]
                dims = (
                    ("time", "depth", "latitude", "longitude")
                    if has_depth
                    else ("time", "latitude", "longitude")
                )
                data = np.where(is_land[None], np.nan, fields[name])
                if packed:
                    var = nc.createVariable(name, "i2", dims, fill_value=FILL)
                    var.set_auto_maskandscale(False)
                    var.scale_factor, var.add_offset = scale, offset
                    data = pack_int(data, scale=scale, offset=offset, fill=FILL, dtype=np.int16)
                else:
                    var = nc.createVariable(name, "f4", dims, fill_value=np.float32(np.nan))
                    data = data.astype(np.float32)
                var.standard_name, var.units = std, units
                var[:] = data[:, None] if has_depth else data
        paths.append(path)
    return paths
