"""Named Arctic seas and the north polar stereographic projection of kgcm's maps.

The seas (Barents, Kara, Laptev, East Siberian, Chukchi, Beaufort, Central Arctic) are
approximate polygons shipped as package data (``kgcm/data/arctic_regions.csv``), hand-drawn from
the published limits of the seas (IHO S-23, 1953): good to about a degree, not the official
limits. Cells are assigned to a sea by a point-in-polygon test in the NSIDC Sea Ice Polar
Stereographic North projection (EPSG:3413, computed by pyproj), where the pole and the date line
are ordinary points, so Central Arctic (around the pole) and Chukchi (across 180°) need no
special case.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from kgcm.errors import DataError

__all__ = [
    "MAP_CRS",
    "REGIONS",
    "Region",
    "assign_regions",
    "load_regions",
    "project",
]

#: the maps' projection: WGS 84 / NSIDC Sea Ice Polar Stereographic North (lon_0 = -45°, lat_ts 70°)
MAP_CRS = "EPSG:3413"
#: the seas, in the order of the tables (region index = position here)
REGIONS = (
    "Barents",
    "Kara",
    "Laptev",
    "East Siberian",
    "Chukchi",
    "Beaufort",
    "Central Arctic",
)
_DATA = "arctic_regions.csv"
_STEP_DEG = 0.5  # densify edges to this spacing (degrees) so parallels stay curved once projected


@dataclass(frozen=True)
class Region:
    """One sea: its name, its vertices (lon, lat in degrees) and its densified outline projected
    on :data:`MAP_CRS` (``x``, ``y`` in m, closed)."""

    name: str
    lon: np.ndarray  # (n_vertices,)
    lat: np.ndarray  # (n_vertices,)
    x: np.ndarray  # (n_points,), closed ring
    y: np.ndarray  # (n_points,)


@functools.cache
def _transformer():  # type: ignore[no-untyped-def]
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", MAP_CRS, always_xy=True)


def project(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project longitudes and latitudes (degrees, any equal shapes) on :data:`MAP_CRS` (m)."""
    x, y = _transformer().transform(np.asarray(lon, dtype=np.float64),
                                    np.asarray(lat, dtype=np.float64))  # fmt: skip
    return np.asarray(x), np.asarray(y)


def _densify(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The closed ring through the vertices with points every ``_STEP_DEG`` along each edge,
    each edge taking the shorter way round in longitude."""
    lon2, lat2 = np.roll(lon, -1), np.roll(lat, -1)
    dlon = (lon2 - lon + 180.0) % 360.0 - 180.0
    n = np.maximum(1, np.ceil(np.maximum(np.abs(dlon), np.abs(lat2 - lat)) / _STEP_DEG))
    n = n.astype(np.int64)
    edge = np.repeat(np.arange(len(lon)), n)
    frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    out_lon = lon[edge] + frac * dlon[edge]
    out_lat = lat[edge] + frac * (lat2 - lat)[edge]
    return np.append(out_lon, out_lon[0]), np.append(out_lat, out_lat[0])


@functools.cache
def load_regions() -> tuple[Region, ...]:
    """The seas of :data:`REGIONS` from the package data, projected."""
    import io

    import pandas as pd

    text = resources.files("kgcm").joinpath("data", _DATA).read_text(encoding="utf-8")
    table = pd.read_csv(io.StringIO(text), comment="#")
    missing = [r for r in REGIONS if r not in set(table["region"])]
    if missing:
        raise DataError(f"the package data {_DATA} lacks the regions {missing}; reinstall kgcm.")
    out = []
    for name in REGIONS:
        rows = table[table["region"] == name]
        lon, lat = rows["lon"].to_numpy(float), rows["lat"].to_numpy(float)
        x, y = project(*_densify(lon, lat))
        out.append(Region(name=name, lon=lon, lat=lat, x=x, y=y))
    return tuple(out)


def assign_regions(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Index into :data:`REGIONS` of the sea holding each point, -1 for none.

    ``lat``, ``lon``: degrees, any equal shapes (a grid's 2-D coordinates). Returns int8 of
    that shape. NaN coordinates get -1.
    """
    from matplotlib.path import Path

    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.shape != lon.shape:
        raise DataError(f"lat and lon must have one shape; got {lat.shape} and {lon.shape}.")
    x, y = project(lon.ravel(), lat.ravel())
    points = np.column_stack([x, y])
    finite = np.isfinite(points).all(axis=1)
    out = np.full(lat.size, -1, dtype=np.int8)
    # later seas never overwrite earlier ones: a point on a shared edge keeps the first
    for k, region in enumerate(load_regions()):
        inside = Path(np.column_stack([region.x, region.y])).contains_points(
            np.where(finite[:, None], points, 0.0)
        )
        out[inside & finite & (out < 0)] = k
    return out.reshape(lat.shape)
