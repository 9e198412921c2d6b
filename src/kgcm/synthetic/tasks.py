"""One task shape for every dataset with known truth, and where each is built.

A :class:`Task` holds one world's training arrays and its held-out units with their exact
effects; :func:`kgcm.experiments.evaluation` scores an estimator on it, and ``kgcm benchmark``
builds one per (dataset, seed). Each task is built next to its simulator:

- ``arctic`` and ``arctic-forecast``: :func:`kgcm.synthetic.arctic.arctic_task`,
  :func:`kgcm.synthetic.arctic.arctic_forecast_task`;
- ``seaice``: :func:`kgcm.synthetic.seaice.seaice_task`;
- ``paper``: :func:`kgcm.synthetic.paper.paper_task`;
- ``ihdp``: :func:`kgcm.synthetic.ihdp.ihdp_task`.

A builder takes the dataset's ``params`` (a dict it may consume), the seed and the folder
relative paths are read from.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kgcm.errors import ConfigError, did_you_mean

__all__ = ["BUILDERS", "Task", "grid_task", "make_task", "named_features"]

#: dataset kind -> "module:function" building its task
BUILDERS: dict[str, str] = {
    "arctic": "kgcm.synthetic.arctic:arctic_task",
    "arctic-forecast": "kgcm.synthetic.arctic:arctic_forecast_task",
    "seaice": "kgcm.synthetic.seaice:seaice_task",
    "paper": "kgcm.synthetic.paper:paper_task",
    "ihdp": "kgcm.synthetic.ihdp:ihdp_task",
}


@dataclass(frozen=True)
class Task:
    """Arrays of one dataset for one seed (test arrays are the held-out units)."""

    Y_train: np.ndarray
    T_train: np.ndarray
    X_train: Any  # ndarray or DataArray (unit, step, feature)
    X_test: Any  # arctic: DataArrays whose unit dim carries cell_y, cell_x, start
    Y_test: np.ndarray
    T0_test: np.ndarray
    T1_test: np.ndarray
    true_effect: np.ndarray  # (n_test, t): Y(T1) - Y(T0)
    cf_T1: np.ndarray  # scenario path for the counterfactual-outcome metric
    cf_Y1: np.ndarray  # exact outcome under cf_T1
    cf_start: int
    fit_params: dict[str, Any] = field(default_factory=dict)  # dataset-specific hints
    score_from: int = 0  # effects are scored on steps >= score_from (a factual burn-in)
    #: forecast tasks: history steps k (X_test and Y_test cover them; T0/T1_test k + h steps,
    #: true_effect the h plan steps); None for whole-path tasks
    history: int | None = None


def make_task(kind: str, params: dict[str, Any], seed: int, base_dir: Path | None = None) -> Task:
    """Build the task of dataset ``kind`` with ``params`` for ``seed`` (deterministic)."""
    if kind not in BUILDERS:
        raise ConfigError(
            f"unknown dataset kind {kind!r}; choose from {sorted(BUILDERS)}."
            f"{did_you_mean(kind, BUILDERS)}"
        )
    module, name = BUILDERS[kind].split(":")
    builder = getattr(importlib.import_module(module), name)
    return builder(dict(params), seed, base_dir)


def grid_task(
    train: Any,
    test: Any,
    T1: np.ndarray,
    truth: np.ndarray,
    cf_T1: np.ndarray,
    cf_effect: np.ndarray,
    start: int,
) -> Task:
    """The task of a gridded world with exact window effects (``arctic``, ``seaice``)."""
    return Task(
        Y_train=train.Y,
        T_train=train.T,
        # grid indices ride on the unit dim for estimators that read neighbours (gst-unet);
        # the others read the values only
        X_train=train.X_xarray(index=True),
        X_test=test.X_xarray(index=True),
        Y_test=test.Y,
        T0_test=test.T,
        T1_test=T1,
        true_effect=truth,
        cf_T1=cf_T1,
        cf_Y1=test.Y + cf_effect,
        cf_start=start,
    )


def named_features(X: np.ndarray, names: Any) -> Any:
    """``X (unit, step, feature)`` as a DataArray whose ``feature`` coordinate carries the
    covariates' names (estimators that read roles by name take them from there)."""
    import xarray as xr

    return xr.DataArray(X, dims=("unit", "step", "feature"), coords={"feature": list(names)})
