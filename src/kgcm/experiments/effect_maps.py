"""Seasonal and regional effect maps: per-cell mean effect and interval over DJF, MAM, JJA and
SON, and the same means over the named Arctic seas (:mod:`kgcm.regions`).

``seasonal_region_maps(effects)`` reduces an effects dataset (``kgcm effect``'s ``effects.nc``:
``effect`` and optionally ``effect_lower``/``effect_upper`` on ``(time, y, x)`` with 2-D
``lat``/``lon``, or on ``(time,)`` for a series) to a CF dataset:

- ``effect_mean``, ``effect_lower_mean``, ``effect_upper_mean`` on ``(season, y, x)``: each
  cell's mean over the days of the season with an estimate (the interval ends over the same
  days), with ``n_days``;
- ``cell_region`` on ``(y, x)``: the sea of each cell (CF flags, -1 none) and ``land``: cells
  without any value of the factual outcome (the product's own land mask, NaN in the prepared store);
- ``region_effect``, ``region_lower``, ``region_upper`` on ``(season, region)``: the mean over
  every cell-day of the sea and season with an estimate (cells equally weighted, as in
  ``effects.json``), with ``region_n_cells``.

A series has no cells: it gets the seasonal means on ``(season,)`` and no region table, and the
dataset says why in its ``regions`` attribute. ``write_effect_maps`` writes the NetCDF, the
region table as CSV and the figures, atomically.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from kgcm._io import atomic_path, atomic_write_text
from kgcm.experiments.effect_summary import SEASONS, season_of
from kgcm.regions import REGIONS, assign_regions

__all__ = ["SERIES_NOTE", "region_table", "seasonal_region_maps", "write_effect_maps"]

Log = Callable[[str], None]

#: why a series gets no region table (also the ``regions`` attribute of its maps dataset)
SERIES_NOTE = (
    "regions skipped: the effects are a single series (no grid cells with lat/lon to place in "
    "a sea); the seasonal means are on (season,) only"
)
_NO_LATLON_NOTE = (
    "regions skipped: the grid has no 2-D lat/lon coordinates to place its cells in a sea; the "
    "maps are drawn in grid cells"
)
_INTERVAL = ("effect_lower", "effect_upper")


def _season_sums(
    season: np.ndarray, values: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per season: the sum of ``values`` where ``keep`` and how many. ``values`` (time, n)."""
    onehot = (season[None, :] == np.arange(len(SEASONS))[:, None]).astype(np.float64)
    return onehot @ np.where(keep, values, 0.0), onehot @ keep.astype(np.float64)


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1.0), np.nan)


def seasonal_region_maps(
    effects: xr.Dataset, *, outcome: str | None = None, units: str = ""
) -> xr.Dataset:
    """Seasonal per-cell means and the season × sea table of an effects dataset.

    Parameters
    ----------
    effects : ``effect`` (time, ...space) and optionally ``effect_lower``/``effect_upper`` of the
        same shape; space is ``(y, x)`` with 2-D ``lat``/``lon`` coordinates, or nothing (a
        series). ``outcome`` names the factual outcome variable whose all-NaN cells are land.
    outcome : the factual outcome variable (default ``effect.attrs["outcome"]``).
    units : the effect's units (default ``effect.attrs["units"]``).

    Returns
    -------
    xr.Dataset
        CF-1.8; see the module docstring for its variables.
    """
    effect = effects["effect"].transpose("time", ...)
    units = units or str(effect.attrs.get("units", ""))
    outcome = outcome or str(effect.attrs.get("outcome", ""))
    space = [str(d) for d in effect.dims if d != "time"]
    n_times = effect.sizes["time"]
    season = season_of(effects["time"].values)
    values = effect.values.reshape(n_times, -1).astype(np.float64)
    keep = np.isfinite(values)
    total, count = _season_sums(season, values, keep)
    space_shape = tuple(effect.sizes[d] for d in space)
    dims = ("season", *space)
    with_interval = all(k in effects for k in _INTERVAL)
    unit_attrs = {"units": units} if units else {}
    method = "time: mean (over the days of each meteorological season with an estimate)"

    def field(data: np.ndarray, long_name: str) -> xr.DataArray:
        return xr.DataArray(data.reshape(len(SEASONS), *space_shape), dims=dims,
                            attrs={"long_name": long_name, "cell_methods": method,
                                   **unit_attrs})  # fmt: skip

    out = {
        "effect_mean": field(_mean(total, count), "seasonal mean effect"),
        "n_days": field(count.astype(np.int32), "days of the season with an estimate"),
    }
    out["n_days"].attrs = {"long_name": "days of the season with an estimate", "units": "1"}
    region_sums: dict[str, tuple[np.ndarray, np.ndarray]] = {"effect": (total, count)}
    if with_interval:
        for name in _INTERVAL:
            end = effects[name].transpose("time", ...).values.reshape(n_times, -1)
            end_total, _ = _season_sums(season, end.astype(np.float64), keep)
            region_sums[name] = (end_total, count)
            side = "lower" if name.endswith("lower") else "upper"
            out[f"{name}_mean"] = field(
                _mean(end_total, count),
                f"seasonal mean of the daily {side} interval end (same days as effect_mean)",
            )
    coords: dict[str, object] = {
        "season": ("season", list(SEASONS), {"long_name": "meteorological season (DJF: Dec-Feb)"})
    }
    for d in space:
        coords[d] = effects[d]
    attrs = {
        "Conventions": "CF-1.8",
        "title": "kgcm seasonal and regional effect maps",
        "scenario": str(effects.attrs.get("scenario", "")),
        "estimator": str(effects.attrs.get("estimator", "")),
        "comment": (
            "interval ends are the means of the daily interval ends, not a calibrated interval "
            "of the mean"
        ),
    }
    has_latlon = bool(space) and all(
        c in effects.coords and effects[c].dims == tuple(space) for c in ("lat", "lon")
    )
    if has_latlon:
        for c in ("lat", "lon"):
            coords[c] = effects[c]
    maps = xr.Dataset(out, coords=coords, attrs=attrs)
    for name in maps.data_vars:
        if space and has_latlon:
            maps[name].attrs["coordinates"] = "lat lon"
    if space and outcome and outcome in effects:
        factual = effects[outcome].transpose("time", ...).values.reshape(n_times, -1)
        land = ~np.isfinite(factual).any(axis=0)
        maps["land"] = xr.DataArray(
            land.reshape(space_shape).astype(np.int8), dims=tuple(space),
            attrs={"long_name": f"no value of {outcome} on any day (land in the product's mask)",
                   "flag_values": np.array([0, 1], dtype=np.int8),
                   "flag_meanings": "data land_or_no_data"},
        )  # fmt: skip
    if not space:
        maps.attrs["regions"] = SERIES_NOTE
        return maps
    if not has_latlon:
        maps.attrs["regions"] = _NO_LATLON_NOTE
        return maps
    region = assign_regions(effects["lat"].values, effects["lon"].values)
    flat = region.ravel()
    member = (flat[:, None] == np.arange(len(REGIONS))[None, :]).astype(np.float64)  # (cells, R)
    maps["cell_region"] = xr.DataArray(
        region, dims=tuple(space),
        attrs={"long_name": "Arctic sea of the cell (approximate outlines, kgcm.regions)",
               "flag_values": np.arange(-1, len(REGIONS), dtype=np.int8),
               "flag_meanings": " ".join(["none", *(r.replace(" ", "_") for r in REGIONS)]),
               "coordinates": "lat lon"},
    )  # fmt: skip
    region_coord = {"region": ("region", list(REGIONS), {"standard_name": "region"})}
    table_method = "time: mean area: mean where region (cells equally weighted)"
    names = {"effect": "region_effect", "effect_lower": "region_lower",
             "effect_upper": "region_upper"}  # fmt: skip
    for key, (tot, cnt) in region_sums.items():
        long = {
            "effect": "mean effect over the sea's cell-days of the season",
            "effect_lower": "mean daily lower interval end over the same cell-days",
            "effect_upper": "mean daily upper interval end over the same cell-days",
        }[key]
        maps[names[key]] = xr.DataArray(
            _mean(tot @ member, cnt @ member), dims=("season", "region"), coords=region_coord,
            attrs={"long_name": long, "cell_methods": table_method, **unit_attrs},
        )  # fmt: skip
    with_estimate = keep.any(axis=0).astype(np.float64)
    maps["region_n_cells"] = xr.DataArray(
        (with_estimate @ member).astype(np.int32), dims=("region",), coords=region_coord,
        attrs={"long_name": "cells of the sea with at least one estimate", "units": "1"},
    )  # fmt: skip
    maps.attrs["regions"] = (
        "approximate outlines of the seas (kgcm/data/arctic_regions.csv, drawn from IHO S-23 "
        "limits; good to about a degree, not the official limits)"
    )
    return maps


def region_table(maps: xr.Dataset) -> pd.DataFrame:
    """The season × sea table as rows: season, region, n_cells, mean effect and interval ends
    (empty when the maps have no region table)."""
    if "region_effect" not in maps:
        return pd.DataFrame(columns=["season", "region", "n_cells", "mean_effect"])
    frame = maps["region_effect"].to_dataframe(name="mean_effect").reset_index()
    for var, col in (("region_lower", "mean_lower"), ("region_upper", "mean_upper")):
        if var in maps:
            frame[col] = maps[var].values.ravel()
    cells = dict(zip(REGIONS, maps["region_n_cells"].values.tolist(), strict=True))
    frame.insert(2, "n_cells", frame["region"].map(cells).astype(int))
    return frame[[c for c in frame.columns if c not in ("lat", "lon")]]


def write_effect_maps(
    effects: xr.Dataset,
    effects_path: str | os.PathLike[str],
    *,
    outcome: str,
    title: str,
    log: Log = print,
) -> xr.Dataset:
    """Write ``<stem>_maps.nc`` (CF), ``<stem>_regions.csv`` and the figures
    ``<stem>_seasons_map.png`` and ``<stem>_regions.png`` beside ``effects_path``.

    A series gets ``<stem>_maps.nc`` only (its seasonal figure is ``<stem>_seasons.png``), and
    the log says the region table was skipped and why. Returns the maps dataset.
    """
    from kgcm import plots

    path = Path(effects_path)
    stem = path.with_name(path.stem)
    units = str(effects["effect"].attrs.get("units", ""))
    maps = seasonal_region_maps(effects, outcome=outcome, units=units)
    encoding = {name: {"zlib": True, "complevel": 4} for name in maps.data_vars}
    with atomic_path(f"{stem}_maps.nc") as tmp:
        maps.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    if "y" not in effects["effect"].dims:
        log(f"{SERIES_NOTE}; wrote {stem}_maps.nc")
        return maps
    log(f"drawing the seasonal maps{' and the sea table' if 'region_effect' in maps else ''}")
    plots.seasonal_maps(maps, f"{stem}_seasons_map.png", units=units, title=title)
    if "region_effect" not in maps:
        log(f"{maps.attrs['regions']}; wrote {stem}_maps.nc")
        return maps
    table = region_table(maps)
    atomic_write_text(f"{stem}_regions.csv", table.to_csv(index=False, float_format="%.6g"))
    plots.region_effects(
        maps,
        f"{stem}_regions.png",
        units=units,
        title=f"mean effect by sea and season ({effects.attrs.get('scenario', '')})",
    )
    covered = [r for r, n in zip(REGIONS, maps["region_n_cells"].values, strict=True) if n > 0]
    log(
        f"seas with estimates: {', '.join(covered) if covered else 'none'}; wrote "
        f"{stem}_maps.nc and {stem}_regions.csv"
    )
    return maps
