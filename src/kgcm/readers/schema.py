"""The canonical schema every reader returns.

Dimensions are ``(time, y, x)`` for gridded fields (``(time,)`` for area-mean series), with
2-D ``lat``/``lon`` coordinates in degrees. Variables, when a product has them:

============  ===========================================================  ==========
name          CF standard_name                                             units
============  ===========================================================  ==========
``sithick``   ``sea_ice_thickness`` (over the ice-covered part, see below)  m
``zos``       ``sea_surface_height_above_geoid`` (the product's own datum)  m
``uo``        ``eastward_sea_water_velocity`` (surface)                      m s-1
``vo``        ``northward_sea_water_velocity`` (surface)                     m s-1
``usi``       ``eastward_sea_ice_velocity``                                  m s-1
``vsi``       ``northward_sea_ice_velocity``                                 m s-1
``siconc``    ``sea_ice_area_fraction``                                      1
``tas``       ``air_temperature`` (2 m above the surface)                    K
``uas``       ``eastward_wind`` (10 m above the surface)                     m s-1
``vas``       ``northward_wind`` (10 m above the surface)                    m s-1
``psl``       ``air_pressure_at_mean_sea_level``                             Pa
``rsds``      ``surface_downwelling_shortwave_flux_in_air``                  W m-2
``rlds``      ``surface_downwelling_longwave_flux_in_air``                   W m-2
``mask``      ``sea_binary_mask`` (1 ocean / valid, 0 land)                  1
============  ===========================================================  ==========

Names follow CMIP6 (as ``sithick``, ``zos``, ``uo`` do): the atmospheric ones are the
confounders of the ocean forcing (``docs/pipeline.md``), read from ERA5 (``t2m``, ``u10``,
``v10``, ``msl``, ``ssrd``, ``strd``). Radiation is a mean flux over the step, never an
accumulation.

Velocities are always EAST/NORTH: readers rotate grid-relative components before returning.

Thickness convention: ``sithick`` is the mean thickness over the ice-covered part of the cell
(CF ``sea_ice_thickness`` with ``cell_methods = "area: mean where sea_ice"``). Products that store
*effective* thickness (ice volume per cell area, e.g. PIOMAS ``heff``) are returned as
``sithick_effective`` (same standard name, ``cell_methods = "area: mean where sea"``); readers
never convert silently. ``kgcm prepare`` converts ``sithick = sithick_effective / siconc`` when
asked to and concentration is available (cells with ``siconc`` below a threshold become NaN), or
refuses to mix the two conventions. Open water keeps whatever the product stores there (0 where
the product writes 0 over ocean, NaN where it writes fill); land is NaN with ``mask = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import xarray as xr

from kgcm.errors import DataError

__all__ = ["CANONICAL", "VariableSpec", "apply_attrs", "check_canonical"]


@dataclass(frozen=True)
class VariableSpec:
    standard_name: str
    units: str
    long_name: str
    cell_methods: str | None = None


CANONICAL: dict[str, VariableSpec] = {
    "sithick": VariableSpec(
        "sea_ice_thickness",
        "m",
        "sea-ice thickness over the ice-covered part of the cell",
        "area: mean where sea_ice",
    ),
    "sithick_effective": VariableSpec(
        "sea_ice_thickness",
        "m",
        "effective sea-ice thickness (ice volume per cell area)",
        "area: mean where sea",
    ),
    "zos": VariableSpec(
        "sea_surface_height_above_geoid", "m", "sea-surface height (product's own datum)"
    ),
    "uo": VariableSpec("eastward_sea_water_velocity", "m s-1", "eastward surface ocean velocity"),
    "vo": VariableSpec("northward_sea_water_velocity", "m s-1", "northward surface ocean velocity"),
    "usi": VariableSpec("eastward_sea_ice_velocity", "m s-1", "eastward sea-ice velocity"),
    "vsi": VariableSpec("northward_sea_ice_velocity", "m s-1", "northward sea-ice velocity"),
    "siconc": VariableSpec("sea_ice_area_fraction", "1", "sea-ice concentration (0-1)"),
    "tas": VariableSpec("air_temperature", "K", "near-surface (2 m) air temperature"),
    "uas": VariableSpec("eastward_wind", "m s-1", "eastward near-surface (10 m) wind"),
    "vas": VariableSpec("northward_wind", "m s-1", "northward near-surface (10 m) wind"),
    "psl": VariableSpec("air_pressure_at_mean_sea_level", "Pa", "sea-level pressure"),
    "rsds": VariableSpec(
        "surface_downwelling_shortwave_flux_in_air",
        "W m-2",
        "surface downwelling shortwave radiation (mean flux over the step)",
    ),
    "rlds": VariableSpec(
        "surface_downwelling_longwave_flux_in_air",
        "W m-2",
        "surface downwelling longwave radiation (mean flux over the step)",
    ),
    "mask": VariableSpec("sea_binary_mask", "1", "1 where the product has ocean data, 0 on land"),
}

#: Variables that are only valid as a pair (east, north).
VECTOR_PAIRS: tuple[tuple[str, str], ...] = (("uo", "vo"), ("usi", "vsi"), ("uas", "vas"))


def apply_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Set ``standard_name``, ``units`` and ``long_name`` on every canonical variable."""
    for name in ds.data_vars:
        spec = CANONICAL.get(str(name))
        if spec is not None:
            ds[name].attrs.update(
                standard_name=spec.standard_name, units=spec.units, long_name=spec.long_name
            )
            if spec.cell_methods:
                ds[name].attrs["cell_methods"] = spec.cell_methods
    if "lat" in ds.coords:
        ds["lat"].attrs.update(standard_name="latitude", units="degrees_north")
    if "lon" in ds.coords:
        ds["lon"].attrs.update(standard_name="longitude", units="degrees_east")
    if "time" in ds.coords:
        ds["time"].attrs.setdefault("standard_name", "time")
    return ds


def check_canonical(ds: xr.Dataset, *, source: str = "dataset") -> None:
    """Raise :class:`DataError` unless ``ds`` follows the canonical schema."""
    dims = set(ds.dims)
    if dims not in ({"time", "y", "x"}, {"time"}):
        raise DataError(
            f"{source}: dimensions {sorted(dims)} are not canonical; expected (time, y, x) or "
            f"(time,)."
        )
    unknown = [str(v) for v in ds.data_vars if str(v) not in CANONICAL and str(v) != "treatment"]
    if unknown and ds.attrs.get("kgcm_schema") != "table":
        raise DataError(
            f"{source}: variables {unknown} are not in the canonical schema "
            f"{sorted(CANONICAL)}; a reader must rename them."
        )
    for name, spec in CANONICAL.items():
        if name in ds and ds[name].attrs.get("units") != spec.units:
            raise DataError(
                f"{source}: {name} has units {ds[name].attrs.get('units')!r}, expected "
                f"{spec.units!r}."
            )
    for east, north in VECTOR_PAIRS:
        if (east in ds) != (north in ds):
            raise DataError(f"{source}: {east} and {north} must come together (east, north).")
    if "y" in dims:
        for c in ("lat", "lon"):
            if c not in ds.coords or ds[c].dims != ("y", "x"):
                raise DataError(f"{source}: needs a 2-D {c}(y, x) coordinate.")
