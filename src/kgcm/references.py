"""Reference forecasts of the factual outcome that any fitted model must beat.

A model that forecasts the observed outcome worse than its day-of-year climatology is not to be
believed about a counterfactual one. ``kgcm fit`` scores these beside the estimator on the
held-out units, with the same units and steps:

- **climatology** (recent and full): the mean outcome of each cell by day of year over the
  training steps (all of them, or the latest ``years``), smoothed over ``smooth_days``;
- **persistence**: the last value before each window, held for the whole window;
- **linear**: a ridge regression (penalty by cross-validation) of the outcome on the same
  covariates and treatment the estimator sees, step by step.

Every function is pure and vectorised: per-(day of year, cell) tables are built with
``np.add.at`` and looked up with fancy indexing, never a loop over cells or steps.
Skill is ``1 - (RMSE / RMSE_reference)²`` (the mean-squared-error skill score): above 0 is better
than the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kgcm.errors import InputError

__all__ = [
    "ReferenceScore",
    "climatology_table",
    "linear_reference",
    "lookup",
    "rmse",
    "skill",
]

N_DOY = 366


@dataclass(frozen=True)
class ReferenceScore:
    """One forecast's held-out score: ``rmse`` in the outcome's units, ``skill`` against the
    recent climatology (None for that climatology itself)."""

    name: str
    description: str
    rmse: float
    skill: float | None


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root-mean-square error over every finite pair."""
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    err = err[np.isfinite(err)]
    if err.size == 0:
        raise InputError("no finite (prediction, truth) pairs to score.")
    return float(np.sqrt(np.mean(err**2)))


def skill(score: float, reference: float) -> float:
    """Mean-squared-error skill score ``1 - (score / reference)²``."""
    return float(1.0 - (score / reference) ** 2) if reference > 0 else float("nan")


def climatology_table(
    values: np.ndarray, doy: np.ndarray, use: np.ndarray, *, smooth_days: int = 15
) -> np.ndarray:
    """Mean of ``values`` by day of year and cell over the steps marked in ``use``.

    Parameters
    ----------
    values : (n_times, n_cells)
    doy : (n_times,) day of year, 1-366
    use : (n_times, n_cells) bool: the steps to average (e.g. the training steps)
    smooth_days : width of the circular moving average over days of year (odd; 1: none)

    Returns
    -------
    (366, n_cells): NaN for a cell that has no used step within ``smooth_days`` of a day.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or use.shape != values.shape or doy.shape != values.shape[:1]:
        raise InputError(
            f"expected values (n_times, n_cells), use of the same shape and doy (n_times,); "
            f"got {values.shape}, {use.shape}, {doy.shape}."
        )
    if smooth_days < 1 or smooth_days % 2 == 0:
        raise InputError(f"smooth_days must be an odd integer >= 1; got {smooth_days!r}.")
    ok = use & np.isfinite(values)
    sums = np.zeros((N_DOY, values.shape[1]))
    counts = np.zeros((N_DOY, values.shape[1]))
    index = np.asarray(doy, dtype=np.int64) - 1
    np.add.at(sums, index, np.where(ok, values, 0.0))
    np.add.at(counts, index, ok.astype(np.float64))
    if smooth_days > 1:
        sums, counts = _circular_sum(sums, smooth_days), _circular_sum(counts, smooth_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _circular_sum(a: np.ndarray, width: int) -> np.ndarray:
    half = width // 2
    padded = np.concatenate([a[-half:], a, a[:half]], axis=0)
    c = np.cumsum(np.concatenate([np.zeros((1, a.shape[1])), padded]), axis=0)
    return c[width:] - c[:-width]


def lookup(table: np.ndarray, doy: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """``table[doy - 1, cell]`` for per-(unit, step) days of year ``doy`` (n, w) and the
    unit's flat cell index ``cell`` (n,)."""
    return table[np.asarray(doy, dtype=np.int64) - 1, np.asarray(cell)[:, None]]


def linear_reference(
    X_train: np.ndarray,
    T_train: np.ndarray,
    Y_train: np.ndarray,
    X_test: np.ndarray,
    T_test: np.ndarray,
) -> np.ndarray:
    """Ridge regression of ``Y_t`` on ``(X_t, T_t)``, fitted on every training (unit, step).

    X (n, w, p), T and Y (n, w); returns the test prediction (n_test, w). Inputs are
    standardised on the training rows; the penalty is chosen by leave-one-out cross-validation
    (scikit-learn's ``RidgeCV``).
    """
    from sklearn.linear_model import RidgeCV

    def rows(X: np.ndarray, T: np.ndarray) -> np.ndarray:
        return np.concatenate([X, T[..., None]], axis=-1).reshape(-1, X.shape[-1] + 1)

    A = rows(X_train, T_train)
    mean, sd = A.mean(0), A.std(0)
    sd[sd == 0] = 1.0
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit((A - mean) / sd, Y_train.reshape(-1))
    pred = model.predict((rows(X_test, T_test) - mean) / sd)
    return pred.reshape(T_test.shape)
