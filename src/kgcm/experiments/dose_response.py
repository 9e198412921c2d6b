"""``kgcm dose-response``: the effect on the outcome as a function of the scenario's strength.

For a fitted run (``kgcm fit``) and strengths ``s`` (default 0.5, 0.75, 1, 1.25, 1.5, 2), the
scenario is ``T1 = s·T0`` for a ``scale`` run config and ``T1 = T0 + s·shift`` for a ``shift``
one. Each strength's effects come from :func:`kgcm.experiments.fit.scenario_effects` (the same
path as ``kgcm effect``: the estimator's coordinate, mapped back to the bounded outcome,
overlapping windows averaged past ``effect_burn_in``), then are reduced as the effect summary
does: the area mean per day (for a grid), averaged over every day (``all``) and per season
(DJF, MAM, JJA, SON), with the mean of the daily interval ends as the band.

Support: :func:`kgcm.check_overlap` runs once (weak identification stops the run unless
``allow_weak_overlap``); each strength's median ``|T1 − T0|`` in residual sd of ``T`` given
``X`` (``shift_sd``) is reported, and strengths beyond :data:`kgcm.overlap.SHIFT_SD_MAX` are
flagged ``outside_support`` (an extrapolation) rather than dropped.

On the ``arctic`` simulator (a store whose ``source`` attribute is ``kgcm.synthetic.arctic``),
the world is simulated again from the store's ``kgcm_config`` and the exact curve
(:func:`arctic_true_effects`, window-level interventions, reduced the same way over the same
days) is written and drawn beside the estimate.

Outputs in the run folder: ``dose_response.nc`` (dims ``strength`` × ``period``),
``dose_response.csv`` (the same numbers, one row per strength and period),
``dose_response.json`` and ``dose_response.png``.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kgcm._io import atomic_path, atomic_write_text
from kgcm._progress import progress_bar
from kgcm.errors import ConfigError, DataError
from kgcm.experiments.effect_summary import SEASONS, seasonal_means
from kgcm.sequences import SequenceSet
from kgcm.treatments import Scenario

__all__ = [
    "DEFAULT_STRENGTHS",
    "PERIODS",
    "arctic_true_effects",
    "curve_points",
    "run_dose_response",
    "scenario_at",
    "simulation_of_store",
]

Log = Callable[[str], None]

DEFAULT_STRENGTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
PERIODS = ("all", *SEASONS)


def parse_strengths(text: str) -> tuple[float, ...]:
    """``"0.5,1,2"`` → ``(0.5, 1.0, 2.0)``, with a clear error otherwise."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise ConfigError(f"--scales needs comma-separated numbers, e.g. 0.5,1,2; got {text!r}.")
    return values


def scenario_at(base: Scenario, strength: float) -> Scenario:
    """The run's scenario at strength ``s``: ``T1 = s·T0`` for a ``scale`` scenario,
    ``T1 = T0 + s·shift`` for a ``shift`` one (:meth:`Scenario.at`)."""
    return base.at(strength)


def curve_points(
    time: np.ndarray,
    effect: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, dict[str, float | int | None]]:
    """One strength's points: the mean over every finite day (``all``) and per season.

    Parameters
    ----------
    time : (n_times,) datetime64
    effect, lower, upper : (n_times, ...space) effects on the outcome; a grid is reduced to its
        area mean per day first (NaN where no cell has an estimate).
    """

    def area(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        a = np.asarray(a, dtype=np.float64).reshape(len(time), -1)
        finite = np.isfinite(a)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                finite.any(axis=1), np.nansum(a, axis=1) / np.maximum(finite.sum(axis=1), 1), np.nan
            )

    e, lo, hi = area(effect), area(lower), area(upper)
    assert e is not None
    days = np.isfinite(e)
    whole: dict[str, float | int | None] = {
        "n_days": int(days.sum()),
        "mean_effect": float(e[days].mean()) if days.any() else None,
    }
    if lo is not None and hi is not None:
        whole["mean_lower"] = float(lo[days].mean()) if days.any() else None
        whole["mean_upper"] = float(hi[days].mean()) if days.any() else None
    return {"all": whole, **seasonal_means(time, e, lo, hi)}


def arctic_true_effects(
    sim: Any, seqs: SequenceSet, t1: np.ndarray, min_position: int
) -> np.ndarray:
    """Exact effects of ``T0 → T1`` on the grid (time, y, x) for a simulated ``arctic`` world.

    Each unit's window gets the intervention (history before it stays factual:
    :meth:`ArcticSimulation.window_effects`); steps covered by several windows average those
    at a position ``>= min_position``, as the estimate does.

    Parameters
    ----------
    sim : ArcticSimulation
    seqs : the run's sequences (cells, starts) on the simulated grid.
    t1 : (n_units, window) scenario path.
    min_position : the run's effect burn-in (0 without overlapping windows).
    """
    truth = sim.window_effects(np.asarray(t1, np.float64), seqs.cells, seqs.starts, seqs.window)
    return seqs.to_grid(truth, "true_effect", combine="mean", min_position=min_position).values


def simulation_of_store(store: xr.Dataset) -> Any | None:
    """The ``arctic`` world a store was written from, simulated again; None for other data.

    Raises :class:`DataError` when the store says it is simulated but its treatment differs
    from the one simulated again (e.g. it was cut, edited or regridded): no truth is then
    known (``run_dose_response`` then says so in its log and draws no true curve).
    """
    from kgcm.synthetic.arctic import ArcticConfig, simulate_arctic

    if store.attrs.get("source") != "kgcm.synthetic.arctic" or "kgcm_config" not in store.attrs:
        return None
    sim = simulate_arctic(ArcticConfig(**ast.literal_eval(store.attrs["kgcm_config"])))
    simulated = sim.dataset["treatment"].values
    stored = np.asarray(store["treatment"].values, dtype=np.float64)
    if stored.shape != simulated.shape or not np.allclose(stored, simulated, equal_nan=True):
        raise DataError(
            "the store says it was written by kgcm.synthetic.arctic, but its treatment differs "
            "from the world simulated again from its kgcm_config; the true curve is unknown. "
            "Fit on the simulator's whole output to draw the truth."
        )
    return sim


def run_dose_response(
    run_dir: str | os.PathLike[str],
    *,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    units: str = "all",
    alpha: float | None = None,
    log: Log = print,
    allow_weak_overlap: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Compute, write and draw the dose-response curve of a fitted run (module docstring).

    ``progress``: a progress bar over the strengths (in a terminal); each is the effects of
    every unit. Returns the summary written to ``dose_response.json``.
    """
    from kgcm.experiments.fit import load_run, scenario_effects, scenario_path
    from kgcm.overlap import SHIFT_SD_MAX, require_overlap, shift_in_sd
    from kgcm.prepare import open_prepared

    strengths = tuple(float(s) for s in strengths)
    if not strengths or len(set(strengths)) != len(strengths):
        raise ConfigError(f"strengths must be distinct numbers; got {list(strengths)}.")
    loaded = load_run(run_dir, log=log)
    config, prep = loaded.config, loaded.prep
    alpha = config.alpha if alpha is None else alpha
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05 for 95% intervals; got {alpha!r}.")
    seqs, _ = loaded.units(units)
    base = config.scenario
    overlap = require_overlap(
        seqs.T, seqs.X, allow_weak=allow_weak_overlap, log=log, seed=config.seed
    )
    try:
        sim = simulation_of_store(open_prepared(config.data))
    except DataError as exc:  # a store cut or edited from a simulated world: no truth known
        log(f"note: no true curve: {exc}")
        sim = None
    overlapping = 0 < config.stride < config.window
    burn_in = config.burn_in if overlapping else 0
    time = seqs.template["time"].values
    rows: list[dict[str, Any]] = []
    descriptions = []
    shift_sds = []
    with progress_bar(progress, "scenario strengths", len(strengths)) as advance:
        for s in strengths:
            scenario = base.at(s)
            t1, describe = scenario_path(seqs.T, scenario)
            descriptions.append(describe)
            shift_sds.append(shift_in_sd(seqs.T, t1, overlap["residual_sd"]))
            log(f"dose-response: {describe}")
            combined = scenario_effects(loaded.estimator, config, prep, seqs, t1, alpha)
            points = curve_points(
                time, combined["effect"], combined.get("effect_lower"), combined.get("effect_upper")
            )
            truth = None
            if sim is not None:
                exact = arctic_true_effects(sim, seqs, t1, burn_in)
                exact = np.where(np.isfinite(combined["effect"]), exact, np.nan)  # the same days
                truth = curve_points(time, exact)
            for period in PERIODS:
                entry = points[period]
                rows.append({
                    "strength": s,
                    "period": period,
                    "effect": entry["mean_effect"],
                    "effect_lower": entry.get("mean_lower"),
                    "effect_upper": entry.get("mean_upper"),
                    "true_effect": None if truth is None else truth[period]["mean_effect"],
                    "n_days": entry["n_days"],
                })  # fmt: skip
            advance()
    frame = pd.DataFrame(rows)
    for column in ("effect", "effect_lower", "effect_upper", "true_effect"):
        frame[column] = pd.to_numeric(frame[column])
    outside = [sd is not None and sd > SHIFT_SD_MAX for sd in shift_sds]
    run = loaded.run_dir
    ds = _dataset(frame, strengths, descriptions, shift_sds, outside, config, prep.units, alpha)
    with atomic_path(run / "dose_response.nc") as tmp:
        ds.to_netcdf(tmp)
    csv = frame.assign(
        scenario=[descriptions[strengths.index(s)] for s in frame["strength"]],
        shift_sd=[shift_sds[strengths.index(s)] for s in frame["strength"]],
        outside_support=[outside[strengths.index(s)] for s in frame["strength"]],
    )
    if sim is None:
        csv = csv.drop(columns="true_effect")
    atomic_write_text(run / "dose_response.csv", csv.to_csv(index=False, float_format="%.6g"))
    from kgcm import plots

    space = seqs.template.ndim > 1
    plots.dose_response(
        ds, run / "dose_response.png", units=prep.units, outcome=config.outcome,
        title=f"effect on {config.outcome}{' (area mean)' if space else ''} by scenario strength "
        f"({'T1 = s x T0' if base.kind == 'scale' else f'T1 = T0 + s x {base.value:g}'})",
    )  # fmt: skip
    summary = {
        "run": str(run),
        "strengths": list(strengths),
        "scenarios": descriptions,
        "units": units,
        "outcome": config.outcome,
        "outcome_units": prep.units,
        "interval_level": 1 - alpha if loaded.estimator.gives_intervals() else None,
        "truth": "arctic simulator (exact window-level effects)" if sim is not None else None,
        "shift_sd": shift_sds,
        "outside_support": [s for s, o in zip(strengths, outside, strict=True) if o],
        "overlap": overlap,
        "curve": json.loads(frame.to_json(orient="records")),
        "files": [str(run / f"dose_response.{ext}") for ext in ("nc", "csv", "png")],
    }
    atomic_write_text(run / "dose_response.json", json.dumps(summary, indent=2) + "\n")
    if summary["outside_support"]:
        log(
            f"warning: strengths {summary['outside_support']} move the treatment by more than "
            f"{SHIFT_SD_MAX:g} residual sd of T given X: those points are extrapolations."
        )
    log(f"wrote {run / 'dose_response.nc'}, .csv, .json and .png")
    return summary


def _dataset(
    frame: pd.DataFrame,
    strengths: tuple[float, ...],
    descriptions: list[str],
    shift_sds: list[float | None],
    outside: list[bool],
    config: Any,
    units: str,
    alpha: float,
) -> xr.Dataset:
    def field(column: str) -> np.ndarray:
        table = frame.pivot(index="strength", columns="period", values=column)
        return table.reindex(index=list(strengths), columns=list(PERIODS)).to_numpy(np.float64)

    dims = ("strength", "period")
    attrs = {"units": units} if units else {}
    level = f"{1 - alpha:.0%}"
    data = {
        "effect": (dims, field("effect"),
                   {**attrs, "long_name": f"mean effect on {config.outcome}"}),
        "n_days": (dims, field("n_days"), {"long_name": "days averaged"}),
        "scenario": ("strength", np.array(descriptions, dtype=object)),
        "shift_sd": (
            "strength",
            np.array([np.nan if v is None else v for v in shift_sds]),
            {"long_name": "median |T1 - T0| in residual sd of T given X"},
        ),
        "outside_support": (
            "strength",
            np.array(outside, dtype=np.int8),
            {"long_name": "scenario beyond the overlap check's shift limit (extrapolation)",
             "flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": "inside outside"},
        ),
    }  # fmt: skip
    if frame["effect_lower"].notna().any():
        for end in ("lower", "upper"):
            text = f"mean of the daily {end} ends of the {level} interval"
            data[f"effect_{end}"] = (dims, field(f"effect_{end}"), {**attrs, "long_name": text})
    if frame["true_effect"].notna().any():
        data["true_effect"] = (dims, field("true_effect"), {**attrs, "long_name":
                               "exact mean effect (arctic simulator), same days"})  # fmt: skip
    ds = xr.Dataset(
        data,
        coords={
            "strength": (
                "strength",
                np.array(strengths),
                {"long_name": "scenario strength s", "units": "1"},
            ),
            "period": ("period", np.array(PERIODS, dtype=object)),
        },
        attrs={
            "title": "kgcm dose-response",
            "estimator": config.estimator.name,
            "Conventions": "CF-1.8",
        },
    )
    return ds
