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
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kgcm._io import atomic_write_bytes, atomic_write_text, output_folder
from kgcm.bounds import physical_bounds
from kgcm.config import EstimatorConfig, dump_toml, from_dict, read_mapping
from kgcm.errors import ConfigError, DataError, InputError, OutputError
from kgcm.experiments.outcome import OutcomeDesign, design_outcome
from kgcm.references import ReferenceScore
from kgcm.sequences import SequenceSet, split_units, to_sequences
from kgcm.treatments import Scenario

__all__ = [
    "FitConfig",
    "LoadedRun",
    "load_run",
    "run_effect",
    "run_fit",
    "scenario_effects",
    "scenario_path",
]

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
    covariates : time-varying covariates: the treatment's confounders, never the treatment
        nor the fields it is computed from (``to_sequences`` refuses those). The default is
        the atmosphere from ERA5 (near-surface temperature, wind, sea-level pressure,
        downwelling longwave radiation): it drives both the ocean forcing and the ice
        (``docs/pipeline.md``).
    static : covariates without time (e.g. ``lat``); empty for a series.
    calendar : add the day of year (sin, cos) as covariates.
    window, stride : steps per unit and between unit starts (stride 0: ``window``). With a
        stride below the window, windows overlap and ``kgcm effect`` averages them per step.
    split : ``"cell"`` (hold out whole cells), ``"unit"`` (windows at random) or ``"time"``
        (the latest windows).
    test_fraction : share held out.
    seed : seeds the split and the estimator.
    prewindow_state : add the outcome on the day before each window as a covariate
        (``<outcome>_before``): the earlier ice state, a confounder no treatment inside the
        window moves.
    climatology : ``"auto"`` (on unless ``split = "cell"``), ``"on"`` or ``"off"``: the
        estimator learns the anomaly from the training steps' day-of-year climatology.
    bounds : ``"auto"`` (the outcome's physical bounds: ``valid_min``/``valid_max`` on the
        variable, else by its name, see ``kgcm.bounds``) or ``"none"``.
    lower_bound, upper_bound : set or override a bound (e.g. extent <= the region's area).
    effect_burn_in : when windows overlap, a step's effect averages the windows that cover it
        at a position >= this (default ``window // 2``): no step's effect comes from a window
        that has seen only a few days of the scenario.
    reference_years : years of the recent-climatology reference (the latest training years).
    estimator : name and parameters (library defaults unless set).
    scenario : the default treatment scenario of ``kgcm effect``.
    alpha : interval level ``1 − alpha``.
    stream : train from the store block by block without loading it
        (:mod:`kgcm.experiments.streamed`): whole spatial tiles held out, the model's own
        intervals, effects with ``kgcm effect --tiles``.
    """

    data: str = "data/prepared.zarr"
    outcome: str = "sithick"
    treatment: str = "treatment"
    covariates: tuple[str, ...] = ("tas", "uas", "vas", "psl", "rlds")
    static: tuple[str, ...] = ("lat",)
    calendar: bool = True
    window: int = 30
    stride: int = 0
    split: str = "cell"
    test_fraction: float = 0.2
    seed: int = 0
    prewindow_state: bool = True
    climatology: str = "auto"
    bounds: str = "auto"
    lower_bound: float | None = None
    upper_bound: float | None = None
    effect_burn_in: int | None = None
    reference_years: int = 10
    estimator: EstimatorConfig = field(default_factory=_library_defaults)
    scenario: Scenario = field(default_factory=Scenario)
    alpha: float = 0.05
    stream: bool = False

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
        if self.climatology not in ("auto", "on", "off"):
            raise ConfigError(
                f"climatology must be 'auto', 'on' or 'off'; got {self.climatology!r}."
            )
        if self.bounds not in ("auto", "none"):
            raise ConfigError(f"bounds must be 'auto' or 'none'; got {self.bounds!r}.")
        burn_in = self.effect_burn_in
        if burn_in is not None and not 0 <= burn_in < self.window:
            raise ConfigError(
                f"effect_burn_in must be in [0, window) = [0, {self.window}); got {burn_in!r}."
            )
        if self.reference_years < 1:
            raise ConfigError(f"reference_years must be >= 1; got {self.reference_years!r}.")

    @property
    def uses_climatology(self) -> bool:
        return self.climatology == "on" or (self.climatology == "auto" and self.split != "cell")

    @property
    def burn_in(self) -> int:
        return self.window // 2 if self.effect_burn_in is None else self.effect_burn_in


@dataclass(frozen=True)
class FitResult:
    out_dir: Path
    metrics: dict[str, Any]


@dataclass(frozen=True)
class _Prepared:
    """Sequences, the split and the fitted outcome presentation of one run."""

    seqs: SequenceSet
    n_all: int
    units: str
    train_idx: np.ndarray
    test_idx: np.ndarray
    doy: np.ndarray
    design: OutcomeDesign
    outcome_values: np.ndarray  # (n_times, n_cells), raw


def _data_path(config: FitConfig, base: Path | None) -> Path:
    p = Path(config.data).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p


def _prepare(
    config: FitConfig,
    base: Path | None,
    log: Log,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> _Prepared:
    """Open the store, cut sequences, split (or take the saved ``split``), fit the design."""
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
    ds = ds[[v for v in dict.fromkeys(needed) if v in ds.data_vars]].load()
    n_all = _count_units(ds, config)
    seqs = to_sequences(
        ds,
        outcome=config.outcome,
        treatment=config.treatment,
        covariates=config.covariates,
        static=static,
        calendar=config.calendar,
        window=config.window,
        stride=config.stride or None,
        drop_incomplete=True,
        before=config.prewindow_state,
    )
    if split is None:
        train_idx, test_idx = split_units(
            seqs, test_fraction=config.test_fraction, seed=config.seed, by=config.split
        )
    else:
        train_idx, test_idx = split
    attrs = dict(ds[config.outcome].attrs)
    lower, upper = _bounds(config, attrs)
    doy = ds["time"].dt.day_of_year.values.astype(np.int64)
    design = design_outcome(
        seqs,
        train_idx,
        doy,
        outcome=config.outcome,
        lower=lower,
        upper=upper,
        climatology=config.uses_climatology,
        prewindow_state=config.prewindow_state,
    )
    n_times = ds.sizes["time"]
    values = np.asarray(ds[config.outcome].transpose("time", ...).values, dtype=np.float64)
    return _Prepared(
        seqs=seqs,
        n_all=n_all,
        units=str(attrs.get("units", "")),
        train_idx=train_idx,
        test_idx=test_idx,
        doy=doy,
        design=design,
        outcome_values=values.reshape(n_times, -1),
    )


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

    Beside the estimator's held-out factual RMSE, the references (``kgcm.references``) are
    scored on the same held-out units and steps; the log says plainly which ones the estimator
    does not beat.

    Weak overlap (:func:`kgcm.check_overlap` on the sequences) stops the run with
    :class:`~kgcm.errors.WeakOverlapError` unless ``allow_weak_overlap``; the report is
    written into ``metrics.json`` as ``overlap``.

    The folder is a transaction (:func:`kgcm._io.output_folder`): written complete beside it and
    moved into place at the end, so a failed, killed or concurrent run never leaves a mix.
    """
    from kgcm import distributed

    target = Path(out_dir)
    training = dict(config.estimator.params).get("training") or {}
    joined = distributed.init_from_env(str(dict(training).get("device", "auto")))
    try:
        rank, size = distributed.world()
        saved = target.with_name(f".{target.name}.checkpoints")
        stamp = _claim_checkpoints(saved, config, 1, log)  # the stamp; rank 0 claims it below
        if size > 1:
            log(f"training on {size} processes (PyTorch DDP)")
        with distributed.checkpoints(saved, stamp):
            if rank != 0:  # trains with the others; rank 0 alone writes the run
                with tempfile.TemporaryDirectory() as scratch:
                    _run_fit(config, Path(scratch), base_dir=base_dir, log=lambda m: None,
                             allow_weak_overlap=allow_weak_overlap)  # fmt: skip
                return FitResult(out_dir=target, metrics={})
            with output_folder(target, "fit") as staging:
                _claim_checkpoints(saved, config, rank, log)  # under the output's lock
                result = _run_fit(
                    config,
                    staging,
                    base_dir=base_dir,
                    log=lambda m: log(m.replace(str(staging), str(target))),
                    allow_weak_overlap=allow_weak_overlap,
                )
                shutil.rmtree(saved, ignore_errors=True)  # still under the output's lock
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()
    return FitResult(out_dir=target, metrics=result.metrics)


def _claim_checkpoints(folder: Path, config: FitConfig, rank: int, log: Log) -> str:
    """The stamp of this config's checkpoints; those beside the output are used only if the
    same config wrote them, else removed (rank 0), so a changed setting never resumes an old
    fit."""
    import hashlib

    stamp = hashlib.sha256(dump_toml(config).encode()).hexdigest()
    if rank != 0 or not folder.is_dir():  # rank 0 alone reads and clears the folder
        return stamp
    mine = folder / "stamp"
    if mine.is_file() and mine.read_text() == stamp:
        if any(p.suffix == ".pt" for p in folder.iterdir()):
            log(f"continuing from the checkpoints of an interrupted run in {folder}")
        return stamp
    if any(p.suffix == ".pt" for p in folder.iterdir()):
        log(f"removing the checkpoints of a run with another config (or none) in {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    return stamp


def _run_fit(
    config: FitConfig,
    out_dir: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None,
    log: Log,
    allow_weak_overlap: bool = False,
) -> FitResult:
    from kgcm import distributed
    from kgcm.overlap import require_overlap

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = Path(base_dir) if base_dir is not None else None
    if config.stream:
        return _run_streamed(config, out, base, log, allow_weak_overlap)
    started = time.perf_counter()
    prep = _prepare(config, base, log)
    seqs = prep.seqs
    if seqs.n_units < prep.n_all:
        log(
            f"dropped {prep.n_all - seqs.n_units:,} of {prep.n_all:,} units holding NaN (land, "
            f"gaps, fill, or no day before the window); {seqs.n_units:,} remain"
        )
    overlap = require_overlap(
        seqs.T, seqs.X, allow_weak=allow_weak_overlap, log=log, seed=config.seed
    )
    train, test = seqs.subset(prep.train_idx), seqs.subset(prep.test_idx)
    design = prep.design
    X_train = design.covariates(train, prep.doy)
    log(
        f"fitting {config.estimator.name} on {train.n_units:,} sequences of {seqs.window} steps "
        f"({X_train.sizes['feature']} covariates: {', '.join(map(str, X_train['feature'].values))}"
        f"); {test.n_units:,} held out by {config.split}"
    )
    from kgcm.experiments.evaluation import fit_estimator

    est = fit_estimator(
        config.estimator.name,
        config.estimator.params,
        config.estimator.inference,
        seed=config.seed,
        Y=design.target(train, prep.doy),
        T=train.T,
        X=X_train,
        cells=train.cells,
        log=log,
    )
    fit_s = time.perf_counter() - started
    X_test = design.covariates(test, prep.doy)
    pred = design.outcome_from(est.predict(X_test.values, test.T), test, prep.doy)
    scores, forecasts = _reference_scores(config, prep, train, test, pred)
    estimator_rmse = scores[0].rmse
    scale = float(np.std(test.Y)) or 1.0
    metrics: dict[str, Any] = {
        "factual_rmse_test": estimator_rmse,
        "outcome_sd_test": scale,
        "references": {
            s.name: {"description": s.description, "rmse": s.rmse, "skill": s.skill} for s in scores
        },
        "not_beaten": [s.name for s in scores[1:] if s.rmse <= estimator_rmse],
        "outcome_bounds": [design.transform.lower, design.transform.upper],
        "n_train_units": int(train.n_units),
        "n_test_units": int(test.n_units),
        "n_dropped_units": int(prep.n_all - seqs.n_units),
        "fit_seconds": round(fit_s, 3),
        "processes": distributed.world()[1],
        "overlap": overlap,
    }
    est.save(out / "model.kgcm")
    import io

    buffer = io.BytesIO()
    np.savez(buffer, train=prep.train_idx, test=prep.test_idx)
    atomic_write_bytes(out / "split.npz", buffer.getvalue())
    config_to_write = _with_absolute_data(config, base)
    atomic_write_text(out / "config.toml", dump_toml(config_to_write))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    from kgcm.experiments.tiled import DESIGN_FILE, design_record

    atomic_write_text(out / DESIGN_FILE, json.dumps(design_record(design), indent=2) + "\n")
    _fit_figure(out, config, prep.units, test, forecasts, scores)
    from kgcm.experiments.outputs import write_run_json

    write_run_json(
        out, command="fit", seed=config.seed, estimator=config.estimator.name,
        seconds={"fit": round(fit_s, 3)}, overlap=overlap,
    )  # fmt: skip
    _log_scores(log, config, scores, prep.units, scale)
    log(f"wrote {out}")
    return FitResult(out_dir=out, metrics=metrics)


def _bounds(config: FitConfig, attrs: dict[str, Any]) -> tuple[float | None, float | None]:
    lower, upper = (
        physical_bounds(config.outcome, attrs) if config.bounds == "auto" else (None,) * 2
    )
    lower = config.lower_bound if config.lower_bound is not None else lower
    upper = config.upper_bound if config.upper_bound is not None else upper
    return lower, upper


def _run_streamed(
    config: FitConfig, out: Path, base: Path | None, log: Log, allow_weak_overlap: bool
) -> FitResult:
    """``stream = true``: the fit of :mod:`kgcm.experiments.streamed`, and the run's files."""
    from kgcm.experiments.outputs import write_run_json
    from kgcm.experiments.streamed import run_streamed_fit
    from kgcm.prepare import open_prepared

    data = _data_path(config, base)
    ds = open_prepared(data)
    if config.outcome not in ds.data_vars:
        raise InputError(
            f"the outcome {config.outcome!r} is not in {data}; it has {sorted(ds.data_vars)}. "
            "Set outcome = one of them."
        )
    attrs = dict(ds[config.outcome].attrs)
    lower, upper = _bounds(config, attrs)
    metrics = run_streamed_fit(
        config, data, out, log=log, allow_weak_overlap=allow_weak_overlap, lower=lower,
        upper=upper,
    )  # fmt: skip
    if not metrics:  # another process of a DDP run: rank 0 writes
        return FitResult(out_dir=out, metrics={})
    atomic_write_text(out / "config.toml", dump_toml(_with_absolute_data(config, base)))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_run_json(
        out, command="fit", seed=config.seed, estimator=config.estimator.name,
        seconds={"fit": metrics["fit_seconds"]}, overlap=metrics["overlap"],
    )  # fmt: skip
    scores = [ReferenceScore(k, v["description"], v["rmse"], v["skill"])
              for k, v in metrics["references"].items()]  # the estimator first  # fmt: skip
    _log_scores(log, config, scores, str(attrs.get("units", "")), metrics["outcome_sd_test"])
    log("no fit figure for a streamed fit; effects: kgcm effect RUN --tiles")
    log(f"wrote {out}")
    return FitResult(out_dir=out, metrics=metrics)


def _reference_scores(
    config: FitConfig, prep: _Prepared, train: SequenceSet, test: SequenceSet, pred: np.ndarray
) -> tuple[list[ReferenceScore], dict[str, np.ndarray]]:
    """The estimator's held-out RMSE first, then each reference's on the same steps; and every
    forecast (n_test, window) by name."""
    from kgcm.experiments.outcome import fill_empty_cells, steps_used, unit_doy
    from kgcm.references import climatology_table, linear_reference, lookup, rmse, skill

    n_times = prep.outcome_values.shape[0]
    used = steps_used(prep.seqs, prep.train_idx, n_times)
    times = prep.seqs.template["time"].values
    last = times[np.flatnonzero(used.any(axis=1))[-1]]
    recent = times > last - np.timedelta64(int(config.reference_years * 365.25), "D")
    doy_test = unit_doy(test, prep.doy)
    cells = test.cell_index()

    def table(mask: np.ndarray) -> np.ndarray:
        return fill_empty_cells(climatology_table(prep.outcome_values, prep.doy, mask))

    recent_table = table(used & recent[:, None])
    forecasts: list[tuple[str, str, np.ndarray]] = [
        ("climatology_recent",
         f"day-of-year climatology of the latest {config.reference_years} training years",
         lookup(recent_table, doy_test, cells)),
        ("climatology_full", "day-of-year climatology of every training year",
         lookup(table(used), doy_test, cells)),
    ]  # fmt: skip
    if test.Y_before is not None:
        forecasts.append((
            "persistence", "the last value before the window, held for the window",
            np.broadcast_to(test.Y_before[:, None], test.Y.shape),
        ))  # fmt: skip
        before_doy = prep.doy[test.starts - 1]
        anomaly = test.Y_before - recent_table[before_doy - 1, cells]
        forecasts.append((
            "persistence_anomaly",
            "recent climatology plus the anomaly of the day before the window, held",
            forecasts[0][2] + anomaly[:, None],
        ))  # fmt: skip
    X_lin = [train.X, test.X]
    if train.Y_before is not None and test.Y_before is not None:
        X_lin = [np.concatenate([s.X, np.broadcast_to(s.Y_before[:, None, None],
                 (*s.Y.shape, 1))], axis=-1) for s in (train, test)]  # fmt: skip
    forecasts.append((
        "linear", "ridge regression on the same covariates (and pre-window state) and treatment",
        linear_reference(X_lin[0], train.T, train.Y, X_lin[1], test.T),
    ))  # fmt: skip
    clim_rmse = rmse(forecasts[0][2], test.Y)
    out = [ReferenceScore(config.estimator.name, "the fitted estimator", rmse(pred, test.Y),
                          skill(rmse(pred, test.Y), clim_rmse))]  # fmt: skip
    for name, text, forecast in forecasts:
        score = rmse(forecast, test.Y)
        out.append(
            ReferenceScore(name, text, score, None if name == "climatology_recent"
                           else skill(score, clim_rmse))
        )  # fmt: skip
    return out, {config.estimator.name: pred, **{n: f for n, _, f in forecasts}}


def _log_scores(
    log: Log, config: FitConfig, scores: list[ReferenceScore], units: str, scale: float
) -> None:
    unit = f" {units}" if units else ""
    log(f"held-out factual RMSE (outcome sd {scale:.4g}{unit}); skill vs recent climatology:")
    for s in scores:
        sk = "" if s.skill is None else f"  skill {s.skill:+.3f}"
        log(f"  {s.name:<22} {s.rmse:.4g}{unit}{sk}")
    beaten_by = [s.name for s in scores[1:] if s.rmse <= scores[0].rmse]
    if beaten_by:
        log(
            f"WARNING: {config.estimator.name} does not beat {', '.join(beaten_by)} on the "
            f"held-out factual outcome; its counterfactuals deserve no more trust than that."
        )
    else:
        log(f"{config.estimator.name} beats every reference on the held-out factual outcome.")


def _with_absolute_data(config: FitConfig, base: Path | None) -> FitConfig:
    return replace(config, data=str(_data_path(config, base).resolve()))


def load_run_config(run_dir: str | os.PathLike[str], *, units: bool = False) -> FitConfig:
    """A fit run's config; ``units``: the caller reloads the run's units in memory, which a
    streamed run (no unit split) refuses with the command that computes its effects."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise DataError(f"{run_dir} is not a kgcm fit run (no config.toml); run kgcm fit first.")
    config = from_dict(FitConfig, read_mapping(path))
    if units and config.stream:
        raise DataError(
            f"{run_dir} was fitted streamed (stream = true) and keeps no unit split: its units "
            f"are read block by block. Compute its effects with kgcm effect {run_dir} --tiles."
        )
    return config


@dataclass(frozen=True)
class LoadedRun:
    """A fitted run back in memory: its config, estimator, sequences, split and design."""

    run_dir: Path
    config: FitConfig
    estimator: Any
    prep: _Prepared

    def units(self, which: str) -> tuple[SequenceSet, np.ndarray]:
        """The sequences of ``"all"`` units or only the held-out ``"test"`` ones, with each
        unit's held-out flag (n_units,)."""
        if which not in ("all", "test"):
            raise ConfigError(f"units must be 'all' or 'test'; got {which!r}.")
        seqs = self.prep.seqs
        is_test = np.zeros(seqs.n_units, dtype=bool)
        is_test[self.prep.test_idx] = True
        if which == "test":
            return seqs.subset(self.prep.test_idx), is_test[self.prep.test_idx]
        return seqs, is_test


def load_run(run_dir: str | os.PathLike[str], *, log: Log = print) -> LoadedRun:
    """Reload a ``kgcm fit`` run: model, config and the same sequences, split and design."""
    from kgcm.estimators import load

    run = Path(run_dir)
    config = load_run_config(run, units=True)
    est = load(run / "model.kgcm")
    try:
        with np.load(run / "split.npz") as saved:
            split = tuple(np.asarray(saved[k], dtype=np.int64) for k in ("train", "test"))
    except Exception as exc:
        raise DataError(
            f"{run / 'split.npz'} cannot be read ({exc.__class__.__name__}: {exc}); it is damaged "
            f"or missing. Run kgcm fit again."
        ) from exc
    prep = _prepare(config, None, log, split=split)
    return LoadedRun(run_dir=run, config=config, estimator=est, prep=prep)


def scenario_path(t0: np.ndarray, scenario: Scenario) -> tuple[np.ndarray, str]:
    """``T1`` of a scenario (same shape as ``t0``) and its description."""
    return scenario.apply(t0), scenario.describe()


def scenario_effects(
    est: Any,
    config: FitConfig,
    prep: _Prepared,
    seqs: SequenceSet,
    t1: np.ndarray,
    alpha: float,
    *,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Effects of ``T0 → T1`` on ``seqs`` as outcomes on the grid (time, ...space): ``factual``,
    ``effect`` and, when the estimator gives intervals, ``effect_lower``/``effect_upper``.
    ``progress`` draws a bar over the estimator's passes over the units, for estimators that
    report them (``reports_progress``; in a terminal only).

    Computed in the estimator's coordinate and mapped back to the bounded outcome by
    ``_combine`` (overlapping windows averaged past ``effect_burn_in``).
    """
    from kgcm._progress import reported

    X = prep.design.covariates(seqs, prep.doy).values
    shown = progress and est.reports_progress
    passes = est.effect_passes() if shown else 0
    from kgcm.experiments.evaluation import estimate

    with reported(shown, f"effects on {seqs.n_units:,} units ({passes} passes)", passes):
        estimates = estimate(est, X, seqs.T, t1, alpha=alpha)
    delta, lower, upper = estimates.effect, estimates.lower, estimates.upper
    overlapping = 0 < config.stride < config.window
    burn_in = config.burn_in if overlapping else 0
    return _combine(seqs, prep.design, delta, lower, upper, burn_in)


def run_effect(
    run_dir: str | os.PathLike[str],
    *,
    scenario: Scenario | None = None,
    units: str = "all",
    out: str | os.PathLike[str] | None = None,
    alpha: float | None = None,
    year: int | None = None,
    log: Log = print,
    allow_weak_overlap: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Effects of a treatment scenario for a fitted run; writes ``effects.nc``, a summary
    (``effects.json``) and figures. ``progress``: a bar over the estimator's passes over the
    units, where it reports them (KGCM-VAE), in a terminal.

    ``units``: ``"all"`` or ``"test"`` (held-out units only). Where windows overlap, each
    step's effect averages the windows covering it at a position >= ``effect_burn_in``; the
    counterfactual outcome is the factual one moved by that effect in the outcome's unbounded
    coordinate (``kgcm.bounds``), so it stays within the physical bounds. ``year``: the year
    drawn in detail (default: the latest year with a full set of estimates). Weak overlap of
    the scenario (:func:`kgcm.check_overlap` with ``T1``) stops the run unless
    ``allow_weak_overlap``; the report goes into the summary as ``overlap`` (and a warning into
    ``effects.nc``).
    The run folder's files are checked against the hashes the fit recorded; the effect files
    are written as one transaction (into the run folder by default, or beside ``out``), so a
    killed run leaves the old set or the new.
    """
    from kgcm._io import read_marker, verify_folder, write_marker

    run = Path(run_dir)
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1
    ):
        raise ConfigError(f"alpha must be a number in (0, 1), e.g. 0.05; got {alpha!r}.")
    load_run_config(run, units=True)
    if read_marker(run) is None and (run / "model.kgcm").is_file():
        log(f"note: {run} predates kgcm's output manifests; recording its files now")
        write_marker(run, "fit")
    verify_folder(run, "fit", ("config.toml", "model.kgcm", "split.npz"))
    out_path = Path(out) if out is not None else run / "effects.nc"

    def run_in(folder: Path) -> dict[str, Any]:
        def relay(msg: str) -> None:
            log(msg.replace(str(folder / out_path.name), str(out_path)))

        summary = _run_effect(
            run,
            scenario=scenario,
            units=units,
            out=folder / out_path.name,
            alpha=alpha,
            year=year,
            log=relay,
            allow_weak_overlap=allow_weak_overlap,
            progress=progress,
        )
        summary["effects_file"] = str(out_path)
        return summary

    if out_path.parent.resolve() == run.resolve():
        with output_folder(run, "fit", keep_existing=True) as staging:
            summary = run_in(staging)
            atomic_write_text(
                staging / out_path.with_suffix(".json").name, json.dumps(summary, indent=2) + "\n"
            )
        return summary
    return _effect_elsewhere(out_path, run_in)


#: The figures ``kgcm effect`` may draw beside ``effects.nc`` (``effects_<name>.png``).
EFFECT_FIGURES = ("map", "seasons_map", "climatology", "seasons", "year", "timeseries")


#: the tables ``kgcm effect`` writes beside ``effects.nc`` (``effects_<name>``):
#: seasonal and regional maps (:mod:`kgcm.experiments.effect_maps`)
EFFECT_TABLES = ("maps.nc", "regions.csv", "regions.png")


def _effect_group(path: Path) -> list[Path]:
    """The files one effect run writes for ``path`` (the summary last)."""
    return [
        path,
        *(path.with_name(f"{path.stem}_{figure}.png") for figure in EFFECT_FIGURES),
        *(path.with_name(f"{path.stem}_{name}") for name in EFFECT_TABLES),
        path.with_suffix(".json"),
    ]


def _is_effects_file(path: Path) -> bool:
    try:
        with xr.open_dataset(path) as ds:
            return ds.attrs.get("title") == "kgcm effect estimates"
    except Exception:
        return False


def _effect_elsewhere(out_path: Path, run_in: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Write the effect files beside ``out_path`` in a folder shared with other files: staged in
    a hidden sibling, then moved in with the summary (which lists every file's hash) last and
    the old summary removed first, so a summary always describes the files beside it."""
    import shutil
    import uuid

    from kgcm._io import OutputLock, file_hash

    with OutputLock(out_path):
        if out_path.is_symlink() or (out_path.exists() and not out_path.is_file()):
            raise OutputError(f"the output {out_path} exists and is not a regular file.")
        if out_path.exists() and not _is_effects_file(out_path):
            raise OutputError(
                f"the output {out_path} exists and is not a kgcm effects file; kgcm replaces "
                f"only its own outputs. Choose another --out, or remove that file yourself."
            )
        staging = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:12]}.partial")
        try:
            staging.mkdir()
            summary = run_in(staging)
            group = _effect_group(out_path)
            summary["files"] = {
                p.name: file_hash(staging / p.name)
                for p in group[:-1]
                if (staging / p.name).is_file()
            }
            group[-1].unlink(missing_ok=True)
            for p in group[1:-1]:
                p.unlink(missing_ok=True)  # figures the new run may not draw
            for p in group[:-1]:
                if (staging / p.name).is_file():
                    os.replace(staging / p.name, p)
            atomic_write_text(group[-1], json.dumps(summary, indent=2) + "\n")
        except OSError as exc:
            if isinstance(exc, OutputError):
                raise
            raise OutputError(
                f"cannot write {out_path}: {exc.strerror or exc}; choose a writable --out."
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return summary


def _run_effect(
    run_dir: str | os.PathLike[str],
    *,
    scenario: Scenario | None,
    units: str,
    out: Path,
    alpha: float | None,
    year: int | None,
    log: Log,
    allow_weak_overlap: bool,
    progress: bool = False,
) -> dict[str, Any]:
    from kgcm.overlap import require_overlap

    loaded = load_run(run_dir, log=log)
    config, prep = loaded.config, loaded.prep
    if scenario is None:
        scenario = config.scenario
    elif not scenario.expected_sign:
        scenario = replace(scenario, expected_sign=config.scenario.expected_sign)
    alpha = config.alpha if alpha is None else alpha
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), e.g. 0.05 for 95% intervals; got {alpha!r}.")
    seqs, is_test = loaded.units(units)
    t1, describe = scenario_path(seqs.T, scenario)
    overlap = require_overlap(
        seqs.T, seqs.X, t1, allow_weak=allow_weak_overlap, log=log, seed=config.seed
    )
    log(f"effects of {describe} on {seqs.n_units:,} units")
    combined = scenario_effects(loaded.estimator, config, prep, seqs, t1, alpha, progress=progress)
    out_path = Path(out)
    from kgcm.experiments.outputs import effects_dataset, heldout_share, write_effects

    ds = effects_dataset(
        seqs.template,
        outcome=config.outcome,
        effect=combined["effect"],
        lower=combined.get("effect_lower"),
        upper=combined.get("effect_upper"),
        factual=combined["factual"],
        counterfactual=combined["factual"] + combined["effect"],
        treatment=seqs.to_grid(seqs.T, "treatment").values,
        treatment_scenario=seqs.to_grid(t1, "treatment_scenario").values,
        heldout=heldout_share(seqs, is_test),
        scenario=describe,
        estimator=config.estimator.name,
        title="kgcm effect estimates",
        alpha=alpha,
        units=prep.units or "",
        overlap=overlap,
    )
    write_effects(ds, out_path)
    summary = _effect_summary(ds, config, scenario, describe, units, seqs.n_units, out_path, alpha)
    summary["overlap"] = overlap
    from kgcm.experiments.effect_maps import write_effect_maps

    maps = write_effect_maps(
        ds,
        out_path,
        outcome=config.outcome,
        log=log,
        title=f"seasonal mean effect on {config.outcome} ({describe})",
    )
    summary["regions"] = maps.attrs["regions"]
    atomic_write_text(out_path.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
    _figures(ds, out_path, config, summary, year)
    _log_effect(log, summary, config.outcome, prep.units)
    log(f"wrote {out_path}")
    return summary


def _combine(
    seqs: SequenceSet,
    design: OutcomeDesign,
    delta: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    min_position: int,
) -> dict[str, np.ndarray]:
    """Per-unit effects in the estimator's coordinate → per-step outcomes on the grid."""

    def grid(values: np.ndarray, position: int = min_position) -> np.ndarray:
        return seqs.to_grid(values, "v", combine="mean", min_position=position).values

    factual = grid(seqs.Y, 0)
    out = {"factual": factual}
    for name, d in (("effect", delta), ("effect_lower", lower), ("effect_upper", upper)):
        if d is not None:
            moved = design.transform.counterfactual(factual, grid(d))
            out[name] = moved - factual
    return out


def _effect_summary(
    ds: xr.Dataset,
    config: FitConfig,
    scenario: Scenario,
    describe: str,
    units: str,
    n_units: int,
    out_path: Path,
    alpha: float,
) -> dict[str, Any]:
    from kgcm.experiments.effect_summary import noise_and_signal, seasonal_means, sign_flags

    space = [d for d in ds["effect"].dims if d != "time"]
    series = {k: ds[k].mean(space).values if space else ds[k].values
              for k in ("effect", "effect_lower", "effect_upper") if k in ds}  # fmt: skip
    time_values = ds["time"].values
    effect = series["effect"]
    held = ds["heldout"].values == 1.0
    seasons = seasonal_means(
        time_values, effect, series.get("effect_lower"), series.get("effect_upper")
    )
    summary: dict[str, Any] = {
        "scenario": describe,
        "units": units,
        "n_units": int(n_units),
        "n_steps_with_effect": int(np.isfinite(ds["effect"].values).sum()),
        "mean_effect": _finite_mean(ds["effect"].values),
        "mean_effect_test": _finite_mean(ds["effect"].values[held]),
        "outcome": config.outcome,
        "seasons": seasons,
        "smoothness": noise_and_signal(time_values, effect),
        "expected_sign": scenario.expected_sign or None,
        "sign_disagrees_in": sign_flags(seasons, scenario.expected_sign),
        "effects_file": str(out_path),
    }
    if "effect_lower" in ds:
        summary.update(
            mean_lower=_finite_mean(ds["effect_lower"].values),
            mean_upper=_finite_mean(ds["effect_upper"].values),
            interval_level=1 - alpha,
            interval_coverage=(
                "not known on real data (no ground truth); coverage on the simulators is in "
                "docs/benchmarks.md"
            ),
        )
    return summary


def _finite_mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def _log_effect(log: Log, summary: dict[str, Any], outcome: str, units: str) -> None:
    unit = f" {units}" if units else ""
    log(f"mean effect on {outcome}: {summary['mean_effect']:.4g}{unit}")
    for name, entry in summary["seasons"].items():
        if entry["mean_effect"] is None:
            continue
        band = (
            f" [{entry['mean_lower']:.4g}, {entry['mean_upper']:.4g}]"
            if "mean_lower" in entry
            else ""
        )
        log(f"  {name}: {entry['mean_effect']:.4g}{band}{unit} ({entry['n_days']} days)")
    smooth = summary["smoothness"]
    if smooth["day_to_day_sd"] is not None:
        log(
            f"day-to-day noise of the effect (sd) {smooth['day_to_day_sd']:.3g}{unit} against a "
            f"seasonal signal (sd of its day-of-year cycle) of {smooth['seasonal_signal_sd']:.3g}"
            f"{unit}"
        )
    if summary["sign_disagrees_in"]:
        log(
            f"FLAG: the mean effect is not {summary['expected_sign']} in "
            f"{', '.join(summary['sign_disagrees_in'])} (expected_sign = "
            f"{summary['expected_sign']!r}): a check to look into, not a constraint."
        )


def _fit_figure(
    out: Path,
    config: FitConfig,
    units: str,
    test: SequenceSet,
    forecasts: dict[str, np.ndarray],
    scores: list[ReferenceScore],
) -> None:
    """The held-out factual fit beside the references: RMSE bars and the latest held-out year."""
    from kgcm import plots

    space = test.template.ndim > 1

    def series(values: np.ndarray) -> np.ndarray:
        g = test.to_grid(np.asarray(values), "v", combine="mean")
        return g.mean([d for d in g.dims if d != "time"]).values if space else g.values

    plots.reference_fit(
        test.template["time"].values,
        series(test.Y),
        {name: series(f) for name, f in forecasts.items()},
        {s.name: s.rmse for s in scores},
        out / "fit_references.png",
        ylabel=config.outcome,
        units=units,
    )


def _figures(
    ds: xr.Dataset,
    out_path: Path,
    config: FitConfig,
    summary: dict[str, Any],
    year: int | None,
) -> None:
    from kgcm import plots

    outcome = config.outcome
    units = str(ds[outcome].attrs.get("units", ""))
    stem = out_path.with_name(out_path.stem)
    space = [d for d in ds["effect"].dims if d != "time"]
    if space:
        plots.effect_map(
            ds["effect"], None, f"{stem}_map.png", title=f"mean effect on {outcome}", units=units
        )
    area = ds.mean(space) if space else ds
    if not np.isfinite(area["effect"].values).any():
        return
    time_values = area["time"].values
    effect = area["effect"].values
    lower = area["effect_lower"].values if "effect_lower" in area else None
    upper = area["effect_upper"].values if "effect_upper" in area else None
    label = f"effect on {outcome}" + (" (area mean)" if space else "")
    plots.effect_climatology(
        time_values,
        effect,
        lower,
        upper,
        f"{stem}_climatology.png",
        units=units,
        title=f"{label} by day of year ({summary['scenario']})",
    )
    plots.seasonal_effects(
        time_values,
        effect,
        summary["seasons"],
        f"{stem}_seasons.png",
        units=units,
        title=f"{label} by season ({summary['scenario']})",
    )
    chosen = _detail_year(time_values, effect, year)
    days = area["time"].dt.year.values == chosen
    factual = area[outcome].values[days]
    lo = factual if lower is None else factual + lower[days]
    hi = factual if upper is None else factual + upper[days]
    plots.effect_timeseries(
        time_values[days], factual, factual + effect[days], lo, hi, f"{stem}_year.png",
        title=f"{outcome} in {chosen}: factual and under the scenario ({summary['scenario']})",
        units=units, ylabel=outcome,
    )  # fmt: skip


def _detail_year(time_values: np.ndarray, effect: np.ndarray, year: int | None) -> int:
    years = pd.DatetimeIndex(time_values).year.to_numpy()
    counts = pd.Series(np.isfinite(effect)).groupby(years).sum()
    if year is not None:
        if year not in counts.index or counts[year] == 0:
            have = counts.index[counts > 0]
            raise ConfigError(
                f"no effect estimates in {year}; years with estimates: {have.min()}-{have.max()}."
            )
        return int(year)
    full = counts[counts >= 360]
    return int(full.index.max() if len(full) else counts.idxmax())
