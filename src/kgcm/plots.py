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


def seasonal_maps(
    effect: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    units: str = "",
    title: str = "seasonal mean effect",
) -> Path:
    """Per-cell mean effect over DJF, MAM, JJA and SON on (y, x)."""
    from kgcm.experiments.effect_summary import SEASONS, season_of

    season = season_of(effect["time"].values)
    fields = [effect.isel(time=np.flatnonzero(season == k)).mean("time") for k in range(4)]
    finite = np.concatenate([np.ravel(f.values) for f in fields])
    finite = finite[np.isfinite(finite)]
    lim = float(np.abs(finite).max()) if finite.size else 1.0
    fig = Figure(figsize=(13.0, 3.6), layout="constrained")
    for k, (name, field) in enumerate(zip(SEASONS, fields, strict=True)):
        ax = fig.add_subplot(1, 4, k + 1)
        mesh = ax.pcolormesh(field.values, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto")
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(mesh, ax=fig.axes, shrink=0.8, label=_label("effect", units))
    fig.suptitle(title)
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
