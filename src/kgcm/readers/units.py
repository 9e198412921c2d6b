"""Unit conversion from a variable's ``units`` attribute to the canonical unit.

Only spellings listed here are accepted; anything else is refused with the accepted list, because
a guessed unit silently ruins every number downstream (cm/s read as m/s is a factor of 100).
"""

from __future__ import annotations

import xarray as xr

from kgcm.errors import DataError

__all__ = ["FACTORS", "conversion_factor", "to_canonical_units"]

_M = ("m", "meter", "meters", "metre", "metres")
_CM = ("cm", "centimeter", "centimeters", "centimetre", "centimetres")
_MM = ("mm", "millimeter", "millimeters", "millimetre", "millimetres")
_MS = (
    "m/s",
    "m s-1",
    "m s^-1",
    "m s**-1",
    "m.s-1",
    "m sec-1",
    "meter/second",
    "meters/second",
    "metre/second",
    "metres/second",
    "meters per second",
    "metres per second",
    "m/sec",
)
_CMS = (
    "cm/s",
    "cm s-1",
    "cm s^-1",
    "cm s**-1",
    "cm.s-1",
    "cm/sec",
    "centimeters/second",
    "centimetres/second",
    "centimeters per second",
    "centimetres per second",
)
_ONE = ("1", "fraction", "0-1", "(0 - 1)", "dimensionless", "")
_PERCENT = ("%", "percent", "percentage")
_K = ("k", "kelvin", "degk", "deg_k")
_PA = ("pa", "pascal", "pascals", "n m-2", "n m**-2")
_HPA = ("hpa", "mbar", "millibar", "millibars")
_WM2 = ("w m-2", "w m**-2", "w m^-2", "w/m2", "w/m^2", "watt/m2", "watts/m2")

#: canonical unit -> {accepted spelling (lower case): factor to canonical}
FACTORS: dict[str, dict[str, float]] = {
    "m": {**dict.fromkeys(_M, 1.0), **dict.fromkeys(_CM, 0.01), **dict.fromkeys(_MM, 0.001)},
    "m s-1": {**dict.fromkeys(_MS, 1.0), **dict.fromkeys(_CMS, 0.01)},
    "1": {**dict.fromkeys(_ONE, 1.0), **dict.fromkeys(_PERCENT, 0.01)},
    # temperatures in degrees Celsius need an offset, not a factor: refused, not converted
    "K": dict.fromkeys(_K, 1.0),
    "Pa": {**dict.fromkeys(_PA, 1.0), **dict.fromkeys(_HPA, 100.0)},
    "W m-2": dict.fromkeys(_WM2, 1.0),
}


def conversion_factor(units: str | None, target: str, *, variable: str, source: str) -> float:
    """Factor that turns values in ``units`` into ``target`` (a key of :data:`FACTORS`).

    Raises :class:`DataError` for a missing or unknown ``units``, naming the variable and file.
    """
    table = FACTORS[target]
    if units is None:
        if target == "1":
            return 1.0
        raise DataError(
            f"{source}: variable {variable!r} has no 'units' attribute, so its scale cannot be "
            f"known (expected one of {sorted(k for k in table if k)}). Set the attribute in the "
            f"file, or pass units={{{variable!r}: '<units>'}} to the reader."
        )
    key = " ".join(str(units).strip().lower().split())
    if key not in table:
        raise DataError(
            f"{source}: variable {variable!r} has units {units!r}, which kgcm does not know how to "
            f"convert to {target!r}. Accepted: {sorted(k for k in table if k)}. If the file's "
            f"attribute is wrong, pass units={{{variable!r}: '<units>'}} to the reader."
        )
    return table[key]


def to_canonical_units(
    da: xr.DataArray,
    target: str,
    *,
    variable: str,
    source: str,
    units: str | None = None,
) -> xr.DataArray:
    """``da`` scaled to ``target`` units (lazy for dask arrays).

    ``units`` overrides the variable's attribute."""
    given = units if units is not None else da.attrs.get("units")
    factor = conversion_factor(given, target, variable=variable, source=source)
    out = da if factor == 1.0 else da * factor
    out.attrs = {**da.attrs, "units": target}
    if factor != 1.0:
        out.attrs["kgcm_converted_from"] = str(given)
    return out
