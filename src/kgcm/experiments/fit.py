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

from kgcm._io import atomic_path, atomic_write_bytes, atomic_write_text, output_folder
from kgcm.config import EstimatorConfig, ScenarioConfig, dump_toml, from_dict, read_mapping
from kgcm.errors import ConfigError, DataError, OutputError
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
    metrics: dict[str, float]


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
) -> FitResult:
    """Fit the configured estimator on the prepared store and write the run folder.

    The folder is a transaction (:func:`kgcm._io.output_folder`): written complete beside it and
    moved into place at the end, so a failed, killed or concurrent run never leaves a mix.
    """
    target = Path(out_dir)
    with output_folder(target, "fit") as staging:
        result = _run_fit(
            config,
            staging,
            base_dir=base_dir,
            log=lambda m: log(m.replace(str(staging), str(target))),
        )
    return FitResult(out_dir=target, metrics=result.metrics)


def _run_fit(
    config: FitConfig,
    out_dir: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None,
    log: Log,
) -> FitResult:
    from kgcm.estimators import make_estimator

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
) -> dict[str, Any]:
    """Effects of a treatment scenario for a fitted run; writes ``effects.nc`` and a summary.

    ``units``: ``"all"`` or ``"test"`` (held-out units only). The run folder's files are checked
    against the hashes the fit recorded; the effect files are written as one transaction (into
    the run folder by default, or beside ``out``), so a killed run leaves the old set or the new.
    """
    from kgcm._io import read_marker, verify_folder, write_marker

    run = Path(run_dir)
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1
    ):
        raise ConfigError(f"alpha must be a number in (0, 1), e.g. 0.05; got {alpha!r}.")
    load_run_config(run)
    if read_marker(run) is None and (run / "model.kgcm").is_file():
        log(f"note: {run} predates kgcm's output manifests; recording its files now")
        write_marker(run, "fit")
    verify_folder(run, "fit", ("config.toml", "model.kgcm", "split.npz"))
    out_path = Path(out) if out is not None else run / "effects.nc"

    def run_in(folder: Path) -> dict[str, Any]:
        def relay(msg: str) -> None:
            log(msg.replace(str(folder / out_path.name), str(out_path)))

        summary = _run_effect(
            run, scenario=scenario, units=units, out=folder / out_path.name, alpha=alpha, log=relay
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


def _effect_group(path: Path) -> list[Path]:
    """The files one effect run writes for ``path`` (the summary last)."""
    return [
        path,
        path.with_name(path.stem + "_map.png"),
        path.with_name(path.stem + "_timeseries.png"),
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
    scenario: ScenarioConfig | None,
    units: str,
    out: Path,
    alpha: float | None,
    log: Log,
) -> dict[str, Any]:
    from kgcm.estimators import load

    run = Path(run_dir)
    config = load_run_config(run)
    scenario = scenario or config.scenario
    alpha = config.alpha if alpha is None else alpha
    if units not in ("all", "test"):
        raise ConfigError(f"units must be 'all' or 'test'; got {units!r}.")
    est = load(run / "model.kgcm")
    seqs, _, outcome_units = _sequences(config, None, log)
    try:
        split = np.load(run / "split.npz")
        split = {k: np.asarray(split[k], dtype=np.int64) for k in ("train", "test")}
    except Exception as exc:
        raise DataError(
            f"{run / 'split.npz'} cannot be read ({exc.__class__.__name__}: {exc}); it is damaged "
            f"or missing. Run kgcm fit again."
        ) from exc
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
    log(f"effects of {describe} on {seqs.n_units:,} units")
    if est.gives_intervals():
        effect, lower, upper = est.effect_with_interval(seqs.X, T0=seqs.T, T1=t1, alpha=alpha)
    else:
        effect = est.effect(seqs.X, T0=seqs.T, T1=t1)
        lower = upper = None
    out_path = Path(out) if out is not None else run / "effects.nc"
    ds = _effects_dataset(seqs, config, effect, lower, upper, t1, is_test, alpha, describe)
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
