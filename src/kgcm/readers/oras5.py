r"""ECMWF ORAS5 ocean and sea-ice reanalysis on the NEMO ORCA025 grid, monthly means.

Files, as the Copernicus Climate Data Store ships them (``reanalysis-oras5``): one variable per
file and month (``sossheig_control_monthly_highres_2D_202001_OPER_v0.1.nc``), dims
``time_counter, y, x`` (3-D variables add ``deptht``/``depthu``/``depthv``: the shallowest level
is taken as the surface), 2-D ``nav_lat``/``nav_lon``, float fields with
``_FillValue = 1e20``. Give any mix of variables and months: files are grouped by the variables
they hold, each group is concatenated along time, and the groups are merged; every variable must
cover the same months (the reader refuses rather than padding with NaN).

=============  ============  ===========================================================
ORAS5          canonical     note
=============  ============  ===========================================================
``iicethic``   ``sithick``   LIM2 ice thickness (over the ice-covered part), m
``sossheig``   ``zos``       sea-surface height (model datum), m
``ileadfra``   ``siconc``    LIM2 writes ice CONCENTRATION under this name, 0-1
``iicevelu``   ``usi``       ice velocity along i, rotated (with ``iicevelv``)
``vozocrtx``   ``uo``        ocean velocity along i, rotated (with ``vomecrty``)
=============  ============  ===========================================================

Land mask. ORAS5 stores land as 0 in some fields (the ice fields) and as fill in others, so a 0
cannot be told from ice-free ocean by its value. The reader therefore masks with the model's
own land-sea mask, the surface level of ``tmask`` (or ``tmaskutil``) of the NEMO
``mesh_mask.nc`` of ORCA025, given either among ``paths`` (it is recognised by content) or as
``mesh_mask=<path>``; without one it refuses. Cells with ``tmask = 0`` become NaN in every
variable (``mask = 0``); an ocean 0 (open water in ``iicethic``) stays 0. The mesh mask's T-point
coordinates (``gphit``/``glamt``, else ``nav_lat``/``nav_lon``) are the output ``lat``/``lon``;
the data files' ``nav_lat``/``nav_lon`` must match them to within half a degree.

Vectors. ``iicevel*`` and ``vozocrtx``/``vomecrty`` are along the model's i/j axes, which on
ORCA are not aligned with east/north. They are rotated with the local angle of the i axis,
computed from the T-point lat/lon by :func:`kgcm.readers.geometry.grid_angle_cartesian`
(chord between the two i neighbours, projected on the local east/north): the error is second
order in the grid spacing times the curvature of the grid line, with no degradation near the
geographic pole (unlike lat/lon differences, :func:`~kgcm.readers.geometry.grid_angle`, which err
by about :math:`0.37(\Delta/r)^2` rad at :math:`r` from the pole). NEMO itself measures the
angle at the U and V points separately (``geo2ocean``); one T-point angle is used here.

C-grid staggering: NEMO's ``vozocrtx`` sits on U points and ``vomecrty`` on V points, half a cell
from the T point; LIM2 writes its ice velocities at T points. The reader treats every component as
cell-centred at the T point of the same (j, i) index, without interpolation: the half-cell shift
(about 5-7 km in the Arctic) is far below the scales kgcm analyses, while averaging U/V onto T
would halve velocities next to coasts (where the wall's value is 0) and lose the edge row/column.

Time stamps: ``time_counter`` of an ORAS5 monthly mean is the centre of the month (as NEMO writes
averaged output); the reader keeps the product's stamps (``time_step = "monthly"``) and converts
nothing. Everything but coordinates and the 2-D mask stays lazy (dask).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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
    check_time_axis,
    netcdf_header,
    open_netcdf,
)
from kgcm.readers.geometry import grid_angle_cartesian, rotate_to_east_north

#: scalar product variable -> canonical name
SCALARS = {"iicethic": "sithick", "sossheig": "zos", "ileadfra": "siconc"}
#: canonical (east, north) -> product (i component, j component)
VECTORS = {("usi", "vsi"): ("iicevelu", "iicevelv"), ("uo", "vo"): ("vozocrtx", "vomecrty")}
#: every product variable this reader knows
PRODUCT_VARIABLES = (*SCALARS, *(name for pair in VECTORS.values() for name in pair))
#: NEMO vertical dims (the shallowest level is the surface)
DEPTH_DIMS = ("deptht", "depthu", "depthv", "depthw")
#: land-sea mask variables of a NEMO mesh mask, in order of preference
MASK_VARIABLES = ("tmask", "tmaskutil")
#: largest distance (degrees) between the data files' and the mesh mask's grid points
GRID_TOLERANCE_DEG = 0.5


class Oras5Reader(Reader):
    """Reader of ECMWF ORAS5 monthly files (NEMO ORCA025).

    Reader option ``mesh_mask``: path of the ORCA025 ``mesh_mask.nc`` (if not among the paths).
    """

    name: ClassVar[str] = "oras5"
    product: ClassVar[str] = (
        "ECMWF ORAS5 ocean/sea-ice reanalysis, NEMO ORCA025 curvilinear, monthly"
    )
    time_step: ClassVar[str] = "monthly"
    provides: ClassVar[tuple[str, ...]] = ("sithick", "zos", "siconc", "uo", "vo", "usi", "vsi")

    def guess_can_open(self, path: Path) -> bool:
        header = netcdf_header(path)
        if header is None:
            return False
        variables, _ = header
        if not all(variables.get(c, {}).get("_dims") == ("y", "x") for c in ("nav_lat", "nav_lon")):
            return False
        fields = [v for v in PRODUCT_VARIABLES if v in variables]
        if fields:
            return all(
                variables[v]["_dims"][0] == "time_counter"
                and variables[v]["_dims"][-2:] == ("y", "x")
                for v in fields
            )
        return _is_mesh_mask(variables)

    def _open(
        self,
        files: list[Path],
        opts: OpenOptions,
        *,
        mesh_mask: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> xr.Dataset:
        if options:
            raise DataError(
                f"{self.name} has no options {sorted(options)}; its own option is mesh_mask."
            )
        source = _describe(files)
        groups, meshes = _classify(files)
        if mesh_mask is not None:
            given = Path(mesh_mask)
            if not given.exists():
                raise DataError(f"mesh_mask={str(given)!r} does not exist.")
            meshes.append(given)
        if not groups:
            raise DataError(
                f"{source}: none of the ORAS5 variables {list(PRODUCT_VARIABLES)} is in the "
                f"files (only a mesh mask was given); add the variables' files."
            )
        if len(meshes) != 1:
            raise _mesh_mask_error(meshes, source)
        ocean, lat, lon = _read_mesh_mask(meshes[0])

        def wanted(name: str) -> bool:
            return opts.variables is None or name in opts.variables

        needed = {p for p, name in SCALARS.items() if wanted(name)} | {
            p for (east, north), ij in VECTORS.items() if wanted(east) or wanted(north) for p in ij
        }
        selected = {names: group for names, group in groups.items() if set(names) & needed}
        if not selected:
            held = sorted({name for names in groups for name in names})
            raise DataError(
                f"{source}: the files hold {held}, which give none of {list(opts.variables or ())}"
                f"; add the files of those variables."
            )
        chunks = _product_chunks(opts.chunks)
        opened: dict[str, xr.DataArray] = {}
        axes: dict[tuple[str, ...], tuple[list[Path], pd.DatetimeIndex]] = {}
        for names, group in selected.items():
            raw = open_netcdf(group, chunks=chunks, concat_dim="time_counter")
            raw = check_time_axis(raw.rename(time_counter="time"), source=_describe(group))
            _check_grid(raw, lat, lon, ocean, group, meshes[0])
            axes[names] = (group, pd.DatetimeIndex(raw["time"].values))
            for name in names:
                opened[name] = _surface(raw[name], raw, _describe(group))
        _check_same_times(axes)

        is_ocean = xr.DataArray(ocean, dims=("y", "x"))
        out: dict[str, xr.DataArray] = {}
        for product_name, name in SCALARS.items():
            if product_name in opened and wanted(name):
                da = canonical_variable(opened[product_name], name, source=source, units=opts.units)
                out[name] = da.where(is_ocean)
        pairs = [
            (east_north, ij)
            for east_north, ij in VECTORS.items()
            if (ij[0] in opened or ij[1] in opened)
            and (wanted(east_north[0]) or wanted(east_north[1]))
        ]
        if pairs:
            rotation = xr.DataArray(grid_angle_cartesian(lat, lon), dims=("y", "x"))
        for (east, north), (iname, jname) in pairs:
            if iname not in opened or jname not in opened:
                have, lack = (iname, jname) if iname in opened else (jname, iname)
                raise DataError(
                    f"{source}: {have} is given but {lack} is not; the grid-relative pair is "
                    f"needed together to rotate it to east/north. Add the {lack} files."
                )
            u = canonical_variable(opened[iname], east, source=source, units=opts.units)
            v = canonical_variable(opened[jname], north, source=source, units=opts.units)
            u_east, v_north = rotate_to_east_north(u, v, rotation)
            out[east] = u_east.where(is_ocean).rename(east)
            out[north] = v_north.where(is_ocean).rename(north)

        drop = ["nav_lat", "nav_lon", "y", "x"]
        ds = xr.Dataset({k: da.drop_vars(drop, errors="ignore") for k, da in out.items()})
        ds = ds.assign_coords(lat=(("y", "x"), lat), lon=(("y", "x"), lon))
        ds["mask"] = xr.DataArray(ocean.astype(np.int8), dims=("y", "x"))
        if "time" in ds.coords:
            ds["time"].attrs["long_name"] = "centre of the monthly averaging period (time_counter)"
        return ds


def _is_mesh_mask(variables: Mapping[str, Mapping[str, Any]]) -> bool:
    return any(
        m in variables and tuple(variables[m]["_dims"])[-2:] == ("y", "x") for m in MASK_VARIABLES
    )


def _classify(files: Sequence[Path]) -> tuple[dict[tuple[str, ...], list[Path]], list[Path]]:
    """Data files grouped by the ORAS5 variables they hold, and the mesh-mask files."""
    groups: dict[tuple[str, ...], list[Path]] = {}
    meshes: list[Path] = []
    for f in files:
        header = netcdf_header(f)
        if header is None:
            raise DataError(
                f"{f}: cannot be read as NetCDF. The file may be truncated or corrupt: download "
                f"it again."
            )
        variables, _ = header
        names = tuple(v for v in PRODUCT_VARIABLES if v in variables)
        if names:
            groups.setdefault(names, []).append(f)
        elif _is_mesh_mask(variables):
            meshes.append(f)
        else:
            raise DataError(
                f"{f}: holds none of the ORAS5 variables {list(PRODUCT_VARIABLES)} and is not a "
                f"NEMO mesh mask (tmask); remove it from the inputs."
            )
    return groups, meshes


def _mesh_mask_error(meshes: list[Path], source: str) -> DataError:
    if meshes:
        return DataError(
            f"{source}: {len(meshes)} mesh masks given ({[str(m) for m in meshes]}); give one, "
            f"either among the paths or as mesh_mask=, not both."
        )
    return DataError(
        f"{source}: ORAS5 stores land as 0 in some variables (the ice fields), so land cannot be "
        f"told from ice-free ocean without the model's land-sea mask. Give the ORCA025 NEMO "
        f"mesh mask (mesh_mask.nc, with 'tmask') among the paths or as mesh_mask='<path>'."
    )


def _read_mesh_mask(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ocean, lat, lon)``: the surface land-sea mask (bool) and T-point coordinates."""
    import netCDF4

    try:
        nc = netCDF4.Dataset(path)
    except Exception as exc:
        raise DataError(
            f"{path}: the mesh mask cannot be read as NetCDF ({exc}); download it again."
        ) from exc
    with nc:
        name = next((m for m in MASK_VARIABLES if m in nc.variables), None)
        if name is None:
            raise DataError(
                f"{path}: is not a NEMO mesh mask: it has none of {list(MASK_VARIABLES)}. Give "
                f"the ORCA025 mesh_mask.nc."
            )
        values = _first_plane(nc.variables[name], path)
        coords = []
        for preferred, fallback in (("gphit", "nav_lat"), ("glamt", "nav_lon")):
            var = preferred if preferred in nc.variables else fallback
            if var not in nc.variables:
                raise DataError(
                    f"{path}: the mesh mask has neither {preferred!r} nor {fallback!r}; cannot "
                    f"place its grid."
                )
            coords.append(np.asarray(_first_plane(nc.variables[var], path), dtype=np.float64))
    bad = ~np.isin(values, (0, 1))
    if bad.any():
        raise DataError(
            f"{path}: {name} holds values other than 0 and 1 (e.g. {values[bad][0]}); it is not "
            f"a land-sea mask."
        )
    return values == 1, coords[0], coords[1]


def _first_plane(var: Any, path: Path) -> np.ndarray:
    """The last two dims (y, x) of a NetCDF variable at index 0 of every leading dim (surface)."""
    if tuple(var.dimensions)[-2:] != ("y", "x"):
        raise DataError(
            f"{path}: mesh mask variable {var.name!r} has dims {var.dimensions}, not (..., y, x)."
        )
    plane = var[(0,) * (var.ndim - 2)]
    return np.ma.filled(plane, np.nan) if np.ma.isMaskedArray(plane) else np.asarray(plane)


def _check_grid(
    raw: xr.Dataset,
    lat: np.ndarray,
    lon: np.ndarray,
    ocean: np.ndarray,
    group: list[Path],
    mesh: Path,
) -> None:
    """The data files' nav_lat/nav_lon must be the mesh mask's grid (within half a degree) at
    ocean points (NEMO output may hold 0 in nav_lat/nav_lon of eliminated land blocks)."""
    source = _describe(group)
    if "nav_lat" not in raw.variables or "nav_lon" not in raw.variables:
        raise DataError(f"{source}: has no nav_lat/nav_lon; cannot check its grid.")
    data_lat = raw["nav_lat"].values.astype(np.float64)
    data_lon = raw["nav_lon"].values.astype(np.float64)
    if data_lat.shape != lat.shape:
        raise DataError(
            f"{source}: grid (y, x) = {data_lat.shape} differs from the mesh mask {mesh} "
            f"{lat.shape}; give the mesh mask of the files' grid (ORCA025: 1021 x 1442)."
        )
    cosine = (_unit(data_lat, data_lon) * _unit(lat, lon)).sum(axis=0)
    distance = np.rad2deg(np.arccos(np.clip(cosine, -1.0, 1.0)))
    worst = float(np.nanmax(distance[ocean], initial=0.0))
    if worst > GRID_TOLERANCE_DEG:
        raise DataError(
            f"{source}: nav_lat/nav_lon are up to {worst:.2f} degrees from the mesh mask {mesh}'s "
            f"grid points; the mesh mask belongs to another grid. Give the ORCA025 mesh_mask.nc."
        )


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])


def _surface(da: xr.DataArray, raw: xr.Dataset, source: str) -> xr.DataArray:
    """``da`` at its shallowest level, as ``(time, y, x)``."""
    for dim in [d for d in da.dims if d in DEPTH_DIMS]:
        if dim not in raw.variables:
            raise DataError(
                f"{source}: {da.name} has a {dim} dim without a {dim} coordinate, so its surface "
                f"level cannot be found; the file is incomplete."
            )
        da = da.isel({dim: int(np.argmin(np.abs(raw[dim].values)))}, drop=True)
    extra = set(da.dims) - {"time", "y", "x"}
    if extra:
        raise DataError(
            f"{source}: {da.name} has unexpected dims {sorted(extra)}; expected (time_counter, "
            f"[depth,] y, x)."
        )
    return da.transpose("time", "y", "x")


def _check_same_times(axes: Mapping[tuple[str, ...], tuple[list[Path], pd.DatetimeIndex]]) -> None:
    """Every variable group must cover the same months."""
    items = list(axes.items())
    (names0, (files0, times0)) = items[0]
    for names, (group, times) in items[1:]:
        if len(times) != len(times0) or not (times == times0).all():
            only_here = times.difference(times0)
            only_there = times0.difference(times)
            raise DataError(
                f"{_describe(group)}: {list(names)} cover {len(times)} months and {list(names0)} "
                f"({_describe(files0)}) cover {len(times0)}; months only in the first: "
                f"{[f'{t:%Y-%m}' for t in only_here[:6]]}, only in the second: "
                f"{[f'{t:%Y-%m}' for t in only_there[:6]]}. Give every variable for the same "
                f"months."
            )


def _product_chunks(chunks: Any) -> Any:
    """Canonical chunk names (time, y, x) mapped to the product's dims."""
    if not isinstance(chunks, Mapping):
        return chunks
    return {("time_counter" if k == "time" else k): v for k, v in chunks.items()}
