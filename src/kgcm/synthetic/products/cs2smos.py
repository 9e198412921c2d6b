r"""AWI/ESA CS2SMOS merged CryoSat-2/SMOS sea-ice thickness files: 7-day windows, EASE2-North.

Layout copied from the product (v2.x): one NetCDF file per 7-day window, named
``W_XX-ESA,SMOS_CS2,NH_25KM_EASE2_{first day}_{last day}_r_v205_01_l4sit.nc``; dims
``time(1), yc, xc`` (+ ``nv`` for the bounds); ``time`` (seconds since 1978-01-01, the CENTRE of
the window) with ``time_bnds`` ``[first day 00:00, last day + 1 00:00)``; projection coordinates
``xc``/``yc`` in km on the EASE2-North 25 km grid (432 x 432, ``Lambert_Azimuthal_Grid``
grid mapping); 2-D ``lat``/``lon``; fields stored as int32 with ``scale_factor`` and
``_FillValue = -2147483647``:

==================================  =======================  =====  ==============
variable                            content                   units  scale_factor
==================================  =======================  =====  ==============
``analysis_sea_ice_thickness``      merged (OI) thickness     m      0.001
``analysis_sea_ice_thickness_unc``  its uncertainty           m      0.001
``background_sea_ice_thickness``    OI background field       m      0.001
``sea_ice_concentration``           concentration             %      0.01
==================================  =======================  =====  ==============

Land is fill in every field. Thickness is the mean over the ice-covered part (CF
``sea_ice_thickness``), so it is written from ``truth["sithick"]``.

What a step holds: each window stores the truth AVERAGED over its 7 days
(:func:`window_mean`: the mean of :func:`kgcm.synthetic.products.truth` at the window's seven
days, 00:00), as the product averages a week of orbits. Windows exist only in the freezing season:
a window with any day in May-September is not written (as the product has no summer files);
``stride`` days separate window starts (1: the product's daily-updated running windows, which
overlap; 7: disjoint weeks). The grid is computed on a sphere (EASE2 is on the WGS84 ellipsoid;
readers take lat/lon from the file, so the difference does not matter here). Smaller grids than
432 x 432 keep the product's extent.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd

from kgcm.errors import ConfigError
from kgcm.synthetic.products import land, pack_int, truth

#: EASE2-North 25 km: cells a side and cell size (km); sphere radius (km) for the generated grid
N_CELLS = 432
CELL_KM = 25.0
RADIUS_KM = 6371.0071
FILL = -2147483647
WINDOW_DAYS = 7
#: months with data (freezing season)
SEASON = (10, 11, 12, 1, 2, 3, 4)
#: product variable -> (truth key, long name, units, scale_factor, factor from truth units)
VARIABLES = {
    "analysis_sea_ice_thickness": ("sithick", "CS2SMOS merged sea ice thickness", "m", 0.001, 1.0),
    "analysis_sea_ice_thickness_unc": (
        "sithick",
        "uncertainty of the merged sea ice thickness",
        "m",
        0.001,
        None,
    ),
    "background_sea_ice_thickness": (
        "sithick",
        "optimal interpolation background field",
        "m",
        0.001,
        1.0,
    ),
    "sea_ice_concentration": ("siconc", "sea ice concentration", "%", 0.01, 100.0),
}


def grid(n: int = N_CELLS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``xc`` (increasing), ``yc`` (decreasing) ``(n,)`` in km and float32-rounded 2-D ``lat``,
    ``lon`` ``(n, n)`` of an EASE2-North grid with ``n`` cells a side over the product's extent."""
    cell = CELL_KM * N_CELLS / n
    centre = (n - 1) / 2.0
    xc = (np.arange(n) - centre) * cell
    yc = (centre - np.arange(n)) * cell
    xx, yy = np.meshgrid(xc, yc)
    rho = np.hypot(xx, yy)
    lat = 90.0 - 2.0 * np.rad2deg(np.arcsin(np.clip(rho / (2.0 * RADIUS_KM), -1.0, 1.0)))
    lon = np.rad2deg(np.arctan2(xx, -yy))
    return (
        xc,
        yc,
        lat.astype(np.float32).astype(np.float64),
        lon.astype(np.float32).astype(np.float64),
    )


def window_days(first_day: pd.Timestamp) -> pd.DatetimeIndex:
    """The seven days (00:00) of the window starting on ``first_day``."""
    return pd.date_range(pd.Timestamp(first_day).normalize(), periods=WINDOW_DAYS, freq="D")


def window_mean(
    lat: np.ndarray, lon: np.ndarray, first_day: pd.Timestamp, *, flow: str = "default"
) -> dict[str, np.ndarray]:
    """Truth averaged over the 7-day window starting on ``first_day``: arrays ``(y, x)``."""
    fields = truth(lat, lon, window_days(first_day), flow=flow)
    return {k: v.mean(axis=0) for k, v in fields.items()}


def window_starts(start: str, windows: int, stride: int) -> list[pd.Timestamp]:
    """First days of ``windows`` windows from ``start`` every ``stride`` days, skipping windows
    with a day outside the freezing season (October-April)."""
    if windows < 1 or stride < 1:
        raise ConfigError(f"windows and stride must be >= 1; got {windows} and {stride}.")
    first = pd.Timestamp(start).normalize()
    out: list[pd.Timestamp] = []
    while len(out) < windows:
        if set(window_days(first).month) <= set(SEASON):
            out.append(first)
        first += pd.Timedelta(days=stride)
    return out


def write(
    directory: Path,
    *,
    n: int = N_CELLS,
    start: str = "2020-10-26",
    windows: int = 3,
    stride: int = 7,
    flow: str = "default",
) -> list[Path]:
    """Write ``windows`` 7-day window files; returns their paths.

    Parameters
    ----------
    directory : where the files go.
    n : cells a side (432 in the product; smaller for tests, same extent).
    start : first day of the first window (windows outside October-April are skipped).
    windows : number of files.
    stride : days between window starts (1: running windows as distributed; 7: disjoint).
    flow : passed to :func:`kgcm.synthetic.products.truth` (no velocities here).
    """
    xc, yc, lat, lon = grid(n)
    is_land = land(lat, lon)
    epoch = pd.Timestamp("1978-01-01")
    paths = []
    for first in window_starts(start, windows, stride):
        last = first + pd.Timedelta(days=WINDOW_DAYS - 1)
        end = first + pd.Timedelta(days=WINDOW_DAYS)
        centre = first + (end - first) / 2
        path = directory / (
            f"W_XX-ESA,SMOS_CS2,NH_25KM_EASE2_{first:%Y%m%d}_{last:%Y%m%d}_r_v205_01_l4sit.nc"
        )
        fields = window_mean(lat, lon, first, flow=flow)
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.title = "CS2SMOS merged sea ice thickness"
            nc.institution = "Alfred Wegener Institute"
            nc.project = "ESA SMOS+ Sea Ice"
            nc.product_version = "2.05"
            nc.Conventions = "CF-1.6 ACDD-1.3"
            nc.time_coverage_start = f"{first:%Y-%m-%dT%H:%M:%S}"
            nc.time_coverage_end = f"{end:%Y-%m-%dT%H:%M:%S}"
            nc.time_coverage_duration = "P7D"
            nc.createDimension("time", 1)
            nc.createDimension("nv", 2)
            nc.createDimension("yc", n)
            nc.createDimension("xc", n)
            gm = nc.createVariable("Lambert_Azimuthal_Grid", "i4")
            gm.grid_mapping_name = "lambert_azimuthal_equal_area"
            gm.longitude_of_projection_origin = 0.0
            gm.latitude_of_projection_origin = 90.0
            gm.false_easting = 0.0
            gm.false_northing = 0.0
            gm.semi_major_axis = 6378137.0
            gm.inverse_flattening = 298.257223563
            gm.proj4_string = "+proj=laea +lon_0=0 +datum=WGS84 +ellps=WGS84 +lat_0=90.0"
            t = nc.createVariable("time", "i4", ("time",))
            t.units = "seconds since 1978-01-01 00:00:00"
            t.standard_name = "time"
            t.long_name = "reference time of product"
            t.calendar = "standard"
            t.bounds = "time_bnds"
            t[:] = [int((centre - epoch).total_seconds())]
            tb = nc.createVariable("time_bnds", "i4", ("time", "nv"))
            tb.units = t.units
            tb[:] = [[int((first - epoch).total_seconds()), int((end - epoch).total_seconds())]]
            for name, values, long_name in (
                ("xc", xc, "x coordinate of projection (eastings)"),
                ("yc", yc, "y coordinate of projection (northings)"),
            ):
                var = nc.createVariable(name, "f4", (name,))
                var.units, var.long_name = "km", long_name
                var.standard_name = f"projection_{name[0]}_coordinate"
                var[:] = values
            for name, values, units, std in (
                ("lon", lon, "degrees_east", "longitude"),
                ("lat", lat, "degrees_north", "latitude"),
            ):
                var = nc.createVariable(name, "f4", ("yc", "xc"))
                var.units, var.standard_name = units, std
                var.long_name = f"{std} coordinate"
                var[:] = values
            for name, (key, long_name, units, scale, factor) in VARIABLES.items():
                if factor is None:  # uncertainty: a plausible smooth field
                    values = 0.1 + 0.15 * fields["sithick"]
                else:
                    values = fields[key] * factor
                values = np.where(is_land, np.nan, values)
                var = nc.createVariable(name, "i4", ("time", "yc", "xc"), fill_value=FILL)
                var.set_auto_maskandscale(False)
                var.scale_factor = scale
                var.add_offset = 0.0
                var.units = units
                var.long_name = long_name
                var.coordinates = "lat lon"
                var.grid_mapping = "Lambert_Azimuthal_Grid"
                var[:] = pack_int(values[None], scale=scale, offset=0.0, fill=FILL, dtype=np.int32)
        paths.append(path)
    return paths
