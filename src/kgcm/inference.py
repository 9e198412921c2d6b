r"""How effect intervals are made: one strategy shared by every estimator.

As EconML's ``fit(..., inference=...)``, the strategy is chosen when fitting and every
estimator's public interval methods (``effect_interval``, ``effect_with_interval``) go
through it; no estimator overrides them.

``"model"`` (the default)
    The estimator's own uncertainty: quantiles of its effect draws (KGCM-VAE and CEVAE:
    posterior draws of the latent state; seed ensembles: the members' effects; GST-UNet: its
    cell-bootstrap refits) or a normal interval from its standard errors (the DML
    estimators, through EconML's inference). Estimators with neither give point effects only.
    For the neural models this is uncertainty *given the fitted model*: it leaves out
    estimation uncertainty and is far too narrow (docs/benchmarks.md). The DML estimators'
    standard errors already are estimation uncertainty (they refuse the bootstrap), and
    GST-UNet's own intervals are a cell bootstrap (it refuses it too).

``"bootstrap"``
    Estimation uncertainty added: the estimator is refitted ``n_bootstrap`` times on
    resamples of the training units drawn with replacement **by group** (``groups`` in
    ``fit``; the experiments pass spatial blocks of ``block`` × ``block`` cells, so windows
    of one cell and neighbouring cells, which share their errors, are drawn together). The
    point effect stays the full fit's; the interval (:func:`bootstrap_interval`) is the full
    fit's effect ± t · sqrt(W + B): W the variance of the full fit's own draws (0 for a point
    estimator), B the variance of the refits' effects across the refits (the bootstrap's
    estimation variance), t the Student quantile on ``n_bootstrap − 1`` degrees of freedom
    (B is estimated from few refits). On tuning worlds this covered more than the equal-tailed
    quantiles of the pooled draws, the first construction (docs/benchmarks.md, "Interval
    constructions"), and still far less than nominal: the error is mostly bias that every
    refit shares.

``"parametric"``
    The error a refit makes in a world whose effects are known: the full fit's own. The
    estimator is refitted ``n_bootstrap`` times on the same units and treatments, with
    outcomes simulated from the full fit: its factual prediction plus its residuals with a
    random sign per group (a wild bootstrap by spatial block, which keeps each block's
    residuals' size, season and correlation). The true effect of that world is the full fit's
    effect, so each refit's effect minus it is an error with bias and spread in it (for
    KGCM-VAE, approximately: the outcomes are simulated from its posterior-mean state, the
    effect averages posterior draws; the gap counts as error, so it errs wide). The residuals
    are in-sample: a learner that fits its training outcomes closely leaves small ones, and
    the simulated world then has too little noise and the interval is too narrow. The point
    effect stays the full fit's; the interval (:func:`parametric_interval`) is ± t ·
    sqrt(W + E): W as above, E the mean of the refits' squared errors, t Student's quantile on
    ``n_bootstrap`` degrees of freedom. It sees the bias the estimator makes in a world like
    its fit; not the bias of what the fit got wrong (docs/benchmarks.md measures how much of
    the error that leaves out).

.. code-block:: python

    est = kgcm.KGCMVAE(seed=0).fit(Y, T, X=X, inference="bootstrap", groups=blocks)
    est = kgcm.KGCMVAE(seed=0).fit(
        Y, T, X=X, inference=kgcm.Inference("bootstrap", n_bootstrap=10), groups=blocks
    )
    est = kgcm.KGCMVAE(seed=0).fit(Y, T, X=X, inference="parametric", groups=blocks)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kgcm.errors import ConfigError, InputError

__all__ = [
    "METHODS",
    "REFIT_METHODS",
    "Inference",
    "block_groups",
    "bootstrap_interval",
    "check_groups",
    "describe",
    "fit_arguments",
    "parametric_interval",
    "refit_interval",
    "resample_groups",
    "sign_flips",
]

METHODS = ("model", "bootstrap", "parametric")
#: the strategies that refit the estimator (``n_bootstrap`` refits, spatial ``groups``)
REFIT_METHODS = ("bootstrap", "parametric")


@dataclass(frozen=True)
class Inference:
    """The interval strategy of a fit (see the module docstring).

    Attributes
    ----------
    method : {"model", "bootstrap", "parametric"}
        The estimator's own uncertainty, or that plus a grouped bootstrap of refits, or plus
        the errors of refits on outcomes simulated from the fit.
    n_bootstrap : int
        Refits for ``"bootstrap"`` and ``"parametric"`` (at least 2; each costs one more fit).
    block : int
        Side, in grid cells, of the spatial blocks the experiments resample (or whose
        residuals' signs they flip) together (``block_groups``); read by ``kgcm fit`` and
        ``kgcm benchmark``, not by ``fit``.
    """

    method: str = "model"
    n_bootstrap: int = 10
    block: int = 4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            from kgcm.errors import did_you_mean

            raise ConfigError(
                f"inference method must be one of {list(METHODS)}; got {self.method!r}."
                f"{did_you_mean(str(self.method), METHODS)}"
            )
        for key, least in (("n_bootstrap", 2), ("block", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
                raise ConfigError(f"inference {key} must be an integer >= {least}; got {value!r}.")

    @classmethod
    def coerce(cls, value: Any) -> Inference:
        """An ``Inference`` from None (``"model"``), a method name, a mapping or itself."""
        if value is None:
            return cls()
        if isinstance(value, Inference):
            return value
        if isinstance(value, str):
            return cls(method=value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"method", "n_bootstrap", "block"}
            if unknown:
                raise ConfigError(
                    f"unknown inference setting(s) {sorted(unknown)}; known: method, "
                    f"n_bootstrap, block."
                )
            return cls(**dict(value))
        raise ConfigError(
            f"inference must be 'model', 'bootstrap', 'parametric', a mapping such as "
            f"{{method = 'bootstrap', n_bootstrap = 10}} or kgcm.Inference(...); got "
            f"{type(value).__name__} {value!r}."
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_interval(
    full: np.ndarray, refits: list[np.ndarray], alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``1 − alpha`` interval ``(lower, upper)`` around the full fit's effect.

    ``full`` holds the full fit's effect draws ``(S, ...)`` (one row for a point estimator),
    ``refits`` each refit's draws of the same shape but for ``S``. The centre is the mean of
    ``full``; the half-width ``t_{R−1}(1 − alpha/2) · sqrt(W + B)``, with W the variance of
    ``full``'s draws, B the variance of the R refits' means and t Student's quantile.
    """
    means = _refit_means(refits, "bootstrap_interval")
    return _t_interval(full, means.var(axis=0, ddof=1), len(refits) - 1, alpha)


def parametric_interval(
    full: np.ndarray, refits: list[np.ndarray], alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``1 − alpha`` interval ``(lower, upper)`` around the full fit's effect from
    refits on outcomes simulated from it (the ``"parametric"`` strategy).

    ``full`` holds the full fit's effect draws ``(S, ...)``, ``refits`` each refit's draws.
    The full fit's mean effect is the truth of the simulated world, so ``E``, the mean over
    the R refits of (refit mean − full mean)², is a mean squared error (bias included) on R
    degrees of freedom. Half-width ``t_R(1 − alpha/2) · sqrt(W + E)``, W the variance of
    ``full``'s draws.
    """
    errors = _refit_means(refits, "parametric_interval") - full.mean(axis=0)
    return _t_interval(full, np.mean(errors**2, axis=0), len(refits), alpha)


def _refit_means(refits: list[np.ndarray], caller: str) -> np.ndarray:
    """The refits' mean effects stacked ``(R, ...)``; at least 2 refits, or a clear error."""
    if len(refits) < 2:
        raise InputError(f"{caller} needs at least 2 refits; got {len(refits)}.")
    return np.stack([r.mean(axis=0) for r in refits])


def _t_interval(
    full: np.ndarray, spread: np.ndarray, dof: int, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The full fit's mean effect ± ``t_dof(1 − alpha/2) · sqrt(W + spread)``, W the variance
    of the full fit's draws (0 for a single draw): the refitting strategies' one shape."""
    from scipy import stats

    centre = full.mean(axis=0)
    within = full.var(axis=0, ddof=1) if full.shape[0] > 1 else np.zeros_like(centre)
    half = float(stats.t.ppf(1.0 - alpha / 2.0, dof)) * np.sqrt(within + spread)
    return centre - half, centre + half


def refit_interval(
    method: str, full: np.ndarray, refits: list[np.ndarray], alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of a refitting strategy (``method`` in ``REFIT_METHODS``)."""
    if method == "parametric":
        return parametric_interval(full, refits, alpha)
    return bootstrap_interval(full, refits, alpha)


def sign_flips(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random sign (±1) per group, given to each of its units: ``(n_units,)`` floats."""
    _, inverse = np.unique(groups, return_inverse=True)
    signs = rng.choice(np.array([-1.0, 1.0]), size=int(inverse.max()) + 1)
    return signs[inverse.reshape(-1)]


def block_groups(cells: np.ndarray, block: int) -> np.ndarray:
    """Group label per unit: the ``block`` × ``block`` tile of its grid cell.

    Parameters
    ----------
    cells : ndarray (n_units, n_space_dims) of int
        Each unit's cell index per spatial dimension (``SequenceSet.cells``).
    block : int
        Tile side in cells.

    Returns
    -------
    ndarray (n_units,) of int64
    """
    cells = np.asarray(cells)
    if cells.ndim == 1:
        cells = cells[:, None]
    tiles = cells.astype(np.int64) // int(block)
    _, labels = np.unique(tiles, axis=0, return_inverse=True)
    return labels.reshape(-1).astype(np.int64)


def resample_groups(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit indices of one bootstrap resample: groups drawn with replacement, each bringing all
    its units (in their original order within the group)."""
    labels, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=labels.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = rng.integers(0, labels.size, size=labels.size)
    pieces = [order[starts[g] : starts[g] + counts[g]] for g in pick]
    return np.concatenate(pieces)


def check_groups(groups: Any, n_units: int) -> np.ndarray | None:
    """``groups`` as an (n_units,) array, or None; a clear error for anything else."""
    if groups is None:
        return None
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.shape[0] != n_units:
        raise InputError(
            f"groups must be one label per training unit, shape ({n_units},); got shape "
            f"{arr.shape}. Pass e.g. kgcm.inference.block_groups(seqs.cells, 4)."
        )
    if np.unique(arr).size < 2:
        raise InputError(
            "groups holds a single label, so a grouped bootstrap would draw the same data "
            "every time (and the parametric strategy flip every residual together); give at "
            "least two groups (smaller blocks), or groups=None for single units."
        )
    return arr


def fit_arguments(inference: Any, cells: np.ndarray | None) -> dict[str, Any]:
    """The ``inference`` and ``groups`` keywords of ``fit`` for units on a grid: spatial blocks
    of ``block`` cells for the refitting strategies (single units when ``cells`` is None)."""
    strategy = Inference.coerce(inference or None)
    if strategy.method not in REFIT_METHODS:
        return {"inference": strategy}
    spatial = cells is not None and np.asarray(cells).ndim == 2 and np.asarray(cells).shape[1]
    groups = block_groups(cells, strategy.block) if spatial else None  # a series: single units
    if groups is not None and np.unique(groups).size < 2:
        raise ConfigError(
            f"inference.block = {strategy.block} puts every training cell in one block, so the "
            f"{strategy.method} strategy has nothing to draw by block; use a smaller block."
        )
    return {"inference": strategy, "groups": groups}


def describe(inference: Any, groups: np.ndarray | None) -> str:
    """One line for logs: the strategy and, for a refitting one, what it draws by."""
    strategy = Inference.coerce(inference or None)
    if strategy.method == "model":
        return "intervals: the estimator's own uncertainty (inference.method = 'model')"
    what = (
        f"{np.unique(groups).size} blocks of {strategy.block}x{strategy.block} cells"
        if groups is not None
        else "single units"
    )
    if strategy.method == "parametric":
        return (
            f"intervals: {strategy.n_bootstrap} refits on outcomes simulated from the fit, "
            f"residual signs flipped by {what} (fitting takes {strategy.n_bootstrap + 1}x as "
            f"long)"
        )
    return (
        f"intervals: block bootstrap, {strategy.n_bootstrap} refits on resamples of {what} "
        f"(fitting takes {strategy.n_bootstrap + 1}x as long)"
    )
