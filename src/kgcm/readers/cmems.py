"""CMEMS GLORYS12 reanalysis: ``GLOBAL_MULTIYEAR_PHY_001_030``, dataset
``cmems_mod_glo_phy_my_0.083deg_P1D-m``.

Regular 1/12° lat/lon grid, dims ``time, latitude, longitude`` (ocean velocities may carry a
``depth`` dim: the shallowest level is taken as the surface). Velocities are already EAST/NORTH.
Older NetCDF files pack int16 with ``scale_factor``/``add_offset`` and ``_FillValue = -32767``;
toolbox/ARCO output is float with NaN. Both decode through xarray's mask-and-scale. Units are read
from each variable's ``units`` attribute. Land is fill; ``mask`` comes from ``zos`` (or the first
variable present) at the first time step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from kgcm.errors import DataError
from kgcm.readers.base import (
    OpenOptions,
    Reader,
    _describe,
    canonical_variable,
    mask_from,
    netcdf_header,
    open_netcdf,
)

#: product variable -> canonical name (the same names: GLORYS is CF-conformant)
NAMES = {v: v for v in ("sithick", "siconc", "zos", "uo", "vo", "usi", "vsi")}


class Glorys12Reader(Reader):
    name: ClassVar[str] = "cmems-glorys12"
    product: ClassVar[str] = (
        "CMEMS GLORYS12 GLOBAL_MULTIYEAR_PHY_001_030, regular 1/12 deg lat/lon, daily"
    )
    time_step: ClassVar[str] = "daily"
    provides: ClassVar[tuple[str, ...]] = tuple(NAMES)

    def guess_can_open(self, path: Path) -> bool:
        header = netcdf_header(path)
        if header is None:
            return False
        variables, _ = header
        if not {"latitude", "longitude", "time"} <= set(variables):
            return False
        fields = [v for v in NAMES if v in variables]
        return bool(fields) and all(
            variables[v]["_dims"][-2:] == ("latitude", "longitude") for v in fields
        )

    def _open(self, files: list[Path], opts: OpenOptions, **options: Any) -> xr.Dataset:
        if options:
            raise DataError(f"{self.name} has no options {sorted(options)}.")
        source = _describe(files)
        chunks = _product_chunks(opts.chunks)
        raw = open_netcdf(files, chunks=chunks, concat_dim="time")
        present = [v for v in NAMES if v in raw]
        if not present:
            raise DataError(
                f"{source}: none of the GLORYS12 variables {sorted(NAMES)} is in the file."
            )
        wanted = (
            present
            if opts.variables is None
            else [v for v in present if NAMES[v] in opts.variables]
        )
        out = {}
        for var in wanted:
            da = raw[var]
            if "depth" in da.dims:
                da = da.isel(depth=int(np.argmin(np.abs(raw["depth"].values))), drop=True)
            extra = set(da.dims) - {"time", "latitude", "longitude"}
            if extra:
                raise DataError(f"{source}: {var} has unexpected dims {sorted(extra)}.")
            da = da.transpose("time", "latitude", "longitude")
            out[NAMES[var]] = canonical_variable(da, NAMES[var], source=source, units=opts.units)
        missing = [c for c in ("latitude", "longitude") if c not in raw.coords]
        if missing:
            # without them xarray would number the rows and columns, and those numbers would
            # pass for degrees (cells near the equator)
            raise DataError(
                f"{source}: the coordinate variables {missing} are missing (the dims exist, "
                f"their values do not); the file is incomplete. Download it again with its "
                f"coordinates."
            )
        ds = xr.Dataset(out).rename({"latitude": "y", "longitude": "x"})
        lat = raw["latitude"].values.astype(np.float64)
        lon = raw["longitude"].values.astype(np.float64)
        lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
        ds = ds.drop_vars(["y", "x"], errors="ignore").assign_coords(
            lat=(("y", "x"), lat2), lon=(("y", "x"), lon2)
        )
        base = raw["zos"] if "zos" in raw else raw[present[0]]
        if "depth" in base.dims:
            base = base.isel(depth=0, drop=True)
        ds["mask"] = mask_from(base.rename({"latitude": "y", "longitude": "x"})).drop_vars(
            ["y", "x"], errors="ignore"
        )
        return ds


def _product_chunks(chunks: Any) -> Any:
    """Canonical chunk names (time, y, x) mapped to the product's dims."""
    if not isinstance(chunks, dict):
        return chunks
    rename = {"y": "latitude", "x": "longitude"}
    return {rename.get(k, k): v for k, v in chunks.items()}
