"""The main job (``kgcm demo``): simulate → sequences → fit → effects on held-out cells.

1. Simulate the ``arctic`` world (known potential outcomes).
2. Cut it into unit sequences (cell × 30-day window); hold out a share of the cells.
3. Fit the configured estimator (KGCM-VAE by default) on the training cells.
4. Estimate the effect of the scenario path (default ``T1 = 1.5 × T0``) with intervals on
   every cell; score it on the held-out cells against the exact effect, beside the
   zero-effect reference.
5. Write, atomically, to the output folder: ``effects.nc`` (CF NetCDF on time, y, x),
   ``effect_map.png``, ``effect_timeseries.png``, ``metrics.json``, ``config.toml`` (the
   resolved config, seeds included), ``model.kgcm`` and ``run.json`` (versions, timings),
   the last one written when everything else is in place.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kgcm import __version__
from kgcm._io import atomic_write_text, output_folder
from kgcm.config import EstimatorConfig, dump_toml
from kgcm.errors import ConfigError
from kgcm.experiments import evaluation
from kgcm.sequences import SequenceSet, split_units, to_sequences
from kgcm.synthetic.arctic import ArcticConfig, ArcticSimulation, simulate_arctic
from kgcm.treatments import Scenario

__all__ = ["DemoConfig", "DemoResult", "metrics_table", "run_demo"]

Log = Callable[[str], None]


def _demo_estimator() -> EstimatorConfig:
    # 40 epochs keep the demo within about 3 minutes on 2 CPU cores; the library default
    # (early stopping, up to 200 epochs) trains longer for a slightly better fit.
    return EstimatorConfig(name="kgcm-vae", params={"training": {"max_epochs": 40}})


@dataclass(frozen=True)
class DemoConfig:
    """The main job: simulate → sequences → fit → effects on held-out cells → outputs.

    ``seed`` seeds the split and the estimator (a ``seed`` in ``estimator.params`` is refused);
    ``arctic.seed`` seeds the simulated world.
    """

    seed: int = 0
    arctic: ArcticConfig = field(default_factory=ArcticConfig)
    window: int = 30
    covariates: tuple[str, ...] = ("zos", "uo", "vo")
    static: tuple[str, ...] = ("lat",)
    calendar: bool = True
    test_fraction: float = 0.25
    scenario: Scenario = field(default_factory=Scenario)
    estimator: EstimatorConfig = field(default_factory=_demo_estimator)
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window < 2:
            raise ConfigError(f"window must be an integer >= 2; got {self.window!r}.")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must be in (0, 1); got {self.test_fraction!r}.")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1); got {self.alpha!r}.")


@dataclass(frozen=True)
class DemoResult:
    metrics: dict[str, dict[str, Any]]
    out_dir: Path
    seconds: dict[str, float]


def run_demo(
    config: DemoConfig,
    out_dir: str | os.PathLike[str],
    *,
    log: Log = print,
    allow_weak_overlap: bool = False,
) -> DemoResult:
    """Run the main job and write its outputs to ``out_dir``.

    Before fitting, :func:`kgcm.check_overlap` runs on the sequences with the scenario's
    ``T1``; weak overlap stops the job with :class:`~kgcm.errors.WeakOverlapError` unless
    ``allow_weak_overlap``. The report is the ``overlap`` entry of ``metrics.json`` and
    ``run.json``.

    The folder is a transaction (:func:`kgcm._io.output_folder`): written complete beside it and
    moved into place at the end, so a failed, killed or concurrent run never leaves a mix.
    """
    target = Path(out_dir)
    with output_folder(target, "demo") as staging:
        result = _run_demo(
            config,
            staging,
            log=lambda m: log(m.replace(str(staging), str(target))),
            allow_weak_overlap=allow_weak_overlap,
        )
    return DemoResult(metrics=result.metrics, out_dir=target, seconds=result.seconds)


def _run_demo(
    config: DemoConfig,
    out_dir: str | os.PathLike[str],
    *,
    log: Log,
    allow_weak_overlap: bool = False,
) -> DemoResult:
    from kgcm.overlap import require_overlap

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    a = config.arctic
    log(f"[1/5] simulating the arctic world: {a.ny}x{a.nx} cells, {a.days} days (seed {a.seed})")
    sim = simulate_arctic(a)
    lap("simulate")

    log(
        f"[2/5] cutting {config.window}-day sequences; "
        f"holding out {config.test_fraction:.0%} of cells"
    )
    seqs = to_sequences(
        sim.dataset,
        covariates=config.covariates,
        static=config.static,
        calendar=config.calendar,
        window=config.window,
    )
    train_idx, test_idx = split_units(
        seqs, test_fraction=config.test_fraction, seed=config.seed, by="cell"
    )
    train, test = seqs.subset(train_idx), seqs.subset(test_idx)
    scenario = config.scenario
    t1_all = scenario.apply(seqs.T)
    overlap = require_overlap(
        seqs.T, seqs.X, t1_all, allow_weak=allow_weak_overlap, log=log, seed=config.seed
    )
    lap("sequences")

    log(
        f"[3/5] fitting {config.estimator.name} on {train.n_units} sequences "
        f"({len(np.unique(train.cells, axis=0))} cells x {len(np.unique(train.starts))} windows)"
    )
    # the DataArray carries covariate names
    est = evaluation.fit_estimator(
        config.estimator.name,
        config.estimator.params,
        config.estimator.inference,
        seed=config.seed,
        Y=train.Y,
        T=train.T,
        X=train.X_xarray(),
        cells=train.cells,
        log=lambda m: log(f"      {m}"),
    )
    lap("fit")

    log(f"[4/5] estimating effects of the scenario {scenario.describe('m/s')}")
    truth_all = sim.window_effects(t1_all, seqs.cells, seqs.starts, seqs.window)
    estimates = evaluation.estimate(est, seqs.X, seqs.T, t1_all, alpha=config.alpha)
    effect_all, lower_all, upper_all = estimates.effect, estimates.lower, estimates.upper
    y_pred_all = est.predict(seqs.X, seqs.T)
    lap("effects")

    metrics = _metrics(config, seqs, train, test, test_idx, est, truth_all, effect_all,
                       lower_all, upper_all, y_pred_all)  # fmt: skip
    metrics["overlap"] = overlap
    lap("score")

    log(f"[5/5] writing outputs to {out}")
    _write_outputs(out, config, sim, seqs, test_idx, est, truth_all, effect_all, lower_all,
                   upper_all, metrics, t1_all)  # fmt: skip
    lap("write")
    from kgcm.experiments.outputs import write_run_json

    write_run_json(
        out,
        command="demo",
        seed=config.seed,
        estimator=config.estimator.name,
        seconds=seconds,
        arctic_seed=config.arctic.seed,
        overlap=overlap,
    )
    from kgcm.experiments.report import write_report

    write_report(out, log=log)  # inside the transaction: the manifest covers the report too
    return DemoResult(metrics=metrics, out_dir=out, seconds=seconds)


def _metrics(
    config: DemoConfig,
    seqs: SequenceSet,
    train: SequenceSet,
    test: SequenceSet,
    test_idx: np.ndarray,
    est: Any,
    truth_all: np.ndarray,
    effect_all: np.ndarray,
    lower_all: np.ndarray | None,
    upper_all: np.ndarray | None,
    y_pred_all: np.ndarray,
) -> dict[str, dict[str, float]]:
    truth = truth_all[test_idx]
    on_test = evaluation.Estimates(
        effect_all[test_idx],
        None if lower_all is None else lower_all[test_idx],
        None if upper_all is None else upper_all[test_idx],
    )
    model_row = evaluation.score(truth, on_test, test.Y, y_pred_all[test_idx])
    zero_row = evaluation.zero_reference(truth, (train.Y, train.T, train.X), test.X, test.T, test.Y)
    return {
        config.estimator.name: model_row,
        "zero-effect": zero_row,
        "truth": {
            "ate": float(truth.mean()),
            "effect_rms": float(np.sqrt(np.mean(truth**2))),
            "effect_sd": float(truth.std()),
            "n_units": len(test_idx),
            "n_steps": int(truth.size),
        },
    }


def _write_outputs(
    out: Path,
    config: DemoConfig,
    sim: ArcticSimulation,
    seqs: SequenceSet,
    test_idx: np.ndarray,
    est: Any,
    truth_all: np.ndarray,
    effect_all: np.ndarray,
    lower_all: np.ndarray | None,
    upper_all: np.ndarray | None,
    metrics: dict[str, dict[str, float]],
    t1_all: np.ndarray,
) -> None:
    from kgcm import plots

    atomic_write_text(out / "config.toml", dump_toml(config))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    est.save(out / "model.kgcm")

    from kgcm.experiments.outputs import effects_dataset, heldout_share, write_effects

    scenario = config.scenario
    is_test = np.zeros(seqs.n_units, dtype=bool)
    is_test[test_idx] = True
    heldout = np.zeros(seqs.template.shape[1:], dtype=bool)
    heldout[tuple(seqs.cells[is_test].T)] = True

    def grid(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else seqs.to_grid(values, "v").values

    ds = effects_dataset(
        seqs.template,
        outcome="sithick",
        effect=grid(effect_all),
        lower=grid(lower_all),
        upper=grid(upper_all),
        true_effect=grid(truth_all),
        factual=grid(seqs.Y),
        counterfactual=grid(seqs.Y + effect_all),
        treatment=grid(seqs.T),
        treatment_scenario=grid(t1_all),
        heldout=heldout_share(seqs, is_test),
        scenario=f"{scenario.describe('m/s')} (window-level intervention)",
        estimator=config.estimator.name,
        title="kgcm demo: estimated and exact effects on the arctic simulator",
        alpha=config.alpha,
        units="m",
        treatment_units="m s-1",
        overlap=metrics.get("overlap"),
        source=f"kgcm {__version__} demo, estimator {config.estimator.name}",
        history=f"kgcm demo (seed {config.seed}, arctic seed {config.arctic.seed})",
    )
    ds["sithick"].attrs["standard_name"] = "sea_ice_thickness"
    write_effects(ds, out / "effects.nc")

    heldout_da = xr.DataArray(heldout, dims=("y", "x"))
    plots.effect_map(ds["effect"], ds["true_effect"], out / "effect_map.png", heldout=heldout_da)
    cell = _example_cell(seqs, test_idx, truth_all)
    sel = np.flatnonzero((seqs.cells == cell).all(axis=1))
    sel = sel[np.argsort(seqs.starts[sel])]
    times = seqs.template["time"].values[seqs.step_index()[sel].ravel()]
    y = seqs.Y[sel].ravel()
    e = effect_all[sel].ravel()
    lo = lower_all[sel].ravel() if lower_all is not None else e
    hi = upper_all[sel].ravel() if upper_all is not None else e
    plots.effect_timeseries(
        times, y, y + e, y + lo, y + hi, out / "effect_timeseries.png",
        true_counterfactual=y + truth_all[sel].ravel(),
        title=f"SIT at held-out cell (y={cell[0]}, x={cell[1]}): {scenario.describe('m/s')}",
        interval_label=f"{1 - config.alpha:.0%} interval",
    )  # fmt: skip


def _example_cell(seqs: SequenceSet, test_idx: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The held-out cell with the largest mean true effect (the most telling picture)."""
    cells = seqs.cells[test_idx]
    strength = np.abs(truth[test_idx]).mean(axis=1)
    unique, inverse = np.unique(cells, axis=0, return_inverse=True)
    per_cell = np.bincount(inverse.ravel(), weights=strength) / np.bincount(inverse.ravel())
    return unique[int(np.argmax(per_cell))]


def metrics_table(metrics: dict[str, dict[str, float]]) -> list[list[str]]:
    """Rows (name, PEHE, ATE error, factual RMSE, coverage, width) for printing."""
    rows = []
    for name, row in metrics.items():
        if name in ("truth", "overlap"):
            continue
        rows.append([
            name,
            f"{row['pehe']:.4f}",
            f"{row['ate_error']:.4f}",
            f"{row['factual_rmse']:.4f}",
            f"{row['coverage']:.3f}" if "coverage" in row else "n/a",
            f"{row['interval_width']:.4f}" if "interval_width" in row else "n/a",
        ])  # fmt: skip
    return rows
