"""Figures, drawn with matplotlib's object API (no pyplot state, no network, no basemaps).

Each function takes plain arrays or DataArrays and writes one PNG atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kgcm._io import atomic_path

__all__ = [
    "dose_response",
    "effect_climatology",
    "effect_map",
    "effect_timeseries",
    "reference_fit",
    "region_effects",
    "seasonal_effects",
    "seasonal_maps",
]


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return Path(path)


def effect_map(
    estimated: xr.DataArray,
    truth: xr.DataArray | None,
    path: str | os.PathLike[str],
    *,
    heldout: xr.DataArray | None = None,
    title: str = "mean effect on sea-ice thickness",
    units: str = "m",
) -> Path:
    """Map of the time-mean effect on (y, x), with the true effect beside it when known.

    ``heldout`` (y, x) booleans outline the cells that were held out of training.
    """
    panels = [("estimated", estimated.mean("time"))]
    if truth is not None:
        panels.append(("true", truth.mean("time")))
        panels.append(("estimated − true", (estimated - truth).mean("time")))
    fig = Figure(figsize=(4.2 * len(panels), 4.0), layout="constrained")
    vals = np.concatenate([np.ravel(p.values) for _, p in panels[:2]])
    vmax = float(np.nanmax(np.abs(vals))) or 1.0
    for i, (label, field) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        lim = vmax if i < 2 else float(np.nanmax(np.abs(field.values))) or 1.0
        mesh = ax.pcolormesh(field.values, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto")
        if heldout is not None:
            iy, ix = np.nonzero(heldout.values)
            ax.plot(ix + 0.5, iy + 0.5, "k.", markersize=2.5)
        ax.set_title(label)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(mesh, ax=ax, shrink=0.8, label=units)
    fig.suptitle(title + (" (dots: held-out cells)" if heldout is not None else ""))
    return _save(fig, path)


def effect_timeseries(
    time: np.ndarray,
    factual: np.ndarray,
    counterfactual: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    path: str | os.PathLike[str],
    *,
    true_counterfactual: np.ndarray | None = None,
    title: str = "sea-ice thickness at a held-out cell",
    units: str = "m",
    interval_label: str = "95% interval",
    ylabel: str = "SIT",
) -> Path:
    """Factual vs estimated counterfactual SIT over time (top) and the effect itself with its
    interval and, when known, the truth (bottom). ``lower``/``upper`` bound the counterfactual.
    """
    fig = Figure(figsize=(9.0, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    top.plot(time, factual, color="0.2", lw=1.2, label="factual (observed)")
    top.plot(time, counterfactual, color="tab:blue", lw=1.2, label="counterfactual (estimated)")
    if true_counterfactual is not None:
        top.plot(time, true_counterfactual, color="tab:red", lw=1.0, ls="--",
                 label="counterfactual (true)")  # fmt: skip
    top.set_ylabel(f"{ylabel} ({units})" if units else ylabel)
    top.set_title(title)
    top.legend(loc="best", fontsize=8)
    bottom.axhline(0.0, color="0.6", lw=0.8)
    bottom.fill_between(time, lower - factual, upper - factual, color="tab:blue", alpha=0.25,
                        lw=0, label=interval_label)  # fmt: skip
    bottom.plot(
        time, counterfactual - factual, color="tab:blue", lw=1.0, label="effect (estimated)"
    )
    if true_counterfactual is not None:
        bottom.plot(time, true_counterfactual - factual, color="tab:red", lw=1.0, ls="--",
                    label="effect (true)")  # fmt: skip
    bottom.set_ylabel(f"effect ({units})" if units else "effect")
    bottom.legend(loc="best", fontsize=8)
    return _save(fig, path)


def _label(name: str, units: str) -> str:
    return f"{name} ({units})" if units else name


def reference_fit(
    time: np.ndarray,
    observed: np.ndarray,
    forecasts: dict[str, np.ndarray],
    rmses: dict[str, float],
    path: str | os.PathLike[str],
    *,
    ylabel: str = "outcome",
    units: str = "",
) -> Path:
    """The held-out factual fit beside the references: RMSE per forecast (left) and the
    latest held-out year day by day (right). The first forecast is the estimator's."""
    import pandas as pd

    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    bars, days = fig.subplots(1, 2, width_ratios=[1, 2.4])
    names = list(rmses)
    colours = ["tab:blue", "tab:green", "tab:olive", "tab:orange", "tab:purple", "tab:brown"]
    bars.barh(names[::-1], [rmses[n] for n in names[::-1]],
              color=[colours[i % len(colours)] for i in range(len(names))][::-1])  # fmt: skip
    bars.set_xlabel(_label("held-out RMSE", units))
    bars.set_title("factual fit on the held-out units")
    finite = np.isfinite(observed)
    years = pd.DatetimeIndex(time).year.to_numpy()
    year = int(pd.Series(finite).groupby(years).sum().idxmax()) if finite.any() else years[-1]
    full = pd.Series(finite).groupby(years).sum()
    if (full >= 330).any():
        year = int(full[full >= 330].index.max())
    sel = years == year
    days.plot(time[sel], observed[sel], color="black", lw=1.6, label="observed")
    for i, name in enumerate(names):
        if name in forecasts:
            style = {"lw": 1.4, "ls": "-"} if i == 0 else {"lw": 0.9, "ls": "--"}
            days.plot(time[sel], forecasts[name][sel], color=colours[i % len(colours)],
                      label=name, **style)  # fmt: skip
    days.set_ylabel(_label(ylabel, units))
    days.set_title(f"held-out year {year}, day by day (overlapping windows averaged)")
    days.legend(fontsize=7, ncols=2)
    return _save(fig, path)


def effect_climatology(
    time: np.ndarray,
    effect: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    path: str | os.PathLike[str],
    *,
    units: str = "",
    title: str = "effect by day of year",
) -> Path:
    """The effect as a climatology: by day of year, the median across years and the band
    between the 10th and 90th percentiles across years; the median interval ends dashed."""
    import pandas as pd

    frame = pd.DataFrame({"effect": effect}, index=pd.DatetimeIndex(time))
    if lower is not None and upper is not None:
        frame["lower"], frame["upper"] = lower, upper
    by_doy = frame.groupby(frame.index.day_of_year)
    q = by_doy["effect"].quantile([0.1, 0.5, 0.9]).unstack()
    fig = Figure(figsize=(9.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.fill_between(q.index, q[0.1], q[0.9], color="tab:blue", alpha=0.25, lw=0,
                    label="10-90% across years")  # fmt: skip
    ax.plot(q.index, q[0.5], color="tab:blue", lw=1.5, label="median across years")
    if "lower" in frame:
        ax.plot(q.index, by_doy["lower"].median(), color="tab:blue", lw=0.8, ls="--",
                label="median interval ends")  # fmt: skip
        ax.plot(q.index, by_doy["upper"].median(), color="tab:blue", lw=0.8, ls="--")
    ax.set_xlabel("day of year")
    ax.set_ylabel(_label("effect", units))
    ax.set_xlim(1, 366)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def seasonal_effects(
    time: np.ndarray,
    effect: np.ndarray,
    seasons: dict[str, dict],
    path: str | os.PathLike[str],
    *,
    units: str = "",
    title: str = "effect by season",
) -> Path:
    """Seasonal mean effect with its interval (bars), and each year's seasonal mean (dots)."""
    import pandas as pd

    from kgcm.experiments.effect_summary import SEASONS, season_of

    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.6", lw=0.8)
    index = pd.DatetimeIndex(time)
    # December belongs to the next year's DJF
    season_year = index.year.to_numpy() + (index.month.to_numpy() == 12)
    frame = pd.DataFrame({"effect": effect, "season": season_of(time), "year": season_year})
    per_year = frame.dropna().groupby(["season", "year"])["effect"].mean()
    for k, name in enumerate(SEASONS):
        entry = seasons.get(name, {})
        if entry.get("mean_effect") is None:
            continue
        if k in per_year.index.get_level_values(0):
            values = per_year.loc[k].to_numpy()
            jitter = np.linspace(-0.15, 0.15, len(values))
            ax.plot(k + jitter, values, ".", color="0.55", markersize=3)
        mean = entry["mean_effect"]
        if entry.get("mean_lower") is not None:
            err = [[mean - entry["mean_lower"]], [entry["mean_upper"] - mean]]
            ax.errorbar(k, mean, yerr=err, fmt="o", color="tab:blue", capsize=6, lw=1.6)
        else:
            ax.plot(k, mean, "o", color="tab:blue")
    ax.set_xticks(range(len(SEASONS)), SEASONS)
    ax.set_ylabel(_label("mean effect", units))
    note = "blue: mean with the mean interval; grey: each year's mean, earliest to latest"
    ax.set_title(f"{title}\n({note})")
    return _save(fig, path)


def _polar_axes_decor(ax, x: np.ndarray, y: np.ndarray, *, regions: bool) -> None:  # type: ignore[no-untyped-def]
    """Graticule (every 10° of latitude from 60°N, every 45° of longitude) and, with
    ``regions``, the outlines of the seas, on axes in :data:`kgcm.regions.MAP_CRS` metres."""
    from kgcm.regions import load_regions, project

    pad = 0.06 * max(np.nanmax(x) - np.nanmin(x), np.nanmax(y) - np.nanmin(y), 1.0)
    xlim = (np.nanmin(x) - pad, np.nanmax(x) + pad)
    ylim = (np.nanmin(y) - pad, np.nanmax(y) + pad)
    lons = np.linspace(-180.0, 180.0, 361)
    for lat in (60.0, 70.0, 80.0):
        ax.plot(*project(lons, np.full_like(lons, lat)), color="0.55", lw=0.4, ls=":")
    lats = np.linspace(60.0, 90.0, 31)
    for lon in np.arange(-180.0, 180.0, 45.0):
        ax.plot(*project(np.full_like(lats, lon), lats), color="0.55", lw=0.4, ls=":")
    if regions:
        for region in load_regions():
            ax.plot(region.x, region.y, color="k", lw=0.7)
            cx, cy = float(np.mean(region.x)), float(np.mean(region.y))
            if xlim[0] < cx < xlim[1] and ylim[0] < cy < ylim[1]:
                ax.text(cx, cy, region.name, fontsize=6, ha="center", va="center",
                        color="k", alpha=0.8)  # fmt: skip
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)


def _corners(centres: np.ndarray) -> np.ndarray:
    """Cell corners (ny + 1, nx + 1) of a grid of cell centres (ny, nx)."""
    ext = np.pad(centres, 1, mode="reflect", reflect_type="odd")
    return (ext[:-1, :-1] + ext[1:, :-1] + ext[:-1, 1:] + ext[1:, 1:]) / 4.0


def seasonal_maps(
    maps: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    units: str = "",
    title: str = "seasonal mean effect",
) -> Path:
    """Per-cell mean effect over DJF, MAM, JJA and SON (top row) and, when the maps have
    interval ends, the mean interval width (bottom row).

    ``maps``: :func:`kgcm.experiments.effect_maps.seasonal_region_maps` of a grid. With 2-D
    ``lat``/``lon`` the maps are drawn in the north polar stereographic projection
    (:data:`kgcm.regions.MAP_CRS`, computed by pyproj) with a graticule, the outlines of the seas
    when the maps have ``cell_region``, and land (``land``: cells the product never has a value for)
    in grey; without ``lat``/``lon`` they are drawn in grid cells.
    """
    from kgcm.experiments.effect_summary import SEASONS

    rows = [("mean effect", maps["effect_mean"], "RdBu_r", True)]
    if "effect_lower_mean" in maps:
        width = maps["effect_upper_mean"] - maps["effect_lower_mean"]
        rows.append(("mean interval width", width, "viridis", False))
    polar = "lat" in maps.coords and maps["lat"].ndim == 2
    if polar:
        from kgcm.regions import project

        x, y = project(maps["lon"].values, maps["lat"].values)
    else:
        y, x = np.meshgrid(np.arange(maps.sizes["y"]), np.arange(maps.sizes["x"]), indexing="ij")
    # explicit cell corners (midpoints, extrapolated linearly at the edges): projected centres
    # of a curvilinear grid need not be monotonic along an axis
    x, y = _corners(np.asarray(x, dtype=np.float64)), _corners(np.asarray(y, dtype=np.float64))
    land = maps["land"].values.astype(bool) if "land" in maps else None
    fig = Figure(figsize=(13.0, 3.6 * len(rows)), layout="constrained")
    for r, (label, data, cmap, centred) in enumerate(rows):
        values = data.values
        finite = values[np.isfinite(values)]
        if centred:
            lim = float(np.abs(finite).max()) if finite.size else 1.0
            vmin, vmax = -(lim or 1.0), lim or 1.0
        else:
            vmin = float(finite.min()) if finite.size else 0.0
            vmax = float(finite.max()) if finite.size else 1.0
        axes = []
        for k, name in enumerate(SEASONS):
            ax = fig.add_subplot(len(rows), 4, r * 4 + k + 1)
            axes.append(ax)
            if land is not None and land.any():
                ax.pcolormesh(x, y, np.where(land, 1.0, np.nan), cmap="Greys", vmin=0.0,
                              vmax=2.5, shading="flat")  # fmt: skip
            mesh = ax.pcolormesh(x, y, values[k], cmap=cmap, vmin=vmin, vmax=vmax,
                                 shading="flat")  # fmt: skip
            if polar:
                _polar_axes_decor(ax, x, y, regions="cell_region" in maps)
            empty = "" if np.isfinite(values[k]).any() else " (no estimate)"
            ax.set_title(f"{name}: {label}{empty}", fontsize=9)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(mesh, ax=axes, shrink=0.8, label=_label(label, units))
    where = "north polar stereographic (EPSG:3413)" if polar else "grid cells (no lat/lon)"
    grey = "; grey: land / no data in the product" if land is not None and land.any() else ""
    fig.suptitle(f"{title}\n{where}{grey}", fontsize=10)
    return _save(fig, path)


def region_effects(
    maps: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    units: str = "",
    title: str = "mean effect by sea and season",
) -> Path:
    """The season × sea table: per sea with estimates, each season's mean effect with the mean
    interval ends as bars."""
    from kgcm.experiments.effect_summary import SEASONS

    cells = maps["region_n_cells"].values
    names = [str(r) for r, n in zip(maps["region"].values, cells, strict=True) if n > 0]
    fig = Figure(figsize=(max(5.0, 1.4 * len(names) + 2.0), 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.6", lw=0.8)
    colours = ["tab:blue", "tab:green", "tab:red", "tab:orange"]
    for k, season in enumerate(SEASONS):
        pos = np.arange(len(names)) + (k - 1.5) * 0.18
        mean = maps["region_effect"].sel(season=season, region=names).values
        if "region_lower" in maps:
            lo = maps["region_lower"].sel(season=season, region=names).values
            hi = maps["region_upper"].sel(season=season, region=names).values
            ax.errorbar(pos, mean, yerr=[mean - lo, hi - mean], fmt="o", color=colours[k],
                        capsize=3, label=season)  # fmt: skip
        else:
            ax.plot(pos, mean, "o", color=colours[k], label=season)
    ax.set_xticks(
        range(len(names)),
        [f"{n}\n({int(c)} cells)" for n, c in zip(names, cells[cells > 0], strict=True)],
        fontsize=8,
    )
    ax.set_ylabel(_label("mean effect", units))
    ax.legend(fontsize=8, ncols=4)
    ax.set_title(f"{title}\n(bars: mean of the daily interval ends)", fontsize=10)
    return _save(fig, path)


def dose_response(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    units: str = "",
    outcome: str = "outcome",
    title: str = "effect by scenario strength",
) -> Path:
    """The dose-response curve per period (``all`` and each season): the estimate with its
    band, the exact curve (dashed) when ``ds`` has ``true_effect``, hollow markers where the
    scenario lies outside the observed support.

    ``ds``: ``effect`` (strength, period), optional ``effect_lower``/``effect_upper``,
    ``true_effect`` and ``outside_support`` (strength).
    """
    periods = [str(p) for p in ds["period"].values]
    strength = ds["strength"].values
    fig = Figure(figsize=(3.0 * len(periods), 3.4), layout="constrained")
    axes = fig.subplots(1, len(periods), sharey=True)
    outside = (
        ds["outside_support"].values.astype(bool)
        if "outside_support" in ds
        else np.zeros(len(strength), dtype=bool)
    )
    for ax, period in zip(np.atleast_1d(axes), periods, strict=True):
        sel = ds.sel(period=period)
        ax.axhline(0.0, color="0.6", lw=0.8)
        if "effect_lower" in ds:
            band = (sel["effect_lower"].values, sel["effect_upper"].values)
            ax.fill_between(strength, *band, color="tab:blue", alpha=0.25, lw=0, label="interval")
        effect = sel["effect"].values
        ax.plot(strength, effect, "-", color="tab:blue", label="estimated")
        ax.plot(strength[~outside], effect[~outside], "o", color="tab:blue")
        if outside.any():
            ax.plot(strength[outside], effect[outside], "o", mfc="white", color="tab:blue",
                    label="outside support")  # fmt: skip
        if "true_effect" in ds:
            ax.plot(strength, sel["true_effect"].values, "--", color="k", label="true")
        ax.set_title(period)
        ax.set_xlabel("strength s")
    first = np.atleast_1d(axes)[0]
    first.set_ylabel(_label(f"mean effect on {outcome}", units))
    first.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return _save(fig, path)
