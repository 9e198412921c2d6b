"""Identification and overlap: is "change T, hold X fixed" something the data ever show?

An effect of a treatment path ``T0 → T1`` with the covariate path held fixed is only learned
from the data where, at the same covariates, different treatments occur. Two things break it:

1. **A treatment that is (nearly) a function of the covariates.** If ``T_t`` is predictable
   from the covariates' history ``X_{≤t}``, no data hold ``X`` fixed while ``T`` moves, and a
   model returns an extrapolation that looks like an effect (e.g. a treatment built from
   ``uo``/``vo``/``zos`` with those fields as covariates).
2. **A scenario far outside the observed support.** If ``T1`` moves the treatment by many
   times the spread that ``T`` shows *at given covariates* (the residual sd of ``T`` given
   ``X``), the effect is read off a region the data never visit.

:func:`check_overlap` measures both and returns an :class:`OverlapReport`:

- ``r2``: held-out R² of ``T_t`` given the covariates' history ``X_{≤t}`` inside the unit's
  window, from a gradient-boosted tree ensemble (scikit-learn's
  ``HistGradientBoostingRegressor``) fitted on a random split of units (seeded). Features
  per (unit, step): ``X_t``, the lags ``X_{t-1} … X_{t-lags}`` (missing before the window
  starts; the learner handles missing values), the running mean of ``X`` over the window up
  to ``t``, and the step's position in the window. The treatment's own past is **not** a
  feature: the estimand changes the whole treatment path with the covariate path held
  fixed, so what must vary is the path given ``X``; a persistent treatment is predictable
  from its own past without that being an overlap problem.
- ``shift_sd``: the median over the (unit, step) cells that the scenario changes of
  ``|T1 − T0|`` divided by the held-out residual sd of ``T`` given ``X`` (``None`` without
  ``T1``; 0 when ``T1`` equals ``T0``).

``ok`` is False when ``r2 > r2_max`` or ``shift_sd > shift_max``. The default limits
(:data:`R2_MAX`, :data:`SHIFT_SD_MAX`) were chosen from measurements on the ``arctic``
simulator (tuning worlds, seeds 100-104): see docs/benchmarks.md, section "Overlap check:
thresholds", and ``benchmarks/overlap_thresholds.py``.

Cost: at most ``max_units`` units and ``max_rows`` (unit, step) rows are used (random
subsets, seeded), so the check takes a few seconds on any input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kgcm.errors import InputError, WeakOverlapError

__all__ = [
    "R2_MAX",
    "SHIFT_SD_MAX",
    "OverlapReport",
    "check_overlap",
    "require_overlap",
    "shift_in_sd",
]

#: Default limit on the held-out R² of T given the covariates' history (see module docstring).
R2_MAX = 0.95
#: Default limit on the scenario's median |T1 - T0| in residual sd of T given X.
SHIFT_SD_MAX = 2.0

ALLOW_HINT = (
    "To run anyway (the result is then an extrapolation, and the outputs say so), pass "
    "--allow-weak-overlap."
)


@dataclass(frozen=True)
class OverlapReport:
    """What :func:`check_overlap` measured.

    Attributes
    ----------
    ok : bool
        True when ``r2 <= r2_max`` and (without ``T1``, or) ``shift_sd <= shift_max``.
    r2 : float
        Held-out R² of ``T_t`` given ``X_{≤t}`` (can be below 0 when ``X`` says nothing).
    shift_sd : float or None
        Median ``|T1 − T0|`` over the changed cells, in residual sd of ``T`` given ``X``.
    residual_sd : float
        Held-out residual sd of ``T`` given ``X``, in the treatment's units.
    treatment_sd : float
        sd of ``T`` over the held-out rows, in the treatment's units.
    r2_max, shift_max : float
        The limits applied.
    n_train_rows, n_test_rows : int
        (unit, step) rows the learner was fitted and scored on.
    message : str
        What was found and, when not ``ok``, what is wrong and what to do.
    """

    ok: bool
    r2: float
    shift_sd: float | None
    residual_sd: float
    treatment_sd: float
    r2_max: float
    shift_max: float
    n_train_rows: int
    n_test_rows: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (the ``overlap`` entry of the CLI's outputs)."""
        return asdict(self)


def _as_array(a: Any, name: str) -> np.ndarray:
    values = getattr(a, "values", a)  # xarray.DataArray / pandas
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric; got {type(a).__name__}.") from exc
    return arr


def _validate(T: Any, X: Any, T1: Any | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    t = _as_array(T, "T")
    if t.ndim != 2:
        raise InputError(
            f"T must have shape (n_units, n_steps); got shape {t.shape}. A single series is "
            f"one unit: pass T[None, :]."
        )
    if X is None:
        raise InputError(
            "check_overlap needs the covariates X (n_units, n_steps, n_features); got None."
        )
    x = _as_array(X, "X")
    if x.ndim != 3 or x.shape[:2] != t.shape:
        raise InputError(
            f"X must have shape (n_units, n_steps, n_features) = {(*t.shape, 'p')} like T; "
            f"got shape {x.shape}."
        )
    t1 = None
    if T1 is not None:
        t1 = _as_array(T1, "T1")
        if t1.shape != t.shape:
            raise InputError(
                f"T1 has shape {t1.shape}; expected the shape of T {t.shape} (one scenario "
                f"value per unit and step)."
            )
    for name, arr in (("T", t), ("X", x), ("T1", t1)):
        if arr is not None and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise InputError(
                f"{name} holds {bad} NaN or infinite values; drop incomplete units first "
                f"(to_sequences(..., drop_incomplete=True)) or fill the gaps."
            )
    if t.shape[0] < 4:
        raise InputError(
            f"check_overlap needs at least 4 units to hold some out; got {t.shape[0]}. Cut the "
            f"series into shorter windows (more units)."
        )
    return t, x, t1


def history_features(X: np.ndarray, lags: int) -> np.ndarray:
    """Features of ``X_{≤t}`` for every (unit, step), vectorised.

    Parameters
    ----------
    X : ndarray (n_units, n_steps, p)
    lags : int
        Lags ``X_{t-1} … X_{t-lags}`` (NaN before the window's first step).

    Returns
    -------
    ndarray (n_units, n_steps, p · (lags + 2) + 1)
        ``X_t``, its lags, the running mean over the window up to ``t``, and ``t / n_steps``.
    """
    n, k, p = X.shape
    padded = np.concatenate([np.full((n, lags, p), np.nan), X], axis=1)
    lagged = [padded[:, lags - lag : lags - lag + k] for lag in range(lags + 1)]
    running = np.cumsum(X, axis=1) / np.arange(1, k + 1)[None, :, None]
    position = np.broadcast_to((np.arange(k) / k)[None, :, None], (n, k, 1))
    return np.concatenate([*lagged, running, position], axis=2)


def shift_in_sd(T: np.ndarray, T1: np.ndarray, residual_sd: float) -> float:
    """Median ``|T1 − T0|`` over the cells the scenario changes, in units of ``residual_sd``.

    Parameters
    ----------
    T, T1 : ndarray (n_units, n_steps)
    residual_sd : float
        Residual sd of ``T`` given ``X`` (:attr:`OverlapReport.residual_sd`).

    Returns
    -------
    float
        0 when ``T1`` equals ``T`` everywhere. A treatment that is an exact function of
        ``X`` has a residual sd of about 0; it is floored at 1e-9 sd of ``T``, so the shift
        comes out huge rather than infinite.
    """
    change = np.abs(np.asarray(T1, np.float64) - np.asarray(T, np.float64))
    changed = change[change > 0]
    if changed.size == 0:
        return 0.0
    floor = 1e-9 * max(float(np.std(T)), np.finfo(float).tiny)
    return float(np.median(changed) / max(residual_sd, floor))


def check_overlap(
    T: Any,
    X: Any,
    T1: Any | None = None,
    *,
    r2_max: float = R2_MAX,
    shift_max: float = SHIFT_SD_MAX,
    lags: int = 7,
    test_fraction: float = 0.3,
    max_units: int = 5000,
    max_rows: int = 60_000,
    seed: int = 0,
) -> OverlapReport:
    """Check that the treatment varies at given covariates, and that ``T1`` stays in support.

    Parameters
    ----------
    T : array-like (n_units, n_steps)
        Factual treatment (numpy or xarray).
    X : array-like (n_units, n_steps, n_features)
        Covariates, in the estimator contract's layout.
    T1 : array-like (n_units, n_steps), optional
        Scenario treatment path; enables ``shift_sd``.
    r2_max : float
        Largest acceptable held-out R² of ``T`` given the covariates' history.
    shift_max : float
        Largest acceptable median ``|T1 − T0|`` in residual sd of ``T`` given ``X``.
    lags : int
        Covariate lags in the features (``X_{t-1} … X_{t-lags}``).
    test_fraction : float
        Share of the (sampled) units held out to score the learner.
    max_units, max_rows : int
        Caps on the units and the (unit, step) rows used (random subsets): they bound the
        cost at a few seconds on two cores.
    seed : int
        Seeds the subsets, the split and the learner.

    Returns
    -------
    OverlapReport

    Raises
    ------
    InputError
        Wrong shapes, NaN or infinite values, fewer than 4 units.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    t, x, t1 = _validate(T, X, T1)
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
    if not isinstance(lags, int) or lags < 0:
        raise InputError(f"lags must be an integer >= 0; got {lags!r}.")
    rng = np.random.default_rng(seed)
    n_units, n_steps = t.shape
    units = np.arange(n_units)
    if n_units > max_units:
        units = np.sort(rng.choice(n_units, size=max_units, replace=False))
    n_test_units = min(max(2, round(test_fraction * len(units))), len(units) - 2)
    shuffled = rng.permutation(units)
    test_units, train_units = shuffled[:n_test_units], shuffled[n_test_units:]

    def rows(selected: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
        feats = history_features(x[selected], lags).reshape(len(selected) * n_steps, -1)
        target = t[selected].reshape(-1)
        if len(target) > cap:  # a random subset of (unit, step) rows bounds the cost
            keep = rng.choice(len(target), size=cap, replace=False)
            feats, target = feats[keep], target[keep]
        return feats, target

    test_cap = max(1, round(max_rows * test_fraction))
    f_train, y_train = rows(train_units, max_rows - test_cap)
    f_test, y_test = rows(test_units, test_cap)
    treatment_sd = float(y_test.std())
    constant = bool(np.ptp(t) == 0)  # exactly: a float sd of a constant can be 1e-17
    if constant:
        r2, residual_sd = 1.0, 0.0
    elif x.shape[2] == 0:  # no covariates: nothing predicts T beyond its mean
        residual_sd = float(np.sqrt(np.mean((y_test - y_train.mean()) ** 2)))
        r2 = 1.0 - residual_sd**2 / max(treatment_sd**2, np.finfo(float).tiny)
    else:
        model = HistGradientBoostingRegressor(
            max_iter=300, learning_rate=0.1, early_stopping=True, random_state=seed
        )
        model.fit(f_train, y_train)
        residual = y_test - model.predict(f_test)
        residual_sd = float(np.sqrt(np.mean(residual**2)))
        r2 = 1.0 - residual_sd**2 / max(treatment_sd**2, np.finfo(float).tiny)

    shift_sd = None if t1 is None else shift_in_sd(t, t1, residual_sd)

    problems = []
    if constant:
        problems.append(
            "the treatment is constant: no effect of changing it can be learned from these "
            "data. Use a treatment that varies across units and steps."
        )
    elif r2 > r2_max:
        problems.append(
            f"the treatment is nearly a function of the covariates: held-out R² of T given "
            f"the covariates' history is {r2:.3f} (limit {r2_max:g}), so 'change T, hold X "
            f"fixed' hardly occurs in the data and the effect is not identified. Remove from "
            f"the covariates the fields the treatment is computed from (keep its confounders "
            f"only), or use a treatment with variation of its own."
        )
    if shift_sd is not None and shift_sd > shift_max:
        problems.append(
            f"the scenario is far outside the observed support: it moves the treatment by a "
            f"median {shift_sd:.3g} residual sd of T given X (residual sd {residual_sd:.3g} in "
            f"treatment units; limit {shift_max:g}). Use a smaller scenario, one whose typical "
            f"change |T1 - T0| stays below {shift_max * residual_sd:.3g}."
        )
    ok = not problems
    if ok:
        shift_text = (
            ""
            if shift_sd is None
            else (
                f"; the scenario moves it by a median {shift_sd:.3g} residual sd "
                f"(limit {shift_max:g})"
            )
        )
        message = (
            f"overlap ok: held-out R² of T given the covariates' history {r2:.3f} "
            f"(limit {r2_max:g}){shift_text}."
        )
    else:
        message = "weak overlap: " + " Also, ".join(problems)
    return OverlapReport(
        ok=ok,
        r2=float(r2),
        shift_sd=shift_sd,
        residual_sd=residual_sd,
        treatment_sd=treatment_sd,
        r2_max=float(r2_max),
        shift_max=float(shift_max),
        n_train_rows=len(y_train),
        n_test_rows=len(y_test),
        message=message,
    )


def require_overlap(
    T: Any,
    X: Any,
    T1: Any | None = None,
    *,
    allow_weak: bool = False,
    log: Any = print,
    seed: int = 0,
) -> dict[str, Any]:
    """Run :func:`check_overlap` for a command and return the report as a dict.

    Weak overlap raises :class:`~kgcm.errors.WeakOverlapError` with the report's message,
    unless ``allow_weak``; then the message is logged as a warning and the returned dict
    (written into the command's outputs as ``overlap``) carries it.
    """
    report = check_overlap(T, X, T1, seed=seed)
    if not report.ok:
        if not allow_weak:
            raise WeakOverlapError(f"{report.message} {ALLOW_HINT}")
        log(f"warning: {report.message} (running anyway: --allow-weak-overlap)")
    else:
        log(report.message)
    return report.to_dict()
