r"""CMEMS Arctic TOPAZ4 reanalysis: ``ARCTIC_MULTIYEAR_PHY_002_003``, dataset
``cmems_mod_arc_phy_my_topaz4_P1D-m``.

North polar stereographic grid (~12.5 km), dims ``time, y, x`` (ocean velocities may carry a
``depth`` dim: the shallowest level is taken as the surface), 2-D ``latitude``/``longitude``,
float fields with a declared ``_FillValue`` on land (decoded by mask-and-scale). ``sithick``,
``siconc`` and ``zos`` keep their names. The velocities ``vxsi``/``vysi`` (ice) and ``vxo``/``vyo``
(ocean) are ALONG THE GRID's x/y axes and are rotated to east/north
(:func:`kgcm.readers.geometry.rotate_to_east_north`) with the polar stereographic grid angle

.. math::

    \alpha = -(\lambda - \lambda_0),

where :math:`\lambda_0` is the projection's central meridian. :math:`\lambda_0` is read from the
grid-mapping variable that the velocities' ``grid_mapping`` attribute names (CF
``polar_stereographic``: ``straight_vertical_longitude_from_pole``, -45° for TOPAZ4). Only when the
file has no such attribute does the reader take ``central_meridian=`` from the caller; without
either it refuses, since a guessed meridian turns every vector by the error. The meridian is then
checked against the file's own latitude/longitude: the x-axis angle measured from them
(:func:`kgcm.readers.geometry.grid_angle_cartesian`) must agree with :math:`\alpha` to within a
degree (median over the grid), which also catches flipped axes. Scalars need no meridian.

Units come from each variable's ``units`` attribute (unknown units are refused; override with
``units={name: ...}``). Land is fill; ``mask`` comes from ``zos`` (or the first variable present)
at the first time step.
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
from kgcm.readers.geometry import (
    grid_angle_cartesian,
    polar_stereographic_angle,
    rotate_to_east_north,
)

#: scalar product variable -> canonical name
SCALARS = {"sithick": "sithick", "siconc": "siconc", "zos": "zos"}
#: canonical (east, north) -> product (x component, y component)
VECTORS = {("usi", "vsi"): ("vxsi", "vysi"), ("uo", "vo"): ("vxo", "vyo")}
#: every product variable this reader knows
PRODUCT_VARIABLES = (*SCALARS, *(name for pair in VECTORS.values() for name in pair))
#: largest median disagreement (degrees) between the projection's angle and the lat/lon grid
ANGLE_TOLERANCE_DEG = 1.0


class TopazReader(Reader):
    """Reader of CMEMS TOPAZ4 Arctic reanalysis files.

    Reader option ``central_meridian`` (degrees east): the projection's central meridian, used
    only when the file has no grid-mapping attribute giving it (TOPAZ4 uses -45).
    """

    name: ClassVar[str] = "cmems-topaz"
    product: ClassVar[str] = (
        "CMEMS Arctic TOPAZ4 ARCTIC_MULTIYEAR_PHY_002_003, polar stereographic 12.5 km, daily"
    )
    time_step: ClassVar[str] = "daily"
    provides: ClassVar[tuple[str, ...]] = ("sithick", "siconc", "zos", "uo", "vo", "usi", "vsi")

    def guess_can_open(self, path: Path) -> bool:
        header = netcdf_header(path)
        if header is None:
            return False
        variables, _ = header
        if not {"latitude", "longitude", "time"} <= set(variables):
            return False
        if any(variables[c]["_dims"] != ("y", "x") for c in ("latitude", "longitude")):
            return False
        fields = [v for v in PRODUCT_VARIABLES if v in variables]
        return bool(fields) and all(variables[v]["_dims"][-2:] == ("y", "x") for v in fields)

    def _open(
        self,
        files: list[Path],
        opts: OpenOptions,
        *,
        central_meridian: float | None = None,
        **options: Any,
    ) -> xr.Dataset:
        if options:
            raise DataError(
                f"{self.name} has no options {sorted(options)}; its own option is central_meridian."
            )
        source = _describe(files)
        raw = open_netcdf(files, chunks=opts.chunks, concat_dim="time")
        present = [v for v in PRODUCT_VARIABLES if v in raw]
        if not present:
            raise DataError(
                f"{source}: none of the TOPAZ variables {list(PRODUCT_VARIABLES)} is in the file."
            )

        def wanted(name: str) -> bool:
            return opts.variables is None or name in opts.variables

        out: dict[str, xr.DataArray] = {}
        for product_name, name in SCALARS.items():
            if product_name in raw and wanted(name):
                da = _surface(raw[product_name], raw, source)
                out[name] = canonical_variable(da, name, source=source, units=opts.units)

        for c in ("latitude", "longitude"):
            if c not in raw.variables or raw[c].dims != ("y", "x"):
                raise DataError(
                    f"{source}: needs the 2-D {c}(y, x) of the TOPAZ grid; the file has "
                    f"{raw[c].dims if c in raw.variables else 'none'}."
                )
        lat = raw["latitude"].values.astype(np.float64)
        lon = raw["longitude"].values.astype(np.float64)
        pairs = [
            (east_north, xy)
            for east_north, xy in VECTORS.items()
            if (xy[0] in raw or xy[1] in raw) and (wanted(east_north[0]) or wanted(east_north[1]))
        ]
        if pairs:
            for _, (xname, yname) in pairs:
                if xname not in raw or yname not in raw:
                    have, lack = (xname, yname) if xname in raw else (yname, xname)
                    raise DataError(
                        f"{source}: {have} is there but {lack} is not; the grid-relative pair is "
                        f"needed together to rotate it to east/north. Include {lack} in the "
                        f"download."
                    )
            lon0 = _central_meridian(
                raw, [name for _, xy in pairs for name in xy], central_meridian, source
            )
            angle = polar_stereographic_angle(lon, lon0)
            _check_angle(angle, lat, lon, lon0, source)
            rotation = xr.DataArray(angle, dims=("y", "x"))
            for (east, north), (xname, yname) in pairs:
                u = canonical_variable(
                    _surface(raw[xname], raw, source), east, source=source, units=opts.units
                )
                v = canonical_variable(
                    _surface(raw[yname], raw, source), north, source=source, units=opts.units
                )
                u_east, v_north = rotate_to_east_north(u, v, rotation)
                out[east], out[north] = u_east.rename(east), v_north.rename(north)

        drop = ["y", "x", "latitude", "longitude", "depth"]
        ds = xr.Dataset({k: da.drop_vars(drop, errors="ignore") for k, da in out.items()})
        ds = ds.assign_coords(lat=(("y", "x"), lat), lon=(("y", "x"), lon))
        base = raw["zos"] if "zos" in raw else raw[present[0]]
        ds["mask"] = mask_from(_surface(base, raw, source)).drop_vars(drop, errors="ignore")
        return ds


def _surface(da: xr.DataArray, raw: xr.Dataset, source: str) -> xr.DataArray:
    """``da`` at its shallowest level, as ``(time, y, x)``."""
    if "depth" in da.dims:
        da = da.isel(depth=int(np.argmin(np.abs(raw["depth"].values))), drop=True)
    extra = set(da.dims) - {"time", "y", "x"}
    if extra:
        raise DataError(
            f"{source}: {da.name} has unexpected dims {sorted(extra)}; expected (time, [depth,] "
            f"y, x)."
        )
    return da.transpose("time", "y", "x")


def _central_meridian(
    raw: xr.Dataset, vector_names: list[str], given: float | None, source: str
) -> float:
    """The projection's central meridian: from the grid mapping, else ``given``, else an error."""
    mappings = sorted(
        {str(raw[v].attrs["grid_mapping"]) for v in vector_names if "grid_mapping" in raw[v].attrs}
    )
    from_file: float | None = None
    why_absent = f"{vector_names} have no grid_mapping attribute"
    if len(mappings) > 1:
        raise DataError(
            f"{source}: {vector_names} name different grid mappings {mappings}; the components "
            f"of one vector must share one grid."
        )
    if mappings:
        gm_name = mappings[0]
        if gm_name not in raw.variables:
            why_absent = f"their grid_mapping {gm_name!r} is not a variable of the file"
        else:
            attrs = raw[gm_name].attrs
            kind = attrs.get("grid_mapping_name")
            if kind != "polar_stereographic":
                raise DataError(
                    f"{source}: grid mapping {gm_name!r} is {kind!r}, not 'polar_stereographic'; "
                    f"this is not a TOPAZ file. Choose the reader of its product."
                )
            origin = attrs.get("latitude_of_projection_origin")
            if origin is not None and float(origin) != 90.0:
                raise DataError(
                    f"{source}: grid mapping {gm_name!r} has latitude_of_projection_origin "
                    f"{origin}; the TOPAZ reader handles the north polar grid (90) only."
                )
            values = [
                float(attrs[k])
                for k in ("straight_vertical_longitude_from_pole", "longitude_of_projection_origin")
                if k in attrs
            ]
            if values and max(values) - min(values) > 1e-9:
                raise DataError(
                    f"{source}: grid mapping {gm_name!r} gives two central meridians "
                    f"(straight_vertical_longitude_from_pole and longitude_of_projection_origin: "
                    f"{values}); fix the file's attributes."
                )
            if values:
                from_file = values[0]
            else:
                why_absent = (
                    f"grid mapping {gm_name!r} has no straight_vertical_longitude_from_pole"
                )
    if from_file is not None:
        if given is not None and abs(from_file - float(given)) > 1e-9:
            raise DataError(
                f"{source}: central_meridian={given} disagrees with the file's grid mapping "
                f"({from_file}); leave central_meridian out to use the file's value."
            )
        return from_file
    if given is None:
        raise DataError(
            f"{source}: {vector_names} are components along the grid's x/y axes, and rotating "
            f"them to east/north needs the polar stereographic central meridian, which the file "
            f"does not give ({why_absent}). Pass central_meridian=<degrees east> to the reader "
            f"(the TOPAZ4 grid uses -45), or use files that keep the 'stereographic' grid "
            f"mapping."
        )
    return float(given)


def _check_angle(
    angle: np.ndarray, lat: np.ndarray, lon: np.ndarray, lon0: float, source: str
) -> None:
    """Refuse a central meridian (or axis orientation) that the lat/lon grid contradicts."""
    measured = grid_angle_cartesian(lat, lon)
    mismatch = np.rad2deg(np.abs(np.angle(np.exp(1j * (measured - angle)))))
    median = float(np.nanmedian(mismatch))
    if not median <= ANGLE_TOLERANCE_DEG:
        raise DataError(
            f"{source}: the x axis of the latitude/longitude grid is not where a north polar "
            f"stereographic grid with central meridian {lon0:g} puts it (median mismatch "
            f"{median:.1f} degrees). The central meridian is wrong, or the file's x/y axes are "
            f"flipped or transposed; pass the right central_meridian or fix the file."
        )
