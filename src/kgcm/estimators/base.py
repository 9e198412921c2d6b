r"""The estimator contract shared by KGCM-VAE and every baseline.

Shapes are named by dimension:

- ``Y``: outcome, ``(n_units, n_steps)``
- ``T``: continuous treatment, ``(n_units, n_steps)`` (binary treatments are floats 0/1)
- ``X``: covariates, ``(n_units, n_steps, n_features)``; static data is ``n_steps = 1``

.. code-block:: python

    est = kgcm.KGCMVAE(seed=0).fit(Y, T, X=X)      # returns self
    est.predict(X, T)                               # (n_units, n_steps) outcome under path T
    est.effect(X, T0=T0, T1=T1)                     # (n_units, n_steps): Y_t(T1) - Y_t(T0)
    est.effect_interval(X, T0=T0, T1=T1, alpha=0.05)
    est.save("model.kgcm"); kgcm.load("model.kgcm")

Forecasts under a treatment plan (the CRN / Causal Transformer estimand): with ``X (n, k, p)``
and ``Y (n, k)`` an observed history and ``T0``/``T1`` of ``k + h`` steps (history plus plan,
equal on the history), ``effect`` returns the effect on the ``h`` plan steps, ``(n, h)``,
computed without covariates after step ``k``. Estimators that can answer it carry the tag
``forecast`` and implement ``_forecast_effect_draws``:

.. code-block:: python

    est.effect(X_hist, T0=T0_plan, T1=T1_plan, Y=Y_hist)   # (n_units, h)

Following scikit-learn, ``__init__`` stores settings only; ``fit`` validates, fits the scalers
and the model, and sets fitted attributes ending in ``_``. A subclass implements ``_fit``,
``_predict`` and, where it has uncertainty, ``_effect_draws``; it declares its capabilities in
``tags`` (these drive the conformance tests).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import io
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from kgcm._io import atomic_write_bytes
from kgcm.errors import ConfigError, InputError, KgcmError, NotFittedError

__all__ = [
    "BaseEstimator",
    "ForecastInputs",
    "Standardizer",
    "ValidatedData",
    "validate_forecast_inputs",
    "validate_inputs",
]

FORMAT = "kgcm-estimator"
FORMAT_VERSION = 2  # 2: a checksum over the content (payload_digest)


# --------------------------------------------------------------------------------------------
# Input validation


@dataclass(frozen=True)
class ValidatedData:
    """Arrays checked for shape, dtype and finiteness (float64 copies)."""

    Y: np.ndarray | None  # (n_units, n_steps)
    T: np.ndarray  # (n_units, n_steps)
    X: np.ndarray  # (n_units, n_steps, n_features); n_features may be 0
    feature_names: tuple[str, ...] | None


#: the largest magnitude an input may hold: float32's range, in which the networks compute
_LARGEST = float(np.finfo(np.float32).max)

#: dimension names an xarray input may use, by role (inputs are put in this order by name)
_DIM_ROLES = {
    "unit": ("unit", "units", "sample", "samples"),
    "step": ("step", "steps", "time"),
    "feature": ("feature", "features", "variable", "covariate"),
}


def _by_dim_name(value: xr.DataArray, name: str, ndim: int) -> np.ndarray:
    """The values of a DataArray in ``(unit, step[, feature])`` order, found by dim name.

    Default names (``dim_0``...) are taken in order; named dims must say their role, so a
    ``(time, unit)`` array is transposed rather than read with time as units.
    """
    dims = [str(d) for d in value.dims]
    if all(d.startswith("dim_") for d in dims):
        return value.values
    roles = ["unit", "step", "feature"][:ndim]
    order = []
    for role in roles:
        found = [d for d in dims if d in _DIM_ROLES[role]]
        if len(found) != 1:
            expected = ", ".join(f"{r} ({'/'.join(_DIM_ROLES[r])})" for r in roles)
            raise InputError(
                f"{name} is a DataArray with dims {tuple(dims)}; kgcm reads xarray inputs by "
                f"dimension name and needs one dim for each of: {expected}. Rename the dims "
                f"(da.rename(...)) or pass a NumPy array in (n_units, n_steps"
                f"{', n_features' if ndim == 3 else ''}) order."
            )
        order.append(found[0])
    if len(dims) != ndim:
        raise InputError(f"{name} must have {ndim} dimensions {tuple(roles)}; got {tuple(dims)}.")
    return value.transpose(*order).values


def _as_float_array(value: Any, name: str, ndim: int, hint: str) -> np.ndarray:
    if isinstance(value, xr.DataArray):
        value = _by_dim_name(value, name, ndim)
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - defensive
        raise InputError(f"{name} could not be turned into an array: {exc}") from exc
    if arr.dtype == bool:
        arr = arr.astype(np.float64)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name} must hold numbers; got dtype {arr.dtype}.")
    if arr.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions {hint}; got shape {arr.shape}.")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InputError(
            f"{name} holds {bad} NaN or infinite values of {arr.size}; estimators need complete "
            f"arrays. Drop the affected units, fill gaps (e.g. interpolate along time), or mask "
            f"land cells before building sequences."
        )
    big = float(np.abs(arr).max()) if arr.size else 0.0
    if big > _LARGEST:
        # the networks compute in float32: beyond its range a value becomes inf silently
        raise InputError(
            f"{name} holds values up to {big:.3g}, beyond what the models compute with "
            f"(float32, up to {_LARGEST:.3g}); rescale {name} to moderate numbers (e.g. metres, "
            f"m/s)."
        )
    return arr


def _feature_names_of(X: Any) -> tuple[str, ...] | None:
    if isinstance(X, xr.DataArray) and X.ndim == 3:
        named = [d for d in X.dims if str(d) in _DIM_ROLES["feature"]]
        dim = named[0] if named else X.dims[-1]
        if dim in X.coords:
            return tuple(str(v) for v in X.coords[dim].values)
    return None


def validate_inputs(
    Y: Any | None,
    T: Any,
    X: Any | None,
    *,
    n_features: int | None = None,
    t_name: str = "T",
) -> ValidatedData:
    """Check ``Y (n, t)``, ``T (n, t)`` and ``X (n, t, p)`` and return float64 arrays.

    ``n_features`` (from a fitted estimator) makes ``X`` match the training width.
    """
    T_arr = _as_float_array(T, t_name, 2, "(n_units, n_steps)")
    n, t = T_arr.shape
    if n == 0 or t == 0:
        raise InputError(
            f"{t_name} is empty: shape {T_arr.shape}; need at least one unit and step."
        )
    Y_arr = None
    if Y is not None:
        Y_arr = _as_float_array(Y, "Y", 2, "(n_units, n_steps)")
        if Y_arr.shape != T_arr.shape:
            raise InputError(
                f"Y has shape {Y_arr.shape} but {t_name} has {T_arr.shape}; both must be "
                f"(n_units, n_steps)."
            )
    names = _feature_names_of(X)
    if X is None:
        X_arr = np.zeros((n, t, 0))
    else:
        X_arr = _as_float_array(X, "X", 3, "(n_units, n_steps, n_features)")
        if X_arr.shape[:2] != (n, t):
            raise InputError(
                f"X has shape {X_arr.shape} but {t_name} has {T_arr.shape}; X must be "
                f"(n_units, n_steps, n_features) with the same units and steps."
            )
    if n_features is not None and X_arr.shape[2] != n_features:
        raise InputError(
            f"X has {X_arr.shape[2]} features but the estimator was fitted with {n_features}; "
            f"pass covariates in the same order as in fit."
        )
    return ValidatedData(Y=Y_arr, T=T_arr, X=X_arr, feature_names=names)


# --------------------------------------------------------------------------------------------
# Forecast inputs


@dataclass(frozen=True)
class ForecastInputs:
    """A checked forecast request: observed history and two treatment plans (float64)."""

    X: np.ndarray  # (n_units, k, n_features): covariates of the history
    Y: np.ndarray | None  # (n_units, k): outcomes of the history, or None
    T0: np.ndarray  # (n_units, k + h): history plus reference plan
    T1: np.ndarray  # (n_units, k + h): history plus alternative plan
    k: int  # history steps
    h: int  # plan steps


def _history_array(value: Any, name: str, ndim: int, hint: str) -> np.ndarray:
    """A history array (X or Y) whose gaps are refused with the forecast's own fix."""
    raw = _by_dim_name(value, name, ndim) if isinstance(value, xr.DataArray) else value
    arr = np.asarray(raw)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InputError(
            f"the observed history {name} holds {bad} NaN or infinite values of {arr.size}; a "
            f"forecast starts from a complete history. Fill the gaps (e.g. interpolate along "
            f"time), drop the affected units, or start the history after the last gap."
        )
    return _as_float_array(arr, name, ndim, hint)


def validate_forecast_inputs(
    X: Any | None,
    T0: Any,
    T1: Any,
    Y: Any | None = None,
    *,
    n_features: int | None = None,
) -> ForecastInputs | None:
    """Check a forecast request; None when ``T0``/``T1`` cover only the steps of ``X``.

    ``X (n, k, p)`` and ``Y (n, k)`` cover the observed history; ``T0``/``T1 (n, k + h)``
    the history plus the plan, equal on the history. The history's length ``k`` is read from
    ``X``, or from ``Y`` when ``X`` is None; with neither there is no history to forecast from
    and the request is the whole-path estimand (None).
    """
    t0 = _as_float_array(T0, "T0", 2, "(n_units, n_steps)")
    t1 = _as_float_array(T1, "T1", 2, "(n_units, n_steps)")
    if t0.shape != t1.shape:
        raise InputError(
            f"T0 has shape {t0.shape} but T1 has {t1.shape}; they must match: the same units "
            f"and steps (for a forecast, the k history steps plus the same h plan steps). "
            f"Build T1 from T0, e.g. T1 = T0.copy(); T1[:, k:] = plan."
        )
    x = None if X is None else _history_array(X, "X", 3, "(n_units, k, n_features)")
    y = None if Y is None else _history_array(Y, "Y", 2, "(n_units, k)")
    if x is not None:
        k, source = x.shape[1], "X"
    elif y is not None:
        k, source = y.shape[1], "Y"
    else:
        return None
    total = t0.shape[1]
    if y is not None and y.shape[1] != k:
        longer = "longer" if y.shape[1] > k else "shorter"
        raise InputError(
            f"Y has {y.shape[1]} steps, {longer} than the history X ({k} steps); Y is the "
            f"observed outcome over the history only. Pass Y[:, :{k}] with the X of those "
            f"steps (outcomes after step k are what the forecast estimates)."
        )
    if total == k:
        if y is not None:
            raise InputError(
                f"Y is given but T0/T1 have the same {k} steps as the history {source}, so "
                f"there is no plan to forecast. For a forecast give T0/T1 the {k} history "
                f"steps plus h >= 1 plan steps; for effects over the observed steps drop Y."
            )
        return None
    if total < k:
        raise InputError(
            f"T0/T1 have {total} steps, fewer than the {k} steps of the history {source}: "
            f"h = {total - k} plan steps. For a forecast give T0/T1 the {k} history steps "
            f"plus h >= 1 plan steps; for effects over the observed steps give them {k}."
        )
    n = t0.shape[0]
    for name, arr in (("X", x), ("Y", y)):
        if arr is not None and arr.shape[0] != n:
            raise InputError(
                f"{name} has {arr.shape[0]} units but T0/T1 have {n}; pass the same units "
                f"in the same order."
            )
    if x is None:
        x = np.zeros((n, k, 0))
    if n_features is not None and x.shape[2] != n_features:
        raise InputError(
            f"X has {x.shape[2]} features but the estimator was fitted with {n_features}; "
            f"pass covariates in the same order as in fit."
        )
    differs = np.any(t0[:, :k] != t1[:, :k], axis=1)
    if differs.any():
        raise InputError(
            f"T1 differs from T0 on the observed history (the first {k} steps) for "
            f"{int(differs.sum())} of {n} units; the history happened as observed, so a plan "
            f"may only change steps {k} onwards. Set T1[:, :{k}] = T0[:, :{k}]."
        )
    return ForecastInputs(X=x, Y=y, T0=t0, T1=t1, k=k, h=total - k)


# --------------------------------------------------------------------------------------------
# Scaling


@dataclass(frozen=True)
class Standardizer:
    """Affine scaling ``(a - mean) / scale`` along the last axis, fitted on training data."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray, *, per_feature: bool) -> Standardizer:
        if per_feature and a.shape[-1] == 0:  # no covariates (X=None)
            return cls(mean=np.zeros(0), scale=np.ones(0))
        flat = a.reshape(-1, a.shape[-1]) if per_feature else a.reshape(-1, 1)
        return cls.from_moments(flat.mean(axis=0), flat.std(axis=0))

    @classmethod
    def from_moments(cls, mean: np.ndarray, std: np.ndarray) -> Standardizer:
        """From per-column means and (population) standard deviations, e.g. a streamed pass."""
        # A constant column carries no information; scale 1 keeps it finite.
        scale = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(mean=np.asarray(mean, float), scale=scale)

    def transform(self, a: np.ndarray) -> np.ndarray:
        if self.mean.size == 1:
            return (a - self.mean[0]) / self.scale[0]
        return (a - self.mean) / self.scale

    def inverse(self, a: np.ndarray) -> np.ndarray:
        if self.mean.size == 1:
            return a * self.scale[0] + self.mean[0]
        return a * self.scale + self.mean

    def inverse_difference(self, d: np.ndarray) -> np.ndarray:
        """Map a difference of scaled values back to raw units (no offset)."""
        return d * self.scale[0]

    def to_state(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, list[float]]) -> Standardizer:
        return cls(mean=np.asarray(state["mean"], float), scale=np.asarray(state["scale"], float))


# --------------------------------------------------------------------------------------------
# The base class


class BaseEstimator:
    """Base of every kgcm estimator. See the module docstring for the contract.

    Class attributes
    ----------------
    name : str
        Registry name (``kgcm.make_estimator(name)``).
    tags : dict
        Capabilities: ``intervals`` (``effect_interval`` available), ``needs_covariates``
        (``X`` must have at least one feature), ``sequence`` (uses the time axis),
        ``binary_treatment`` (T must be 0/1; absent means False), ``forecast`` (answers the
        forecast estimand: ``T0``/``T1`` longer than ``X``; absent means False).
    test_params : dict or None
        Settings that make a fit take about a second, for the test suite's contract and
        behaviour tests (``tests/conftest.py`` reads them); None (the base) means not given yet.
    """

    name: ClassVar[str] = ""
    #: why ``fit(..., inference="bootstrap")`` is refused for this estimator ("" = allowed)
    no_bootstrap_reason: ClassVar[str] = ""
    #: why ``fit(..., inference="parametric")`` is refused ("" = allowed)
    no_parametric_reason: ClassVar[str] = ""
    #: whether effects report their progress to ``kgcm._progress.report`` (1 per pass of a
    #: member network over the units; see :meth:`effect_passes`)
    reports_progress: ClassVar[bool] = False
    tags: ClassVar[dict[str, bool]] = {
        "intervals": False,
        "needs_covariates": False,
        "sequence": True,
        "forecast": False,
    }
    test_params: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the settings every estimator shares (``seed``, ``training``) when it is built,
        so ``seed='zero'`` fails at construction, not minutes later inside ``fit``."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if not inspect.isfunction(init) or getattr(init, "_kgcm_checked", False):
            return  # none, or a partialmethod that calls a checked parent

        @functools.wraps(init)
        def checked(self: BaseEstimator, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if _outermost_init(type(self)) is checked:  # checked once, when all is set
                _check_shared_params(self)

        checked._kgcm_checked = True  # type: ignore[attr-defined]
        cls.__init__ = checked  # type: ignore[method-assign]

    # ---- parameters (scikit-learn style) -------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self"]

    def get_params(self) -> dict[str, Any]:
        """The constructor settings, as given."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # ---- the contract --------------------------------------------------------------------
    def fit(
        self,
        Y: Any,
        T: Any,
        *,
        X: Any | None = None,
        inference: Any = None,
        groups: Any = None,
    ) -> BaseEstimator:
        """Fit on factual outcomes ``Y (n, t)`` under treatment ``T (n, t)`` with covariates
        ``X (n, t, p)``. Returns ``self``.

        ``inference`` chooses how intervals are made (:mod:`kgcm.inference`): ``"model"``
        (default; the estimator's own uncertainty), ``"bootstrap"`` (refits on resamples of
        the units drawn by ``groups``, one label per unit; None resamples single units),
        ``"parametric"`` (refits on outcomes simulated from this fit, residual signs flipped
        by ``groups``) or ``kgcm.Inference(...)``."""
        from kgcm.inference import REFIT_METHODS, Inference, check_groups

        strategy = Inference.coerce(inference)
        reason = {"bootstrap": self.no_bootstrap_reason, "parametric": self.no_parametric_reason}
        if reason.get(strategy.method):
            raise ConfigError(
                f"{type(self).__name__} cannot use inference={strategy.method!r}: "
                f"{reason[strategy.method]}"
            )
        if groups is not None and strategy.method not in REFIT_METHODS:
            raise InputError(
                "groups is read by inference='bootstrap' or 'parametric' only (the units "
                "drawn together); pass one of them or leave groups out."
            )
        data = validate_inputs(Y, T, X)
        group_labels = check_groups(groups, data.T.shape[0])
        if self.tags.get("needs_covariates") and data.X.shape[2] == 0:
            raise InputError(
                f"{type(self).__name__} needs covariates X of shape (n_units, n_steps, "
                f"n_features) with n_features >= 1 to infer the hidden state; got X=None or "
                f"zero features. Pass the observed drivers (e.g. SSH and velocity) as X."
            )
        for what, arr in (("Y", data.Y), ("T", data.T), ("X", data.X)):
            with np.errstate(over="ignore", invalid="ignore"):
                sd = arr.std(axis=tuple(range(arr.ndim - 1))) if what == "X" else arr.std()
            if arr.size and not np.all(np.isfinite(sd)):
                raise InputError(
                    f"{what}'s values (largest magnitude {np.abs(arr).max():.3g}) are too large "
                    f"to standardise in float64; rescale {what} (e.g. to metres or m/s)."
                )
        self.n_features_in_ = int(data.X.shape[2])
        self.n_steps_in_ = int(data.T.shape[1])
        self.feature_names_in_ = self._resolve_feature_names(data)
        self.y_scaler_ = Standardizer.fit(data.Y, per_feature=False)
        self.t_scaler_ = Standardizer.fit(data.T, per_feature=False)
        self.x_scaler_ = Standardizer.fit(data.X, per_feature=True)
        from kgcm import distributed

        identity = distributed.estimator_identity(self)
        with self._input_context(X), distributed.fitting(identity):
            self._fit(data)
        # a diverged fit shows in its predictions; look at a few training units only (a model
        # fitted on a grid predicts whole grids: its results are checked in predict/effect)
        if not getattr(self, "spatial_", False):
            probe = slice(0, min(64, data.T.shape[0]))
            self._check_finite(self._predict(data.X[probe], data.T[probe]), "fitted predictions")
        refits: list[BaseEstimator] = []
        if strategy.method in REFIT_METHODS:
            refits = self._fit_refits(strategy.method, data, X, group_labels, strategy.n_bootstrap)
        # set together, once every refit succeeded: a failed refit leaves no half state
        self.inference_, self.bootstrap_ = strategy, refits
        return self

    def _fit_refits(
        self,
        method: str,
        data: ValidatedData,
        X: Any,
        groups: np.ndarray | None,
        n_refits: int,
    ) -> list[BaseEstimator]:
        """``n_refits`` copies of this estimator, each fitted with the model strategy: for
        ``"bootstrap"`` on a resample of the units drawn with replacement by group; for
        ``"parametric"`` on the same units and treatments with outcomes simulated from this
        fit (its factual prediction plus its in-sample residuals, their signs flipped at
        random by group)."""
        import sys

        from kgcm.inference import resample_groups, sign_flips

        labels = groups if groups is not None else np.arange(data.T.shape[0])
        params = self.get_params()
        base_seed = int(params.get("seed", 0) or 0)
        stream = 20_261_130 if method == "parametric" else 20_251_129
        rng = np.random.default_rng([base_seed, stream])
        if method == "parametric":
            fitted = self.predict(X, data.T)
            residuals = data.Y - fitted
        members = []
        for b in range(n_refits):
            if method == "parametric":
                simulated = fitted + sign_flips(labels, rng)[:, None] * residuals
                inputs = (simulated, data.T, X)
            else:
                idx = resample_groups(labels, rng)
                inputs = (data.Y[idx], data.T[idx], _take_units(X, idx) if X is not None else None)
            member_params = dict(params)
            if "seed" in member_params:
                member_params["seed"] = base_seed + 7919 * (b + 1)
            if sys.stderr.isatty():
                print(f"{type(self).__name__}: {method} refit {b + 1}/{n_refits}", file=sys.stderr)
            try:
                members.append(type(self)(**member_params).fit(inputs[0], inputs[1], X=inputs[2]))
            except KgcmError as exc:
                raise type(exc)(f"{method} refit {b + 1}/{n_refits}: {exc}") from exc
        return members

    def predict(self, X: Any | None, T: Any, *, factual: Any | None = None) -> np.ndarray:
        """Outcome under treatment path ``T``: ``(n_units, n_steps)`` in the outcome's units.

        ``factual`` is the path under which ``X`` was observed (default ``T``: a factual
        prediction). For a counterfactual ``T``, pass it: a model that reads the treatment
        when it infers its hidden state (KGCM-VAE with ``encoder_treatment=True``) infers the
        state from the factual path, as ``effect`` does, and only then applies ``T``."""
        self._check_fitted()
        data = validate_inputs(None, T, X, n_features=self.n_features_in_)
        with self._input_context(X):
            if factual is None:
                out = self._predict(data.X, data.T)
            else:
                observed = validate_inputs(
                    None, factual, X, n_features=self.n_features_in_, t_name="factual"
                )
                out = self._predict_under(data.X, observed.T, data.T)
        return self._check_finite(out, "predictions")

    def effect(self, X: Any | None = None, *, T0: Any, T1: Any, Y: Any | None = None) -> np.ndarray:
        """Effect ``Y_t(T1) − Y_t(T0)`` per unit and step, ``(n_units, n_steps)``.

        The whole path is replaced: the treatment, its history and anything derived from it.
        When ``T0``/``T1`` are longer than ``X`` (``k + h`` steps against ``k``), this is a
        forecast: ``X (n, k, p)`` and the optional ``Y (n, k)`` are the observed history,
        ``T0``/``T1`` history plus plan (equal on the history), and the result is the effect on
        the ``h`` plan steps, ``(n_units, h)``, computed without covariates after step ``k``.
        """
        self._check_fitted()
        plan = self._forecast_request(X, T0, T1, Y)
        if plan is not None:
            return self._check_finite(self._forecast_draws(plan).mean(axis=0), "effects")
        X_arr, T0_arr, T1_arr = self._validate_paths(X, T0, T1)
        with self._input_context(X):
            out = self._point_effect(X_arr, T0_arr, T1_arr)
        return self._check_finite(out, "effects")

    def effect_interval(
        self,
        X: Any | None = None,
        *,
        T0: Any,
        T1: Any,
        alpha: float = 0.05,
        Y: Any | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed ``1 − alpha`` interval of the effect: ``(lower, upper)``, each (n, t)
        (``(n, h)`` for a forecast; see :meth:`effect`), from the strategy chosen in ``fit``
        (:mod:`kgcm.inference`)."""
        _, lower, upper = self.effect_with_interval(X, T0=T0, T1=T1, alpha=alpha, Y=Y)
        return lower, upper

    def effect_with_interval(
        self,
        X: Any | None = None,
        *,
        T0: Any,
        T1: Any,
        alpha: float = 0.05,
        Y: Any | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(effect, lower, upper)``, each (n, t), from one pass (cheaper than both calls);
        a forecast (see :meth:`effect`) when ``T0``/``T1`` are longer than ``X``."""
        self._check_fitted()
        _check_alpha(alpha)
        plan = self._forecast_request(X, T0, T1, Y)
        if plan is not None:
            return self._forecast_interval(plan, alpha)
        X_arr, T0_arr, T1_arr = self._validate_paths(X, T0, T1)
        with self._input_context(X):
            if getattr(self, "bootstrap_", None):
                from kgcm.inference import refit_interval

                effect, own = self._effect_and_draws(X_arr, T0_arr, T1_arr)
                refits = []
                for member in self.bootstrap_:
                    with member._input_context(X):
                        refits.append(member._effect_and_draws(X_arr, T0_arr, T1_arr)[1])
                for draws in (own, *refits):
                    self._check_finite(draws, "effect draws")
                lower, upper = refit_interval(self.inference_.method, own, refits, alpha)
                return self._check_finite(effect, "effects"), lower, upper
            with_se = self._effect_se(X_arr, T0_arr, T1_arr)
            if with_se is not None:
                from scipy.stats import norm

                effect, se = with_se
                z = float(norm.ppf(1.0 - alpha / 2.0))
                self._check_finite(se, "effect standard errors")
                return self._check_finite(effect, "effects"), effect - z * se, effect + z * se
            draws = self._effect_draws(X_arr, T0_arr, T1_arr)
        if draws is None:
            raise NotImplementedError(self._no_interval_message())
        self._check_finite(draws, "effect draws")
        lower, upper = np.quantile(draws, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
        return draws.mean(axis=0), lower, upper

    def effect_passes(self) -> int:
        """How many passes over the units one ``effect``/``effect_with_interval`` call makes
        (member networks of the fit and of every refit): the total of the progress
        an estimator with ``reports_progress`` reports."""
        self._check_fitted()
        own = len(getattr(self, "models_", ())) or 1
        return own + sum(m.effect_passes() for m in getattr(self, "bootstrap_", []) or [])

    def gives_intervals(self) -> bool:
        """Whether this fitted estimator gives intervals (``effect_interval``): always after a
        bootstrap or parametric fit; otherwise the class's ``intervals`` tag, unless its
        settings say otherwise (an ensemble of one network gives point effects only; two or
        more give intervals even where the tag is False)."""
        return bool(getattr(self, "bootstrap_", None)) or self._model_gives_intervals()

    def _model_gives_intervals(self) -> bool:
        return bool(self.tags.get("intervals"))

    def ate(self, X: Any | None = None, *, T0: Any, T1: Any) -> float:
        """Average effect over all units and steps."""
        return float(self.effect(X, T0=T0, T1=T1).mean())

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted estimator to ``path`` (atomically). Read back with ``kgcm.load``."""
        import torch

        self._check_fitted()
        payload = self._payload()
        payload["checksum"] = payload_digest(payload)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def _payload(self) -> dict[str, Any]:
        """Everything ``save`` writes (bootstrap refits nested as their own payloads)."""
        strategy = getattr(self, "inference_", None)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kgcm_version": _version(),
            "estimator": self.name,
            "params": _jsonable(self.get_params()),
            "common": {
                "n_features_in_": self.n_features_in_,
                "n_steps_in_": self.n_steps_in_,
                "feature_names_in_": list(self.feature_names_in_)
                if self.feature_names_in_
                else None,
                "y_scaler_": self.y_scaler_.to_state(),
                "t_scaler_": self.t_scaler_.to_state(),
                "x_scaler_": self.x_scaler_.to_state(),
            },
            "state": self._get_state(),
            "inference": None if strategy is None else strategy.to_dict(),
            "bootstrap": [m._payload() for m in getattr(self, "bootstrap_", [])],
        }

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> BaseEstimator:
        from kgcm.inference import Inference

        est = cls(**_unjsonable(payload["params"]))
        est.inference_ = Inference.coerce(payload.get("inference"))
        est.bootstrap_ = [cls._from_payload(p) for p in payload.get("bootstrap", [])]
        common = payload["common"]
        est.n_features_in_ = int(common["n_features_in_"])
        est.n_steps_in_ = int(common["n_steps_in_"])
        names = common["feature_names_in_"]
        est.feature_names_in_ = tuple(names) if names is not None else None
        est.y_scaler_ = Standardizer.from_state(common["y_scaler_"])
        est.t_scaler_ = Standardizer.from_state(common["t_scaler_"])
        est.x_scaler_ = Standardizer.from_state(common["x_scaler_"])
        est._set_state(payload["state"])
        return est

    # ---- hooks for subclasses ------------------------------------------------------------
    def _fit(self, data: ValidatedData) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _effect_draws(self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray) -> np.ndarray | None:
        """Draws of the effect, ``(n_draws, n_units, n_steps)``, or None (point only)."""
        return None

    def _predict_under(self, X: np.ndarray, factual: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Outcome under ``T`` with the hidden state inferred under ``factual``; models whose
        state does not read the treatment ignore ``factual``."""
        del factual
        return self._predict(X, T)

    def _effect_se(
        self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(effect, standard error)``, each (n, t), for estimators whose model uncertainty
        is a standard error (normal intervals), or None."""
        return None

    def _input_context(self, X: Any) -> contextlib.AbstractContextManager[None]:
        """Held around the hooks of one public call, with the caller's ``X`` as given (before
        validation turns it into an array): estimators that read more than the values (the
        grid coordinates of a DataArray) take them here."""
        del X
        return contextlib.nullcontext()

    def _no_interval_message(self) -> str:
        return (
            f"{type(self).__name__} gives point effects only; use an estimator whose tags "
            f"include intervals=True (kgcm.list_estimators(intervals=True)), or fit with "
            f"inference='bootstrap' or 'parametric'."
        )

    def _point_effect(self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray) -> np.ndarray:
        """The point effect on validated arrays: the effect of the standard errors' model, the
        mean of the model's draws, or the difference of predictions."""
        with_se = self._effect_se(X, T0, T1)
        if with_se is not None:
            return with_se[0]
        return self._effect_and_draws(X, T0, T1)[0]

    def _effect_and_draws(
        self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(point effect, draws)`` from one pass: the model's draws and their mean, or the
        difference of predictions as a single draw (a refit's share of its interval;
        estimators with standard errors refuse refits, see ``no_bootstrap_reason``)."""
        draws = self._effect_draws(X, T0, T1)
        if draws is None:
            effect = self._predict(X, T1) - self._predict(X, T0)
            return effect, effect[None]
        return draws.mean(axis=0), draws

    def _forecast_effect_draws(
        self, X: np.ndarray, Y: np.ndarray | None, T0: np.ndarray, T1: np.ndarray
    ) -> np.ndarray:
        """Draws of the effect on the plan steps, ``(n_draws, n_units, h)``.

        ``X (n, k, p)`` and ``Y (n, k)`` (or None) are the observed history, ``T0``/``T1``
        ``(n, k + h)`` history plus plan, equal on the history. One draw for a point forecast.
        Only estimators tagged ``forecast`` implement it.
        """
        raise NotImplementedError

    # ---- forecasts -----------------------------------------------------------------------
    def _forecast_request(
        self, X: Any | None, T0: Any, T1: Any, Y: Any | None
    ) -> ForecastInputs | None:
        """The checked forecast inputs when ``T0``/``T1`` extend beyond the history; None when
        they cover the same steps as ``X`` (the whole-path estimand)."""
        plan = validate_forecast_inputs(X, T0, T1, Y, n_features=self.n_features_in_)
        if plan is None:
            return None
        if not self.tags.get("forecast"):
            from kgcm.estimators import list_estimators

            raise InputError(
                f"{type(self).__name__} cannot forecast under a treatment plan: T0/T1 have "
                f"{plan.k + plan.h} steps but the history X has {plan.k}, and this estimator "
                f"needs the covariates of every step it is asked about. Use an estimator that "
                f"forecasts ({', '.join(list_estimators(forecast=True))}), or give T0/T1 the "
                f"{plan.k} steps of X."
            )
        return plan

    def _forecast_draws(self, plan: ForecastInputs) -> np.ndarray:
        draws = self._forecast_effect_draws(plan.X, plan.Y, plan.T0, plan.T1)
        expected = (plan.X.shape[0], plan.h)
        if draws.ndim != 3 or draws.shape[1:] != expected:  # pragma: no cover - a bug
            raise RuntimeError(
                f"{type(self).__name__}._forecast_effect_draws returned shape {draws.shape}; "
                f"expected (n_draws, {expected[0]}, {expected[1]})."
            )
        return self._check_finite(draws, "forecast effect draws")

    def _forecast_interval(
        self, plan: ForecastInputs, alpha: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.gives_intervals():
            raise NotImplementedError(
                f"{type(self).__name__} gives point forecasts only; use effect(...) or an "
                f"estimator whose tags include intervals=True and forecast=True "
                f"(kgcm.list_estimators(intervals=True, forecast=True))."
            )
        draws = self._forecast_draws(plan)
        effect = draws.mean(axis=0)
        if getattr(self, "bootstrap_", None):  # the refits' spread added (kgcm.inference)
            from kgcm.inference import refit_interval

            refits = [m._forecast_draws(plan) for m in self.bootstrap_]
            lower, upper = refit_interval(self.inference_.method, draws, refits, alpha)
            return effect, lower, upper
        lower, upper = np.quantile(draws, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
        return effect, lower, upper

    def _get_state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        del state

    # ---- helpers -------------------------------------------------------------------------
    def _resolve_feature_names(self, data: ValidatedData) -> tuple[str, ...] | None:
        given = getattr(self, "feature_names", None)
        names = tuple(given) if given is not None else data.feature_names
        if names is not None and len(names) != data.X.shape[2]:
            raise InputError(
                f"feature_names has {len(names)} names but X has {data.X.shape[2]} features; "
                f"give one name per covariate, in X's order."
            )
        return names

    def _check_finite(self, values: np.ndarray, what: str) -> np.ndarray:
        """Refuse NaN or infinite results, naming the likely causes (never returned silently)."""
        if np.all(np.isfinite(values)):
            return values
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        y_scale = getattr(getattr(self, "y_scaler_", None), "scale", None)
        training = getattr(self, "training", None)
        lr = getattr(training, "learning_rate", None)
        if isinstance(training, dict):
            lr = training.get("learning_rate")
        raise InputError(
            f"{type(self).__name__}: {bad} of {values.size} {what} are NaN or infinite. Likely "
            f"causes: the scale of Y (its standard deviation was {_fmt_scale(y_scale)}; rescale "
            f"Y to moderate numbers), or a diverged fit (learning rate "
            f"{lr if lr is not None else 'default'}; lower training.learning_rate and refit)."
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(Y, T, X=X) first."
            )

    def _validate_paths(
        self, X: Any | None, T0: Any, T1: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if np.shape(T0) != np.shape(T1):
            raise InputError(
                f"T0 has shape {np.shape(T0)} but T1 has {np.shape(T1)}; they must match: "
                f"both (n_units, n_steps), the same units and steps."
            )
        d0 = validate_inputs(None, T0, X, n_features=self.n_features_in_, t_name="T0")
        d1 = validate_inputs(None, T1, X, n_features=self.n_features_in_, t_name="T1")
        if d0.T.shape != d1.T.shape:
            raise InputError(f"T0 has shape {d0.T.shape} but T1 has {d1.T.shape}; they must match.")
        return d0.X, d0.T, d1.T


class MemberEnsemble:
    """``_predict`` and ``_effect_draws`` for estimators holding several fitted networks
    (seeds or bootstrap refits) whose ``_member_predictions(X, T)`` returns the scaled
    predictions of each, ``(n_members, n, t)``: the prediction is the members' mean, and with
    two members or more the effect draws are the members' effects."""

    y_scaler_: Standardizer
    models_: list[Any]
    histories_: list[list[dict[str, float]]]
    history_: list[dict[str, float]]

    def _member_predictions(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _predict(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        return self.y_scaler_.inverse(self._member_predictions(X, T).mean(axis=0))

    def _effect_draws(self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray) -> np.ndarray | None:
        if len(self.models_) < 2:
            return None
        diff = self._member_predictions(X, T1) - self._member_predictions(X, T0)
        return self.y_scaler_.inverse_difference(diff)

    def _model_gives_intervals(self) -> bool:
        return len(self.models_) >= 2

    def _build(self) -> Any:
        raise NotImplementedError

    def _members_state(self) -> dict[str, Any]:
        """The members' weights and training histories, for ``_get_state``."""
        return {
            "models": [m.state_dict() for m in self.models_],
            "histories": self.histories_,
        }

    def _load_members(self, state: dict[str, Any]) -> None:
        """Rebuild the members (``self._build()``) from ``_members_state``'s output."""
        self.histories_ = state["histories"]
        self.history_ = self.histories_[0]
        self.models_ = []
        for weights in state["models"]:
            net = self._build()
            net.load_state_dict(weights)
            self.models_.append(net.eval())


def _take_units(X: Any, index: np.ndarray) -> Any:
    """The units ``index`` of ``X`` as given (a DataArray keeps its coordinates)."""
    if isinstance(X, xr.DataArray):
        dims = [str(d) for d in X.dims]
        named = [d for d in dims if d in _DIM_ROLES["unit"]]
        return X.isel({named[0] if named else dims[0]: index})
    return np.asarray(X)[index]


def _outermost_init(cls: type) -> Any:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if inspect.isfunction(init):
            return init
    return None


def _check_shared_params(est: BaseEstimator) -> None:
    name = type(est).__name__
    seed = getattr(est, "seed", None)
    if "seed" in est._param_names() and (
        isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
    ):
        raise ConfigError(
            f"{name}: seed must be a non-negative integer (e.g. seed=0); got {seed!r}."
        )
    if "training" in est._param_names():
        from kgcm.estimators.training import TrainingConfig

        TrainingConfig.coerce(getattr(est, "training", None))


def _check_alpha(alpha: Any) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, float | int) or not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be a number in (0, 1), e.g. 0.05; got {alpha!r}.")


def _fmt_scale(scale: Any) -> str:
    try:
        return f"{float(np.max(scale)):.3g}"
    except (TypeError, ValueError):
        return "unknown"


def payload_digest(payload: Any) -> str:
    """SHA-256 over a saved estimator's content (every key, value and tensor byte, the
    ``checksum`` entry left out): ``kgcm.load`` recomputes it, so a damaged file is refused
    instead of loading wrong weights."""
    import torch

    h = hashlib.sha256()

    def feed(v: Any) -> None:
        if isinstance(v, dict):
            h.update(b"{")
            for k in v:
                if k == "checksum" and v is payload:
                    continue
                h.update(repr(k).encode())
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, list | tuple):
            h.update(b"[" if isinstance(v, list) else b"(")
            for x in v:
                feed(x)
            h.update(b"]")
        elif isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, np.ndarray):
            h.update(f"A{v.dtype}{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes())
        else:
            h.update(f"{type(v).__name__}:{v!r};".encode())

    feed(payload)
    return h.hexdigest()


def _version() -> str:
    from kgcm import __version__

    return __version__


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Params as plain types (tuples become lists) so they load with weights_only=True."""

    def conv(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if hasattr(v, "to_dict"):
            return conv(v.to_dict())
        if isinstance(v, np.generic):  # a NumPy scalar (np.int64(4)) as its Python number
            return v.item()
        return v

    return {k: conv(v) for k, v in params.items()}


def _unjsonable(params: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, list):
            return tuple(conv(x) for x in v)
        return v

    return {k: conv(v) if not isinstance(v, dict) else v for k, v in params.items()}
