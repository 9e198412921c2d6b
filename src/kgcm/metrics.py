r"""Evaluation metrics: pure functions on arrays of equal shape.

All take effects per unit and step, shape ``(n_units, n_steps)`` (any equal shapes work), in
the outcome's raw units (metres for SIT).

- :func:`pehe`: :math:`\sqrt{\mathrm{mean}((\hat\tau - \tau)^2)}`, the root PEHE.
- :func:`ate_error`: :math:`|\mathrm{mean}(\hat\tau) - \mathrm{mean}(\tau)|`.
- :func:`factual_rmse`: RMSE of factual outcome predictions.
- :func:`interval_coverage`: share of true effects inside ``[lower, upper]``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from kgcm.errors import InputError

__all__ = [
    "ate_error",
    "factual_rmse",
    "holm",
    "interval_coverage",
    "interval_width",
    "pehe",
    "rmse",
    "score_effects",
]


def _pair(a: ArrayLike, b: ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise InputError(
            f"{names[0]} has shape {x.shape} but {names[1]} has {y.shape}; expected equal shapes."
        )
    if x.size == 0:
        raise InputError(f"{names[0]} and {names[1]} are empty.")
    for arr, name in ((x, names[0]), (y, names[1])):
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise InputError(
                f"{name} holds {bad} NaN or infinite values; drop or mask them before scoring."
            )
    return x, y


def rmse(truth: ArrayLike, estimate: ArrayLike) -> float:
    """Root mean squared difference."""
    t, e = _pair(truth, estimate, ("truth", "estimate"))
    return float(np.sqrt(np.mean((e - t) ** 2)))


def pehe(true_effect: ArrayLike, est_effect: ArrayLike) -> float:
    """Root precision in estimating heterogeneous effects, in the outcome's units."""
    t, e = _pair(true_effect, est_effect, ("true_effect", "est_effect"))
    return float(np.sqrt(np.mean((e - t) ** 2)))


def ate_error(true_effect: ArrayLike, est_effect: ArrayLike) -> float:
    """Absolute error of the average effect over all units and steps."""
    t, e = _pair(true_effect, est_effect, ("true_effect", "est_effect"))
    return float(abs(e.mean() - t.mean()))


def factual_rmse(y: ArrayLike, y_pred: ArrayLike) -> float:
    """RMSE of factual outcome predictions, in the outcome's units."""
    t, e = _pair(y, y_pred, ("y", "y_pred"))
    return float(np.sqrt(np.mean((e - t) ** 2)))


def _interval(lower: ArrayLike, upper: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    lo, up = _pair(lower, upper, ("lower", "upper"))
    if np.any(lo > up):
        raise InputError("lower exceeds upper somewhere; pass (lower, upper) in that order.")
    return lo, up


def interval_coverage(true_effect: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of true effects inside their interval ``[lower, upper]`` (0 to 1)."""
    lo, up = _interval(lower, upper)
    t, _ = _pair(true_effect, lo, ("true_effect", "lower"))
    return float(np.mean((t >= lo) & (t <= up)))


def interval_width(lower: ArrayLike, upper: ArrayLike) -> float:
    """Mean width of the intervals."""
    lo, up = _interval(lower, upper)
    return float(np.mean(up - lo))


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input's order and shape.

    The family is every finite p-value (NaN stays NaN and does not count). Sorted ascending,
    the i-th smallest (i from 0) gets ``max_{j <= i} min(1, (m - j) p_(j))``; a comparison is
    significant at level alpha when its adjusted p-value is below alpha, which controls the
    family-wise error rate at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat, res = p.ravel(), out.ravel()
    finite = np.flatnonzero(np.isfinite(flat))
    if ((flat[finite] < 0) | (flat[finite] > 1)).any():
        raise InputError("holm: p-values must lie in [0, 1] (NaN marks a missing one).")
    order = finite[np.argsort(flat[finite], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
    res[order] = np.maximum.accumulate(scaled) if m else scaled
    return res.reshape(p.shape)


def score_effects(
    truth: np.ndarray,
    effect: np.ndarray,
    y: np.ndarray,
    y_pred: np.ndarray,
    interval: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, float]:
    """PEHE, ATE error and factual RMSE (and an interval's coverage, mean width and median
    width), as a dict."""
    row = {
        "pehe": pehe(truth, effect),
        "ate_error": ate_error(truth, effect),
        "factual_rmse": factual_rmse(y, y_pred),
    }
    if interval is not None:
        row["coverage"] = interval_coverage(truth, *interval)
        row["interval_width"] = interval_width(*interval)
        row["median_width"] = float(np.median(interval[1] - interval[0]))
    return row
