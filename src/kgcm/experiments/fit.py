"""``kgcm fit`` and ``kgcm effect`` on a prepared store (``kgcm prepare``).

``run_fit(config, out_dir)``: open the store, cut unit sequences (cell × window; a series is one
cell), drop incomplete units (land, gaps) and say how many, split (by cell, by window, or by
time), fit the estimator, score factual RMSE on the held-out units, and write ``model.kgcm``,
``config.toml`` (resolved, seeds included), ``split.npz``, ``metrics.json`` and ``run.json``.

``run_effect(run_dir, ...)``: reload that run (model, config, the same sequences), apply a
treatment scenario (``T1 = scale·T0`` or ``T0 + shift``), and write ``effects.nc`` (CF NetCDF on
the store's own dims: effect with its interval, factual outcome, estimated counterfactual
outcome, both treatment paths, held-out flag), ``effects.json`` (summary) and figures.
There is no ground truth on real data; the held-out factual RMSE and the interval width are
what can be checked.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kgcm._io import atomic_path, atomic_write_bytes, atomic_write_text
from kgcm.config import EstimatorConfig, ScenarioConfig, dump_toml, from_dict, read_mapping
from kgcm.errors import ConfigError, DataError
from kgcm.sequences import SequenceSet, split_units, to_sequences

__all__ = ["FitConfig", "run_effect", "run_fit"]

Log = Callable[[str], None]


def _library_defaults() -> EstimatorConfig:
    return EstimatorConfig(name="kgcm-vae", params={})


@dataclass(frozen=True)
class FitConfig:
    """What ``kgcm fit`` learns from a prepared store.

    Attributes
    ----------
    data : path of the Zarr store written by ``kgcm prepare`` (relative to the config file).
    outcome, treatment : variable names in the store.
    covariates : time-varying covariates (the treatment must not be among them).
    static : covariates without time (e.g. ``lat``); empty for a series.
    calendar : add the day of year (sin, cos) as covariates.
    window, stride : steps per unit and between unit starts (stride 0: ``window``).
    split : ``"cell"`` (hold out whole cells), ``"unit"`` (windows at random) or ``"time"``
        (the latest windows).
    test_fraction : share held out.
    seed : seeds the split and the estimator.
    estimator : name and parameters (library defaults unless set).
    scenario : the default treatment scenario of ``kgcm effect``.
    alpha : interval level ``1 − alpha``.
    """

    data: str = "data/prepared.zarr"
    outcome: str = "sithick"
    treatment: str = "treatment"
    covariates: tuple[str, ...] = ("zos", "uo", "vo")
    static: tuple[str, ...] = ("lat",)
    calendar: bool = True
    window: int = 30
    stride: int = 0
    split: str = "cell"
    test_fraction: float = 0.2
    seed: int = 0
    estimator: EstimatorConfig = field(default_factory=_library_defaults)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.split not in ("cell", "unit", "time"):
            raise ConfigError(f"split must be 'cell', 'unit' or 'time'; got {self.split!r}.")
        if not isinstance(self.window, int) or self.window < 2:
            raise ConfigError(f"window must be an integer >= 2; got {self.window!r}.")
        if self.stride < 0:
            raise ConfigError(f"stride must be >= 0 (0: equal to window); got {self.stride!r}.")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be in (0, 1); got {self.test_fraction!r}.")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1); got {self.alpha!r}.")


@dataclass(frozen=True)
class FitResult:
    out_dir: Path
    metrics: dict[str, Any]


def _data_path(config: FitConfig, base: Path | None) -> Path:
    p = Path(config.data).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p


def _sequences(config: FitConfig, base: Path | None, log: Log) -> tuple[SequenceSet, int, str]:
    from kgcm.prepare import open_prepared

    ds = open_prepared(_data_path(config, base))
    series = "y" not in ds.dims
    static = () if series else config.static
    if series and config.static:
        log(f"note: the store is a series; static covariates {list(config.static)} are ignored")
    if series and config.split == "cell":
        raise ConfigError(
            "the store is a single series (no cells); use split = 'time' (the latest windows "
            "held out) or split = 'unit'."
        )
    needed = [config.outcome, config.treatment, *config.covariates]
    ds = ds[[v for v in dict.fromkeys(needed) if v in ds.data_vars]]
    n_all = _count_units(ds, config)
    seqs = to_sequences(
        ds.load(),
        outcome=config.outcome,
        treatment=config.treatment,
        covariates=config.covariates,
        static=static,
        calendar=config.calendar,
        window=config.window,
        stride=config.stride or None,
        drop_incomplete=True,
    )
    return seqs, n_all, str(ds[config.outcome].attrs.get("units", ""))


def _count_units(ds: xr.Dataset, config: FitConfig) -> int:
    nt = ds.sizes["time"]
    stride = config.stride or config.window
    n_windows = max(0, (nt - config.window) // stride + 1)
    return n_windows * ds.sizes.get("y", 1) * ds.sizes.get("x", 1)


def run_fit(
    config: FitConfig,
    out_dir: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    log: Log = print,
    allow_weak_overlap: bool = False,
) -> FitResult:
    """Fit the configured estimator on the prepared store and write the run folder.

    Weak overlap (:func:`kgcm.check_overlap` on the sequences) stops the run with
    :class:`~kgcm.errors.WeakOverlapError` unless ``allow_weak_overlap``; the report is
    written into ``metrics.json`` as ``overlap``.
    """
    from kgcm.estimators import make_estimator
    from kgcm.overlap import require_overlap

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(base_dir) if base_dir is not None else None
    started = time.perf_counter()
    seqs, n_all, _ = _sequences(config, base, log)
    if seqs.n_units < n_all:
        log(
            f"dropped {n_all - seqs.n_units:,} of {n_all:,} units holding NaN (land, gaps, "
            f"fill); {seqs.n_units:,} remain"
        )
    overlap = require_overlap(
        seqs.T, seqs.X, allow_weak=allow_weak_overlap, log=log, seed=config.seed
    )
    train_idx, test_idx = split_units(
        seqs, test_fraction=config.test_fraction, seed=config.seed, by=config.split
    )
    train, test = seqs.subset(train_idx), seqs.subset(test_idx)
    est = make_estimator(config.estimator.name, seed=config.seed, **config.estimator.params)
    log(
        f"fitting {config.estimator.name} on {train.n_units:,} sequences of {seqs.window} steps "
        f"({len(seqs.feature_names)} covariates: {', '.join(seqs.feature_names)}); "
        f"{test.n_units:,} held out by {config.split}"
    )
    est.fit(train.Y, train.T, X=train.X_xarray())
    fit_s = time.perf_counter() - started
    pred = est.predict(test.X, test.T)
    scale = float(np.std(test.Y)) or 1.0
    metrics = {
        "factual_rmse_test": float(np.sqrt(np.mean((pred - test.Y) ** 2))),
        "outcome_sd_test": scale,
        "n_train_units": int(train.n_units),
        "n_test_units": int(test.n_units),
        "n_dropped_units": int(n_all - seqs.n_units),
        "fit_seconds": round(fit_s, 3),
        "overlap": overlap,
    }
    est.save(out / "model.kgcm")
    import io

    buffer = io.BytesIO()
    np.savez(buffer, train=train_idx, test=test_idx)
    atomic_write_bytes(out / "split.npz", buffer.getvalue())
    config_to_write = _with_absolute_data(config, base)
    atomic_write_text(out / "config.toml", dump_toml(config_to_write))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    _write_run_json(out, config, {"fit": round(fit_s, 3)})
    log(
        f"factual RMSE on held-out units: {metrics['factual_rmse_test']:.4g} "
        f"(outcome sd {scale:.4g}); wrote {out}"
    )
    return FitResult(out_dir=out, metrics=metrics)


def _with_absolute_data(config: FitConfig, base: Path | None) -> FitConfig:
    from dataclasses import replace

    return replace(config, data=str(_data_path(config, base).resolve()))


def _write_run_json(out: Path, config: FitConfig, seconds: dict[str, float]) -> None:
    from kgcm import __version__

    info = {
        "kgcm_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": config.seed,
        "estimator": config.estimator.name,
        "seconds": seconds,
        "files": sorted(p.name for p in out.iterdir() if not p.name.startswith(".")),
    }
    atomic_write_text(out / "run.json", json.dumps(info, indent=2) + "\n")


def load_run_config(run_dir: str | os.PathLike[str]) -> FitConfig:
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise DataError(f"{run_dir} is not a kgcm fit run (no config.toml); run kgcm fit first.")
    return from_dict(FitConfig, read_mapping(path))


def run_effect(
    run_dir: str | os.PathLike[str],
    *,
    scenario: ScenarioConfig | None = None,
    units: str = "all",
    out: str | os.PathLike[str] | None = None,
    alpha: float | None = None,
    log: Log = print,
    allow_weak_overlap: bool = False,
) -> dict[str, Any]:
    """Effects of a treatment scenario for a fitted run; writes ``effects.nc`` and a summary.

    ``units``: ``"all"`` or ``"test"`` (held-out units only). Weak overlap of the scenario
    (:func:`kgcm.check_overlap` with ``T1``) stops the run unless ``allow_weak_overlap``; the
    report goes into the summary as ``overlap`` (and a warning into ``effects.nc``).
    """
    from kgcm.estimators import load
    from kgcm.overlap import require_overlap

    run = Path(run_dir)
    config = load_run_config(run)
    scenario = scenario or config.scenario
    alpha = config.alpha if alpha is None else alpha
    if units not in ("all", "test"):
        raise ConfigError(f"units must be 'all' or 'test'; got {units!r}.")
    est = load(run / "model.kgcm")
    seqs, _, outcome_units = _sequences(config, None, log)
    split = np.load(run / "split.npz")
    is_test = np.zeros(seqs.n_units, dtype=bool)
    is_test[split["test"]] = True
    if units == "test":
        seqs = seqs.subset(split["test"])
        is_test = is_test[split["test"]]
    t1 = seqs.T * scenario.value if scenario.kind == "scale" else seqs.T + scenario.value
    describe = (
        f"T1 = {scenario.value:g} x T0"
        if scenario.kind == "scale"
        else (f"T1 = T0 + {scenario.value:g}")
    )
    overlap = require_overlap(
        seqs.T, seqs.X, t1, allow_weak=allow_weak_overlap, log=log, seed=config.seed
    )
    log(f"effects of {describe} on {seqs.n_units:,} units")
    if est.gives_intervals():
        effect, lower, upper = est.effect_with_interval(seqs.X, T0=seqs.T, T1=t1, alpha=alpha)
    else:
        effect = est.effect(seqs.X, T0=seqs.T, T1=t1)
        lower = upper = None
    out_path = Path(out) if out is not None else run / "effects.nc"
    ds = _effects_dataset(seqs, config, effect, lower, upper, t1, is_test, alpha, describe)
    if not overlap["ok"]:
        ds.attrs["overlap_warning"] = overlap["message"]
    if outcome_units:
        for name in ("effect", "effect_lower", "effect_upper", config.outcome,
                     f"{config.outcome}_counterfactual"):  # fmt: skip
            if name in ds:
                ds[name].attrs["units"] = outcome_units
    with atomic_path(out_path) as tmp:
        ds.to_netcdf(tmp)
    summary = {
        "scenario": describe,
        "units": units,
        "n_units": int(seqs.n_units),
        "mean_effect": float(effect.mean()),
        "mean_effect_test": float(effect[is_test].mean()) if is_test.any() else None,
        "outcome": config.outcome,
        "effects_file": str(out_path),
        "overlap": overlap,
    }
    if lower is not None:
        summary.update(
            mean_lower=float(lower.mean()),
            mean_upper=float(upper.mean()),
            interval_level=1 - alpha,
            share_of_steps_interval_excludes_zero=float(((lower > 0) | (upper < 0)).mean()),
        )
    atomic_write_text(out_path.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
    _figures(ds, out_path, config)
    log(f"mean effect on {config.outcome}: {summary['mean_effect']:.4g}; wrote {out_path}")
    return summary


def _effects_dataset(
    seqs: SequenceSet,
    config: FitConfig,
    effect: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    t1: np.ndarray,
    is_test: np.ndarray,
    alpha: float,
    describe: str,
) -> xr.Dataset:
    units_attr = {"outcome": config.outcome}
    pieces = {
        "effect": seqs.to_grid(
            effect,
            "effect",
            {"long_name": f"effect on {config.outcome}: Y(T1) - Y(T0)", **units_attr},
        ),
        config.outcome: seqs.to_grid(seqs.Y, config.outcome, {"long_name": "factual outcome"}),
        f"{config.outcome}_counterfactual": seqs.to_grid(
            seqs.Y + effect,
            f"{config.outcome}_counterfactual",
            {"long_name": f"estimated outcome under the scenario ({describe})"},
        ),
        "treatment": seqs.to_grid(seqs.T, "treatment", {"long_name": "factual treatment T0"}),
        "treatment_scenario": seqs.to_grid(
            t1, "treatment_scenario", {"long_name": f"scenario treatment ({describe})"}
        ),
        "heldout": seqs.to_grid(
            np.broadcast_to(is_test[:, None], effect.shape).astype(float),
            "heldout",
            {"long_name": "1 where the unit was held out of training"},
        ),
    }
    if lower is not None and upper is not None:
        level = f"{1 - alpha:.0%}"
        pieces["effect_lower"] = seqs.to_grid(
            lower, "effect_lower", {"long_name": f"lower end of the {level} interval"}
        )
        pieces["effect_upper"] = seqs.to_grid(
            upper, "effect_upper", {"long_name": f"upper end of the {level} interval"}
        )
    ds = xr.Dataset(pieces)
    ds.attrs.update(
        title="kgcm effect estimates",
        scenario=describe,
        estimator=config.estimator.name,
        Conventions="CF-1.8",
    )
    for name in ds.data_vars:
        ds[name].encoding.update(zlib=True, complevel=4, dtype="float32", _FillValue=np.nan)
    return ds


def _figures(ds: xr.Dataset, out_path: Path, config: FitConfig) -> None:
    from kgcm import plots

    outcome = config.outcome
    if "y" in ds.dims:
        plots.effect_map(
            ds["effect"],
            None,
            out_path.with_name(out_path.stem + "_map.png"),
            title=f"mean effect on {outcome}",
            units="",
        )
        counts = ds["effect"].notnull().sum("time")
        iy, ix = np.unravel_index(int(np.argmax(counts.values)), counts.shape)
        cell = ds.isel(y=iy, x=ix)
    else:
        cell = ds
    valid = np.isfinite(cell["effect"].values)
    if not valid.any():
        return
    lower = cell["effect_lower"].values if "effect_lower" in cell else cell["effect"].values
    upper = cell["effect_upper"].values if "effect_upper" in cell else cell["effect"].values
    plots.effect_timeseries(
        cell["time"].values,
        cell[outcome].values,
        cell[f"{outcome}_counterfactual"].values,
        cell[outcome].values + lower,
        cell[outcome].values + upper,
        out_path.with_name(out_path.stem + "_timeseries.png"),
        title=f"{outcome}: factual and under the scenario",
        units=str(ds[outcome].attrs.get("units", "")),
        ylabel=outcome,
    )
