"""``kgcm benchmark`` and ``kgcm ablate``: datasets × estimators × seeds, with error bars.

Every cell of the grid (dataset, estimator, seed) is one job: build the dataset for that seed,
fit the estimator on its training units, and score on held-out units against exact effects:

- ``pehe``: root mean squared error of the effect, raw units; ``ate_error``: |mean error|;
- ``factual_rmse``: the model's prediction of the observed outcome;
- ``coverage``, ``width``, ``median_width``: of the ``1 − alpha`` effect interval, where the
  estimator has one (mean and median width); ``coverage_90``: of its 90% interval, a second
  level scored from the same fit (the same as ``coverage`` when ``alpha`` is 0.10);
- ``cf_rmse_1``, ``cf_rmse_tau``: counterfactual-outcome RMSE one step and ``tau`` steps after a
  treatment scenario starts (the time-varying field's metric, as in CRN and the Causal
  Transformer): the scenario keeps the factual path up to step ``s`` and replaces it from ``s``;
  the model predicts the outcome under that path (``predict(X, T1)``), compared with the exact
  counterfactual outcome at steps ``s`` and ``s + tau − 1``.

Jobs run in parallel (joblib, one torch thread per worker), each result is written to its own
JSON file as soon as it is done, and finished cells are not rerun: an interrupted benchmark
continues where it stopped; a stored cell is reused only when its settings and the code (kgcm
version, git revision, uncommitted changes: :mod:`kgcm.provenance`) are the current ones. At the
end: ``results.csv`` (one row per run, with its ``kgcm_version`` and ``code_revision``),
``table.md`` (mean ± sd and n per dataset and estimator), ``paired.md`` (the reference
estimator minus each other, per seed, with a t-interval across seeds) and ``pehe.png``.

Datasets (``kind``):

- ``arctic``: the gridded simulator (``params``: any :class:`ArcticConfig` field, plus ``window``,
  ``test_fraction``, ``scale`` of the effect scenario ``T1 = scale·T0``); the world's seed is
  the run's seed;
- ``arctic-forecast``: forecasts under a treatment plan on the gridded simulator (``params``:
  any :class:`ArcticConfig` field, e.g. the feedback knobs ``ocean_feedback`` and
  ``ice_feedback``, plus ``history`` (k, default 20) and ``horizon`` (h, default 10) steps per
  window, ``test_fraction``, ``scale`` of the plan ``T1 = scale·T0`` on the plan steps (default
  1.5) and ``scope``: ``"field"`` (default: the plan applies to every cell from the window's
  step k on, a regional scenario, so the ocean's feedback reaches each cell from its
  neighbours too) or ``"cell"`` (the unit's cell only)). Training units are whole windows of
  ``k + h`` steps; each test unit gives its first k steps of X and Y and both plans, and is
  scored on the h plan steps against the exact re-simulated potential outcomes (same noise
  draws, covariates evolving under the plan with the feedback). ``factual_rmse`` is then the
  fit on the history; the ``cf_rmse_*`` metrics are not computed;
- ``seaice``: the physics world (sea ice simulated by veris; needs ``kgcm[physics]``;
  ``params``: any :class:`SeaIceConfig` field, plus ``window``, ``test_fraction``, ``scenario``
  (an :class:`OceanScenario` kind, default ``"scale_currents"``), ``scale`` (its value, default
  1.5) and ``cache_dir`` (where worlds are kept as Zarr, default ``runs/worlds``); the world's
  seed is the run's seed. Covariates: SSH, currents, the observed atmospheric fields and
  latitude; land cells are dropped. Each test window's effect is an exact re-run of the physics
  from the factual state at the window's start with the scenario's ocean;
- ``paper``: the paper protocol on the stand-in series or a CSV (``params``: ``recipe``, ``lag``,
  ``csv``); the treatment noise seed is the run's seed;
- ``ihdp``: IHDP replication ``seed % 10 + 1`` (``params``: ``path``, and ``split``,
  ``split_seed``, ``test_fraction`` of :func:`kgcm.synthetic.ihdp.load_ihdp`), static (t = 1),
  binary treatment, out-of-sample on the 10% test split.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kgcm import provenance
from kgcm._io import atomic_write_text, check_name
from kgcm.config import check_estimator_params, dump_toml
from kgcm.errors import ConfigError, InputError, KgcmError, did_you_mean
from kgcm.synthetic.tasks import BUILDERS, Task

__all__ = [
    "AblateConfig",
    "BenchmarkConfig",
    "DatasetSpec",
    "EstimatorSpec",
    "Task",
    "ablation_estimators",
    "make_task",
    "paired_differences",
    "run_benchmark",
    "summarise",
]

#: dataset kinds: the tasks the registry builds (kgcm.synthetic.tasks)
KINDS = tuple(BUILDERS)
METRICS = (
    "pehe",
    "ate_error",
    "factual_rmse",
    "coverage",
    "width",
    "cf_rmse_1",
    "cf_rmse_tau",
    "coverage_90",
    "median_width",
)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the grid: a ``name`` for the tables, a ``kind`` and its ``params``."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name, "dataset name")  # it becomes a folder under cells/
        if self.kind not in KINDS:
            raise ConfigError(
                f"dataset {self.name!r}: kind must be one of {KINDS}; got {self.kind!r}."
            )


@dataclass(frozen=True)
class EstimatorSpec:
    """One estimator of the grid: registry ``name``, a ``label`` for tables, its ``params``."""

    name: str
    label: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    #: the interval strategy (kgcm.inference); {} is the estimator's own
    inference: dict[str, Any] = field(default_factory=dict)
    #: values to try per param for ``kgcm tune`` (kgcm.experiments.tuning); not read by a
    #: benchmark run, which evaluates ``params``
    search: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.key, "estimator label")  # it becomes a folder under cells/
        check_estimator_params(self.params, f"estimators.{self.key}.params")
        if "seed" in self.search:
            raise ConfigError(
                f"estimators.{self.key}.search lists seed; the run's seeds set the estimator's "
                f"seed, so a seed is not a knob to tune. Remove it from the search."
            )
        from kgcm.inference import Inference

        Inference.coerce(self.inference or None)

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark grid. ``reference`` is the estimator label compared with every other one in
    ``paired.md``; ``n_jobs`` workers run cells in parallel; ``tau`` is the horizon of
    ``cf_rmse_tau``.

    ``seeds`` are the worlds the table is evaluated on; ``tuning_seeds`` (optional) names the
    worlds every choice behind the table was made on (defaults, architectures, thresholds). The
    two must be disjoint, so a table never reports a world it was tuned on: a ``--set seeds=``
    that reaches into the tuning worlds is refused. Both are written at the top of
    ``table.md``.
    """

    name: str = "benchmark"
    datasets: tuple[DatasetSpec, ...] = ()
    estimators: tuple[EstimatorSpec, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    tuning_seeds: tuple[int, ...] = ()
    reference: str = "kgcm-vae"
    n_jobs: int = 2
    tau: int = 5
    alpha: float = 0.05
    out: str = "runs/benchmark"

    def __post_init__(self) -> None:
        if not self.datasets or not self.estimators:
            raise ConfigError("a benchmark needs at least one [[datasets]] and one [[estimators]].")
        keys = [e.key for e in self.estimators]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"estimator labels must be unique; got {keys} (set label = ...).")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"dataset names must be unique; got {names}.")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed.")
        tuned = sorted(set(self.seeds) & set(self.tuning_seeds))
        if tuned:
            raise ConfigError(
                f"seeds {tuned} are tuning worlds of this benchmark (tuning_seeds = "
                f"{list(self.tuning_seeds)}): a table must not be evaluated on the worlds its "
                f"choices were made on. Evaluate on other seeds, or move the choice to other "
                f"tuning worlds and update tuning_seeds."
            )
        if self.tau < 1:
            raise ConfigError(f"tau must be >= 1; got {self.tau}.")
        from kgcm.estimators import list_estimators

        known = list_estimators()
        for e in self.estimators:
            if e.name not in known:
                from kgcm.errors import did_you_mean

                raise ConfigError(
                    f"unknown estimator {e.name!r}; registered: {known}."
                    f"{did_you_mean(e.name, known)}"
                )


# --------------------------------------------------------------------------------------------
# Tasks: one shape for every dataset with known truth, built next to its simulator


def make_task(spec: DatasetSpec, seed: int, *, base_dir: Path | None = None) -> Task:
    """Build the arrays of ``spec`` for ``seed`` (deterministic; :mod:`kgcm.synthetic.tasks`)."""
    from kgcm.synthetic.tasks import make_task as build

    return build(spec.kind, dict(spec.params), seed, base_dir)


# --------------------------------------------------------------------------------------------
# One cell


def run_cell(
    dataset: DatasetSpec,
    estimator: EstimatorSpec,
    seed: int,
    *,
    tau: int,
    alpha: float,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Fit and score one (dataset, estimator, seed); never raises for a method that cannot run
    on the data (recorded as ``status``)."""
    from kgcm import metrics
    from kgcm.estimators import estimator_class
    from kgcm.experiments import evaluation

    row: dict[str, Any] = {
        "dataset": dataset.name,
        "estimator": estimator.key,
        "method": estimator.name,
        "seed": seed,
    }
    try:
        task = make_task(dataset, seed, base_dir=base_dir)
        accepted = inspect.signature(estimator_class(estimator.name).__init__).parameters
        hints = {k: v for k, v in task.fit_params.items() if k in accepted}
        started = time.perf_counter()
        est = evaluation.fit_estimator(
            estimator.name,
            {**hints, **estimator.params},
            estimator.inference,
            seed=seed,
            Y=task.Y_train,
            T=task.T_train,
            X=task.X_train,
            cells=_grid_cells(task.X_train),
        )
        row["fit_s"] = round(time.perf_counter() - started, 3)
        # a forecast task gives the observed outcome history beside X's
        history = None if task.history is None else task.Y_test
        estimates = evaluation.estimate(
            est, task.X_test, task.T0_test, task.T1_test, alpha=alpha, Y=history
        )
        T_seen = task.T0_test if task.history is None else task.T0_test[:, : task.history]
        scores = evaluation.score(
            task.true_effect,
            estimates,
            task.Y_test,
            est.predict(task.X_test, T_seen),
            score_from=task.score_from,
        )  # the demo's scores, one function
        if "interval_width" in scores:  # results.csv has called it width since it began
            scores["width"] = scores.pop("interval_width")
        row.update(scores)
        if estimates.interval is not None and alpha == 0.10:
            row["coverage_90"] = row["coverage"]
        elif estimates.interval is not None:  # a second level, from the same fit
            lower, upper = est.effect_interval(
                task.X_test, T0=task.T0_test, T1=task.T1_test, alpha=0.10, Y=history
            )
            first = task.score_from
            truth = task.true_effect[:, first:]
            row["coverage_90"] = metrics.interval_coverage(
                truth, lower[:, first:], upper[:, first:]
            )
        if task.history is not None:  # no counterfactual-outcome metric for forecasts
            row["status"] = "ok"
            return row
        y1 = est.predict(task.X_test, task.cf_T1, factual=task.T0_test)
        s = task.cf_start
        row["cf_rmse_1"] = metrics.rmse(task.cf_Y1[:, s], y1[:, s])
        if s + tau - 1 < y1.shape[1]:
            row["cf_rmse_tau"] = metrics.rmse(task.cf_Y1[:, s + tau - 1], y1[:, s + tau - 1])
        row["status"] = "ok"
    except (InputError, ConfigError) as exc:
        row["status"] = f"not applicable: {exc}"
    except KgcmError as exc:
        row["status"] = f"error: {exc}"
    except Exception as exc:  # a crash is recorded with its traceback, the grid goes on
        row["status"] = f"error: {exc.__class__.__name__}: {exc}"
        row["traceback"] = traceback.format_exc(limit=5)
    return row


def _inference_key(inference: dict[str, Any]) -> dict[str, Any]:
    """The strategy's part of a fingerprint: nothing for the model's own intervals (so ``{}``
    and ``{method = "model"}`` are the same run), a refitting strategy's full settings
    otherwise."""
    from kgcm.inference import Inference

    strategy = Inference.coerce(inference or None)
    return {} if strategy.method == "model" else {"inference": strategy.to_dict()}


def _grid_cells(X: Any) -> np.ndarray | None:
    """Each unit's (row, column) from a gridded task's X (None for other tasks)."""
    coords = getattr(X, "coords", {})
    if "cell_y" in coords and "cell_x" in coords:
        return np.stack([coords["cell_y"].values, coords["cell_x"].values], axis=1)
    return None


def _cell_path(out: Path, dataset: str, estimator: str, seed: int) -> Path:
    return out / "cells" / dataset / estimator / f"seed-{seed}.json"


def cell_spec(
    dataset: DatasetSpec,
    estimator: EstimatorSpec,
    tau: int,
    alpha: float,
    code: dict[str, str] | None = None,
) -> str:
    """Fingerprint of the settings a cell was run with (dataset and its params, estimator name
    and params, ``tau``, ``alpha``) and of the code that ran it (``code``, default
    :func:`kgcm.provenance.code_fingerprint`: kgcm version, git revision, uncommitted changes).
    A stored cell counts as done only when its fingerprint matches the current config and code,
    so editing a config reruns exactly the cells it changes, and a code change reruns them all.
    """
    settings = {
        "dataset": asdict(dataset),
        "estimator": {"name": estimator.name, "params": estimator.params}
        | _inference_key(estimator.inference),
        "tau": tau,
        "alpha": alpha,
        "code": provenance.code_fingerprint() if code is None else code,
    }
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _stored_spec(path: Path) -> str | None:
    """The fingerprint of a stored cell; None when absent or unreadable (then it is rerun)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("spec")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


_WATCHED: list[int] = []


def _exit_with(main_pid: int) -> None:
    """In a worker process: exit as soon as the benchmark process ``main_pid`` is gone.

    A benchmark killed with SIGKILL cannot tell its workers to stop; without this they finish
    their cell (minutes) and write it. The check runs in a daemon thread, once per worker.
    """
    import threading

    if _WATCHED or os.getpid() == main_pid:
        return  # already watching, or the benchmark process itself (n_jobs = 1)
    _WATCHED.append(main_pid)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # pragma: no cover - the pid now belongs to someone else
                os._exit(1)

    threading.Thread(target=watch, name="kgcm-exit-with-benchmark", daemon=True).start()


def _run_and_store(
    path: Path,
    dataset: DatasetSpec,
    estimator: EstimatorSpec,
    seed: int,
    tau: int,
    alpha: float,
    base_dir: Path | None,
    main_pid: int | None = None,
    code: dict[str, str] | None = None,
) -> dict[str, Any]:
    import torch

    if main_pid is not None:
        _exit_with(main_pid)
    torch.set_num_threads(1)  # one core per worker: n_jobs workers share the machine
    row = run_cell(dataset, estimator, seed, tau=tau, alpha=alpha, base_dir=base_dir)
    code = provenance.code_fingerprint() if code is None else code
    row["kgcm_version"] = code["kgcm_version"]
    row["code_revision"] = code["code_revision"]
    row["spec"] = cell_spec(dataset, estimator, tau, alpha, code)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(row, default=float) + "\n")
    return row


def run_benchmark(
    config: BenchmarkConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every missing cell, then write ``results.csv``, ``table.md``, ``paired.md`` and
    ``pehe.png`` to the output folder. Returns the tidy results.

    The folder is locked for the run (a second run on it gets an "in use" error); a grid whose
    every cell fails is an error, not a table of "not applicable"."""

    from kgcm._io import OutputLock

    out_dir = Path(out or config.out)
    base = Path(base_dir) if base_dir is not None else None
    check_settings(config, base)
    searched = [e.key for e in config.estimators if e.search]
    if searched:  # said, not silently skipped: the search is kgcm tune's, not this run's
        log(
            f"estimators {searched} have a search: this run evaluates their params as "
            f"configured, untuned. To evaluate the tuned ones, run kgcm tune on this config "
            f"and kgcm benchmark --config on the tuned.toml it writes."
        )
    # one run per folder at a time; its cells are kept between runs (that is the resume), so
    # the folder is claimed with a marker rather than replaced
    with OutputLock(out_dir):
        _claim(out_dir)
        results = _run_grid(config, out_dir, base, log=log, progress=progress)
    failed = results[results["status"] != "ok"]
    if len(failed) == len(results):
        first = failed["status"].iloc[0]
        raise ConfigError(
            f"no cell of the benchmark ran: all {len(results)} failed or were not applicable "
            f"(first: {first[:300]}). Check the datasets and estimator params; per-cell "
            f"statuses are in {out_dir / 'results.csv'}."
        )
    return results


def check_settings(config: BenchmarkConfig, base: Path | None) -> None:
    """Refuse mistakes in the grid's settings before anything runs (a typo in a parameter would
    otherwise make every cell "not applicable" and the run look successful)."""
    import inspect

    from kgcm.config import from_dict
    from kgcm.estimators import make_estimator
    from kgcm.synthetic.arctic import ArcticConfig, evaluation_design, forecast_settings
    from kgcm.synthetic.ihdp import load_ihdp
    from kgcm.synthetic.paper import PAPER_TASK_PARAMS

    keys = [e.key for e in config.estimators]
    if config.reference not in keys:
        raise ConfigError(
            f"reference {config.reference!r} is not an estimator label of the grid; have "
            f"{keys}.{did_you_mean(config.reference, keys)}"
        )
    for e in config.estimators:
        try:
            make_estimator(e.name, seed=config.seeds[0], **e.params)
        except ConfigError as exc:
            raise ConfigError(f"estimator {e.key!r}: {exc}") from exc
    for d in config.datasets:
        params = dict(d.params)
        if d.kind == "arctic":
            params.pop("test_fraction", None)
            evaluation_design(params, int(params.pop("window", 30)))  # pops its own keys
            from_dict(ArcticConfig, {**params, "seed": 0}, where=f"datasets.{d.name}.params")
            continue
        if d.kind == "arctic-forecast":
            forecast_settings(params)
            from_dict(ArcticConfig, {**params, "seed": 0}, where=f"datasets.{d.name}.params")
            continue
        if d.kind == "seaice":  # the world is built only when a cell runs
            from kgcm.synthetic.seaice import seaice_task_settings

            seaice_task_settings(params, 0, base)
            continue
        allowed = {"paper": PAPER_TASK_PARAMS}.get(
            d.kind, {"path"} | set(inspect.signature(load_ihdp).parameters) - {"path_or_dir"}
        )
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ConfigError(
                f"dataset {d.name!r} ({d.kind}): unknown params {unknown}; valid: "
                f"{sorted(allowed)}.{did_you_mean(unknown[0], allowed)}"
            )


def _claim(out_dir: Path) -> None:
    """Use ``out_dir`` for a benchmark only if it is absent, empty or a benchmark folder."""
    from kgcm._io import check_replaceable, read_marker, write_marker

    legacy = read_marker(out_dir) is None and (out_dir / "cells").is_dir()
    if not legacy:
        check_replaceable(out_dir, "benchmark", overwrite=True)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if read_marker(out_dir) is None:
            write_marker(out_dir, "benchmark", files=False)
    except OSError as exc:
        from kgcm.errors import OutputError

        raise OutputError(
            f"cannot write the benchmark folder {out_dir}: {exc.strerror or exc}; choose a "
            f"writable --out."
        ) from exc


def _run_grid(
    config: BenchmarkConfig,
    out_dir: Path,
    base: Path | None,
    *,
    log: Callable[[str], None],
    progress: bool,
) -> pd.DataFrame:
    from joblib import Parallel, delayed

    atomic_write_text(out_dir / "config.toml", dump_toml(config))
    code = provenance.code_fingerprint()  # once: the workers get it rather than ask git again
    cells = [(d, e, s) for d in config.datasets for e in config.estimators for s in config.seeds]
    # seed-major order: a run stopped part-way leaves every estimator with about the same n
    todo, stale = [], 0
    for s in config.seeds:
        for d in config.datasets:
            for e in config.estimators:
                path = _cell_path(out_dir, d.name, e.key, s)
                if _stored_spec(path) != cell_spec(d, e, config.tau, config.alpha, code):
                    todo.append((d, e, s))
                    stale += path.exists()
    log(
        f"{len(cells)} runs ({len(config.datasets)} datasets x {len(config.estimators)} "
        f"estimators x {len(config.seeds)} seeds); {len(cells) - len(todo)} done already, "
        f"{len(todo)} to run on {config.n_jobs} workers"
        + (f" ({stale} stored with other settings or by an older kgcm: rerun)" if stale else "")
    )
    if todo:
        jobs = (
            delayed(_run_and_store)(
                _cell_path(out_dir, d.name, e.key, s),
                d,
                e,
                s,
                config.tau,
                config.alpha,
                base,
                os.getpid(),
                code,
            )
            for d, e, s in todo
        )
        runner = Parallel(n_jobs=config.n_jobs, return_as="generator_unordered")
        from kgcm._progress import progress_bar

        with progress_bar(progress, "runs", len(todo)) as advance:
            for row in runner(jobs):
                status = "" if row["status"] == "ok" else f" [{row['status'][:60]}]"
                log(
                    f"{row['dataset']} / {row['estimator']} / seed {row['seed']}: "
                    f"PEHE {row.get('pehe', float('nan')):.4g}{status}"
                )
                advance()
    rows = [json.loads(_cell_path(out_dir, d.name, e.key, s).read_text()) for d, e, s in cells]
    results = pd.DataFrame(rows)
    for m in (*METRICS, "fit_s"):
        if m not in results:
            results[m] = np.nan
    _write_reports(results, config, out_dir)
    return results


# --------------------------------------------------------------------------------------------
# Reports


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd and n of every metric per (dataset, estimator), over finished runs."""
    ok = results[results["status"] == "ok"]
    grouped = ok.groupby(["dataset", "estimator"], sort=False)
    parts = {}
    for m in (*METRICS, "fit_s"):
        parts[(m, "mean")] = grouped[m].mean()
        parts[(m, "sd")] = grouped[m].std(ddof=1)
        parts[(m, "n")] = grouped[m].count()
    return pd.DataFrame(parts)


def paired_differences(
    results: pd.DataFrame, reference: str, metric: str = "pehe", level: float = 0.95
) -> pd.DataFrame:
    """Per dataset and other estimator: ``reference − other`` over the seeds both finished.

    Columns: ``mean_diff``, ``sd_diff``, ``n``; ``lower``/``upper``, the uncorrected t-interval
    at ``level``; ``p_value``, the two-sided paired t-test; ``p_holm``, Holm-adjusted across
    every comparison of the table (all datasets and estimators together, ``family`` of them);
    ``lower_corrected``/``upper_corrected``, Bonferroni t-intervals at ``1 − (1 − level) /
    family`` (simultaneous coverage at least ``level``); ``excludes_zero``, Holm's decision
    (``p_holm < 1 − level``). Negative differences mean the reference has the lower error.
    """
    from scipy import stats

    from kgcm.metrics import holm

    ok = results[results["status"] == "ok"]
    rows = []
    for dataset, group in ok.groupby("dataset", sort=False):
        wide = group.pivot_table(index="seed", columns="estimator", values=metric)
        if reference not in wide:
            continue
        means = wide.mean()
        others = [c for c in wide.columns if c != reference]
        best = min(others, key=lambda c: means[c]) if others else None
        for other in others:
            d = (wide[reference] - wide[other]).dropna()
            n = len(d)
            mean = float(d.mean()) if n else np.nan
            sd = float(d.std(ddof=1)) if n > 1 else np.nan
            if n < 2:
                p = np.nan
            elif sd > 0:
                p = float(2 * stats.t.sf(abs(mean) / (sd / np.sqrt(n)), n - 1))
            else:  # identical differences on every seed
                p = 1.0 if mean == 0 else 0.0
            rows.append(
                {
                    "dataset": dataset,
                    "reference": reference,
                    "other": other,
                    "n": n,
                    "mean_diff": mean,
                    "sd_diff": sd,
                    "p_value": p,
                    "best_other": other == best,
                }
            )
    columns = ["dataset", "reference", "other", "n", "mean_diff", "sd_diff", "lower", "upper"]
    columns += ["p_value", "p_holm", "family", "lower_corrected", "upper_corrected"]
    columns += ["best_other", "excludes_zero"]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    family = int(table["p_value"].notna().sum())
    table["p_holm"] = holm(table["p_value"].to_numpy())
    table["family"] = family
    alpha = 1.0 - level
    for suffix, a in (("", alpha), ("_corrected", alpha / max(family, 1))):
        ok_n = table["n"] > 1
        half = np.full(len(table), np.nan)
        half[ok_n] = (
            stats.t.ppf(1 - a / 2, table.loc[ok_n, "n"] - 1)
            * table.loc[ok_n, "sd_diff"]
            / np.sqrt(table.loc[ok_n, "n"])
        )
        table["lower" + suffix] = table["mean_diff"] - half
        table["upper" + suffix] = table["mean_diff"] + half
    table["excludes_zero"] = (table["p_holm"] < alpha).to_numpy(dtype=bool)
    return table[columns]


def _fmt(mean: float, sd: float, n: int) -> str:
    if not n or np.isnan(mean):
        return ""
    return f"{mean:.4g} ± {sd:.2g} ({n})" if n > 1 else f"{mean:.4g} (1)"


def _write_reports(results: pd.DataFrame, config: BenchmarkConfig, out: Path) -> None:
    from kgcm._io import atomic_path

    cols = [
        "dataset",
        "estimator",
        "method",
        "seed",
        *METRICS,
        "fit_s",
        "status",
        "kgcm_version",
        "code_revision",
    ]
    with atomic_path(out / "results.csv") as tmp:
        results[[c for c in cols if c in results]].to_csv(tmp, index=False)
    summary = summarise(results)
    tuning = (
        f"; tuning worlds (choices made there, never evaluated here): "
        f"{', '.join(map(str, config.tuning_seeds))}"
        if config.tuning_seeds
        else ""
    )
    lines = [
        f"# {config.name}",
        "",
        f"Seeds run: {', '.join(map(str, config.seeds))}{tuning}.",
        "",
        f"mean ± sd (n seeds) over finished runs; lower is better except coverage (of the "
        f"{1 - config.alpha:.0%} interval) and coverage_90 (of the 90% one).",
        "",
    ]
    shown = ("pehe", "ate_error", "factual_rmse", "coverage", "coverage_90", "median_width")
    shown += ("cf_rmse_1", "cf_rmse_tau", "fit_s")
    for dataset in results["dataset"].unique():
        lines += [
            f"## {dataset}",
            "",
            "| estimator | " + " | ".join(shown) + " |",
            "|---|" + "---|" * len(shown),
        ]
        for est in results.loc[results["dataset"] == dataset, "estimator"].unique():
            if (dataset, est) not in summary.index:
                status = results.loc[
                    (results["dataset"] == dataset) & (results["estimator"] == est), "status"
                ].iloc[0]
                lines.append(f"| {est} | {status[:80]} |" + " |" * (len(shown) - 1))
                continue
            r = summary.loc[(dataset, est)]
            cells = [_fmt(r[(m, "mean")], r[(m, "sd")], int(r[(m, "n")])) for m in shown]
            lines.append(f"| {est} | " + " | ".join(cells) + " |")
        lines.append("")
    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    paired = paired_differences(results, config.reference)
    family = int(paired["family"].iloc[0]) if len(paired) else 0
    plines = [
        f"# Paired PEHE differences: {config.reference} minus each other estimator",
        "",
        "Per seed on the same data: mean and sd across seeds, the uncorrected 95% t-interval, "
        f"the paired t-test's p-value adjusted by Holm across all {family} comparisons of this "
        "table, and the Bonferroni-corrected interval (simultaneous 95%). Negative: "
        f"{config.reference} has the lower error. * marks the best other estimator; "
        "'excludes 0' is Holm's decision at 5%.",
        "",
        "| dataset | other | n | mean diff | sd | 95% interval | p (Holm) "
        "| corrected interval | excludes 0 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in paired.itertuples():
        mark = " *" if r.best_other else ""
        plines.append(
            f"| {r.dataset} | {r.other}{mark} | {r.n} | {r.mean_diff:.4g} | "
            f"{r.sd_diff:.2g} | [{r.lower:.4g}, {r.upper:.4g}] | {r.p_holm:.3g} | "
            f"[{r.lower_corrected:.4g}, {r.upper_corrected:.4g}] | "
            f"{'yes' if r.excludes_zero else 'no'} |"
        )
    atomic_write_text(out / "paired.md", "\n".join(plines) + "\n")
    with atomic_path(out / "paired.csv") as tmp:
        paired.to_csv(tmp, index=False)
    _figure(summary, out / "pehe.png")


def _figure(summary: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    from kgcm.plots import _save

    datasets = list(dict.fromkeys(summary.index.get_level_values(0)))
    if not datasets:
        return
    fig = Figure(figsize=(4.0 * len(datasets), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(datasets)))
    for ax, dataset in zip(axes, datasets, strict=True):
        part = summary.loc[dataset]
        means, sds = part[("pehe", "mean")], part[("pehe", "sd")].fillna(0.0)
        ax.barh(range(len(means)), means.values, xerr=sds.values, color="tab:blue", alpha=0.7)
        ax.set_yticks(range(len(means)), list(means.index), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel("PEHE (mean ± sd over seeds)")
    _save(fig, path)


# --------------------------------------------------------------------------------------------
# Ablation


@dataclass(frozen=True)
class AblateConfig:
    """KGCM-VAE with each switchable part on and off, on the same datasets and seeds.

    ``factors`` picks which parts vary (all four by default): ``mmd`` (weight ``mmd_weight`` 0.1 or
    0), ``adjacency`` (``"physics"`` or ``"off"``), ``prior`` (the learned ``"autonomous"``
    prior, the default, or ``"standard"``), ``decoder`` (on or off). ``params`` are shared by
    every variant.
    """

    name: str = "ablation"
    datasets: tuple[DatasetSpec, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    factors: tuple[str, ...] = ("mmd", "adjacency", "prior", "decoder")
    params: dict[str, Any] = field(default_factory=dict)
    n_jobs: int = 2
    tau: int = 5
    alpha: float = 0.05
    out: str = "runs/ablation"

    def __post_init__(self) -> None:
        unknown = set(self.factors) - {"mmd", "adjacency", "prior", "decoder"}
        if unknown:
            raise ConfigError(
                f"unknown ablation factors {sorted(unknown)}; choose from mmd, "
                f"adjacency, prior, decoder."
            )
        check_estimator_params(self.params, "params")


def ablation_estimators(config: AblateConfig) -> tuple[EstimatorSpec, ...]:
    """Every on/off combination of the chosen factors; the full model first."""
    import itertools

    options = {
        # the paper's balancing weight, against none (the library default since the tuning
        # worlds of configs/tuning-kgcm-vae.toml)
        "mmd": [("mmd", {"mmd_weight": 0.1}), ("no-mmd", {"mmd_weight": 0.0})],
        "adjacency": [("adj", {"adjacency": "physics"}), ("no-adj", {"adjacency": "off"})],
        "prior": [
            ("learned-prior", {"prior": "autonomous"}),
            ("std-prior", {"prior": "standard"}),
        ],
        "decoder": [("decoder", {"decoder": True}), ("no-decoder", {"decoder": False})],
    }
    specs = []
    for combo in itertools.product(*(options[f] for f in config.factors)):
        label = "+".join(name for name, _ in combo)
        params = dict(config.params)
        for _, p in combo:
            params.update(p)
        specs.append(EstimatorSpec(name="kgcm-vae", label=label, params=params))
    return tuple(specs)


def ablation_benchmark(config: AblateConfig) -> BenchmarkConfig:
    """The benchmark grid of an ablation; the full model is the paired reference."""
    specs = ablation_estimators(config)
    return BenchmarkConfig(
        name=config.name,
        datasets=config.datasets,
        estimators=specs,
        seeds=config.seeds,
        reference=specs[0].key,
        n_jobs=config.n_jobs,
        tau=config.tau,
        alpha=config.alpha,
        out=config.out,
    )


def with_out(config: BenchmarkConfig, out: str) -> BenchmarkConfig:
    return replace(config, out=out)
