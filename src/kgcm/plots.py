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

__all__ = ["effect_map", "effect_timeseries"]


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
