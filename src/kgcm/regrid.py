"""Regridding canonical datasets onto a common target grid, lazily.

Neighbour search is pyresample's (a KD-tree on the sphere, ``kd_tree.get_neighbour_info``); it is
done once per source grid on the lat/lon arrays only. The data are then moved with one vectorised
``take`` per time block inside dask (``xarray.apply_ufunc(..., dask="parallelized")``), so memory
stays bounded by one time block of the source field, whatever the length of the record.

Method: nearest neighbour within ``radius`` metres (cells with no source cell that close are NaN).
It keeps values exactly (no smoothing across land or the ice edge) and is the right choice when
the target is as fine as or coarser than the source by a small factor; when going much coarser,
aggregate first (e.g. a coarser product) since nearest neighbour subsamples.

Vectors: east/north components are not moved as two scalars, because the local east and north
directions turn from one cell to the next (by the change of longitude, which is large near the
pole). :func:`regrid_vector` moves the 3-D Cartesian vector ``u·ê + v·n̂`` and projects it on the
target cell's own east/north directions.

Target grids: another source's grid (``kind = "source"``) or a north polar stereographic grid
(``kind = "polar-stereographic"``) of a given spacing, computed on the sphere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from kgcm.errors import ConfigError, DataError

__all__ = [
    "GridSpec",
    "NearestRegridder",
    "polar_stereographic_grid",
    "regrid_vector",
    "same_grid",
    "spacing_m",
]

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class GridSpec:
    """The target grid of ``kgcm prepare``.

    Attributes
    ----------
    kind : ``"source"`` (use the grid of source ``source`` after region selection) or
        ``"polar-stereographic"`` (a regular grid on a north polar stereographic plane).
    source : name of the source whose grid is the target (kind ``"source"``).
    resolution_km : spacing of the polar stereographic grid.
    lat_min : the grid covers the disc north of ``lat_min``.
    central_meridian : longitude (degrees) that points down the grid's y axis.
    radius_km : neighbour search radius; None: 1.5 × the coarser of source and target spacing.
    """

    kind: str = "source"
    source: str = ""
    resolution_km: float = 25.0
    lat_min: float = 60.0
    central_meridian: float = -45.0
    radius_km: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("source", "polar-stereographic"):
            raise ConfigError(
                f"grid.kind must be 'source' or 'polar-stereographic'; got {self.kind!r}."
            )
        if self.kind == "polar-stereographic" and not (
            self.resolution_km > 0 and 0 <= self.lat_min < 90
        ):
            raise ConfigError(
                "grid.resolution_km must be > 0 and grid.lat_min in [0, 90) for a polar "
                f"stereographic grid; got {self.resolution_km!r}, {self.lat_min!r}."
            )


def polar_stereographic_grid(
    resolution_km: float, lat_min: float, central_meridian: float = -45.0
) -> xr.Dataset:
    """Coordinates of a square north polar stereographic grid covering lat >= ``lat_min``.

    Spherical projection, true scale at the pole: ``r = 2 R tan((90° − lat) / 2)``.
    Returns a Dataset with 1-D ``x``/``y`` (m) and 2-D ``lat``/``lon``.
    """
    r_max = 2.0 * EARTH_RADIUS_M * np.tan(np.deg2rad(90.0 - lat_min) / 2.0)
    step = resolution_km * 1000.0
    n = int(np.ceil(r_max / step))
    axis = (np.arange(-n, n) + 0.5) * step
    xx, yy = np.meshgrid(axis, axis[::-1])
    r = np.hypot(xx, yy)
    lat = 90.0 - np.rad2deg(2.0 * np.arctan(r / (2.0 * EARTH_RADIUS_M)))
    lon = central_meridian + np.rad2deg(np.arctan2(xx, -yy))
    lon = (lon + 180.0) % 360.0 - 180.0
    return xr.Dataset(
        coords={
            "y": ("y", axis[::-1], {"units": "m", "standard_name": "projection_y_coordinate"}),
            "x": ("x", axis, {"units": "m", "standard_name": "projection_x_coordinate"}),
            "lat": (("y", "x"), lat),
            "lon": (("y", "x"), lon),
        }
    )


def spacing_m(lat: np.ndarray, lon: np.ndarray) -> float:
    """Median great-circle distance between neighbouring cells along x and y (m)."""
    lat_r, lon_r = np.deg2rad(lat), np.deg2rad(lon)
    d = []
    for axis in (0, 1):
        if lat.shape[axis] < 2:
            continue
        a = np.take(lat_r, range(lat.shape[axis] - 1), axis=axis)
        b = np.take(lat_r, range(1, lat.shape[axis]), axis=axis)
        la = np.take(lon_r, range(lat.shape[axis] - 1), axis=axis)
        lb = np.take(lon_r, range(1, lat.shape[axis]), axis=axis)
        h = np.sin((b - a) / 2) ** 2 + np.cos(a) * np.cos(b) * np.sin((lb - la) / 2) ** 2
        d.append(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0, 1))).ravel())
    if not d:
        raise DataError("a grid needs at least two cells along x or y to know its spacing.")
    values = np.concatenate(d)
    return float(np.nanmedian(values[np.isfinite(values) & (values > 0)]))


def same_grid(a: xr.Dataset, b: xr.Dataset) -> bool:
    """True when two datasets share the same 2-D lat/lon (to 1e-6 degrees)."""
    if a["lat"].shape != b["lat"].shape:
        return False
    return bool(
        np.allclose(a["lat"].values, b["lat"].values, atol=1e-6, equal_nan=True)
        and np.allclose(a["lon"].values, b["lon"].values, atol=1e-6, equal_nan=True)
    )


class NearestRegridder:
    """Nearest-neighbour mapping from a source grid to a target grid (both 2-D lat/lon).

    Parameters
    ----------
    source_lat, source_lon : arrays (ny_s, nx_s), degrees
    target_lat, target_lon : arrays (ny_t, nx_t), degrees
    radius_m : search radius; target cells farther than this from every source cell are NaN.
    """

    def __init__(
        self,
        source_lat: np.ndarray,
        source_lon: np.ndarray,
        target_lat: np.ndarray,
        target_lon: np.ndarray,
        *,
        radius_m: float,
    ) -> None:
        from pyresample import geometry, kd_tree

        self.source_shape = tuple(np.shape(source_lat))
        self.target_shape = tuple(np.shape(target_lat))

        # pyresample takes longitudes in [-180, 180] only and silently drops the others as
        # invalid: a 0..360 grid (ERA5, PIOMAS) would lose its western half
        def wrap(lon: np.ndarray) -> np.ndarray:
            return (np.asarray(lon, np.float64) + 180.0) % 360.0 - 180.0

        src = geometry.SwathDefinition(
            lons=wrap(source_lon), lats=np.asarray(source_lat, np.float64)
        )
        tgt = geometry.SwathDefinition(
            lons=wrap(target_lon), lats=np.asarray(target_lat, np.float64)
        )
        valid_in, valid_out, index, _ = kd_tree.get_neighbour_info(
            src, tgt, radius_of_influence=float(radius_m), neighbours=1
        )
        # pyresample returns indices into the valid source cells; index == n_valid means none
        source_flat = np.flatnonzero(valid_in)
        n_out = int(np.prod(self.target_shape))
        flat = np.full(n_out, -1, dtype=np.int64)
        out_positions = np.flatnonzero(valid_out)
        found = index < len(source_flat)
        flat[out_positions[found]] = source_flat[index[found]]
        self.index = flat
        self.coverage = float((flat >= 0).mean())

    def _apply_block(self, block: np.ndarray) -> np.ndarray:
        lead = block.shape[:-2]
        values = block.reshape(*lead, -1)
        out = np.take(values, np.where(self.index >= 0, self.index, 0), axis=-1)
        if np.issubdtype(out.dtype, np.floating):
            out[..., self.index < 0] = np.nan
        else:
            out = out.astype(np.float64)
            out[..., self.index < 0] = np.nan
        return out.reshape(*lead, *self.target_shape)

    def __call__(self, da: xr.DataArray, target: xr.Dataset) -> xr.DataArray:
        """``da`` on dims (..., y, x) of the source, moved to ``target``'s (y, x) grid (lazy)."""
        if tuple(da.shape[-2:]) != self.source_shape or da.dims[-2:] != ("y", "x"):
            raise DataError(
                f"{da.name}: dims {da.dims} / shape {da.shape} do not match the source grid "
                f"{self.source_shape} on (y, x)."
            )
        if da.chunks is not None:
            # whole spatial planes per block: the take needs the full source field
            da = da.chunk({"y": -1, "x": -1})
        src = da.rename({"y": "_ys", "x": "_xs"}).drop_vars(["lat", "lon"], errors="ignore")
        src = src.drop_vars([c for c in ("_ys", "_xs") if c in src.coords])
        out = xr.apply_ufunc(
            self._apply_block,
            src,
            input_core_dims=[["_ys", "_xs"]],
            output_core_dims=[["y", "x"]],
            dask="parallelized",
            output_dtypes=[np.result_type(da.dtype, np.float32)],
            dask_gufunc_kwargs={
                "output_sizes": {"y": self.target_shape[0], "x": self.target_shape[1]}
            },
            keep_attrs=True,
        )
        return out.assign_coords(lat=target["lat"], lon=target["lon"])


def _east_north_basis(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit east and north vectors in Earth-centred Cartesian coordinates: each (3, ny, nx)."""
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    east = np.stack([-np.sin(lam), np.cos(lam), np.zeros_like(lam)])
    north = np.stack([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)])
    return east, north


def regrid_vector(
    east: xr.DataArray, north: xr.DataArray, regrid: NearestRegridder, target: xr.Dataset
) -> tuple[xr.DataArray, xr.DataArray]:
    """Move an east/north vector field (dims ..., y, x with 2-D lat/lon) to ``target`` (lazy).

    The vector is written in Cartesian components at each source cell, the three components
    are moved, and the result is projected on the target cell's east and north directions.
    """
    e_s, n_s = _east_north_basis(east["lat"].values, east["lon"].values)
    e_t, n_t = _east_north_basis(target["lat"].values, target["lon"].values)
    dims = ("y", "x")
    moved = [
        regrid(east * xr.DataArray(e_s[k], dims=dims) + north * xr.DataArray(n_s[k], dims=dims),
               target)
        for k in range(3)
    ]  # fmt: skip
    u = sum(moved[k] * xr.DataArray(e_t[k], dims=dims) for k in range(3))
    v = sum(moved[k] * xr.DataArray(n_t[k], dims=dims) for k in range(3))
    return (
        u.rename(east.name).assign_attrs(east.attrs),
        v.rename(north.name).assign_attrs(north.attrs),
    )
