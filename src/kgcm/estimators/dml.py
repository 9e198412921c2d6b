r"""Double machine learning references from EconML: ``linear-dml`` and ``dynamic-dml``.

EconML is an optional extra (``pip install 'kgcm[econml]'``); it is imported only when one of
these estimators is fitted.

**linear-dml** (Chernozhukov et al. 2018; ``econml.dml.LinearDML``), a static method on
flattened steps: each ``(unit, step)`` is one sample with covariates ``X[unit, step]`` and the
history is ignored. Partially linear model with a continuous (or 0/1) treatment,

.. math::

    Y = \theta(X)\, T + g(X) + \varepsilon, \qquad \theta(x) = c_0 + c^\top x,

fitted by cross-fitted residual-on-residual regression; effects
:math:`\hat\tau = \theta(x)(T^1 - T^0)` with normal intervals from EconML's statsmodels
inference (the covariance of :math:`(c_0, c)`).

**dynamic-dml** (Lewis and Syrgkanis 2021; ``econml.panel.dml.DynamicDML``) on the panel:
each unit's window is cut into consecutive sub-windows of ``n_lags`` = :math:`m` steps, each a
group whose steps are periods. It estimates :math:`\theta_j(x)`, the effect of the
treatment at period :math:`j` on the outcome at the last period :math:`m - 1`, heterogeneous in
each group's first-step covariates when fitting (later steps enter as time-varying controls);
effects are then computed with the window's first-step covariates :math:`x = X[:, 0]` at every
step. The sub-windows of one unit are treated as independent groups by EconML (in the
cross-fitting folds and the standard errors), which makes the intervals optimistic.
DynamicDML reads one outcome per group (its last period), so cutting a window of :math:`w`
steps into :math:`w / m` groups gives that many more outcomes for :math:`m` lag effects instead
of :math:`w`; lags of :math:`m` steps or more are assumed to have no effect. With the whole
30-step window as one group (``n_lags=None``) the 30 lag effects, heterogeneous in 6
covariates, came from one outcome per unit and were noise-dominated (estimated lag effects
alternating in sign): on tuning worlds of the ``arctic`` simulator at confounding 2 the
held-out factual RMSE was 0.31-1.62 m and the effects worse than none on 2 of 3 seeds.
``n_lags=2`` has the lowest mean factual RMSE of 2, 3, 5, 10 and 30 there (3 seeds); 1 (no
lagged effect at all, a static model like ``linear-dml``) was not a candidate
(docs/baselines.md).
Read as a lag structure, :math:`\beta_l = \theta_{m-1-l}` is the effect of a treatment ``l``
steps earlier. Assuming the effects depend on the lag only (time homogeneity), the effect of a
changed path at every step is

.. math::

    \hat\tau_s = \sum_{l=0}^{\min(s, m-1)} \beta_l(x)\, (T^1_{s-l} - T^0_{s-l}),

which at the last step of a training-length window is exactly EconML's effect of the path;
lags of ``m`` steps or more count as no effect. Intervals are normal, from the covariance of
the stacked coefficients that EconML's inference estimates.

Predictions. DML estimates effects, not outcome levels. ``predict`` adds the fitted effect part
to a baseline :math:`b(x)` regressed on the residual :math:`Y - \text{effect part}` (same
learner as the nuisances), so ``predict(T1) - predict(T0)`` is the effect; use it for factual
diagnostics, not as a forecast.

Nuisance models are scikit-learn learners seeded from ``seed`` (cross-fitting folds too), so
the same seed gives the same numbers. After fitting, everything needed for effects, intervals
and predictions is kept as arrays (coefficients, their covariance, the baseline exported with
:mod:`kgcm.estimators._flat_models`), so the estimators save with the safe weights-only format;
the EconML object itself is not kept.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from kgcm.errors import ConfigError, InputError
from kgcm.estimators._flat_models import FlatRegressor, RegressorEstimator
from kgcm.estimators._static import check_positive_int, rows
from kgcm.estimators.base import ValidatedData

__all__ = ["DynamicDML", "LinearDML", "require_econml"]


def require_econml() -> Any:
    """Import econml, or raise an ImportError that says how to install it."""
    try:
        import econml
    except ImportError as exc:
        raise ImportError(
            "the DML estimators ('linear-dml', 'dynamic-dml') need EconML, which is not "
            "installed; install the optional extra with: pip install 'kgcm[econml]'"
        ) from exc
    return econml


def _linear_params(final_model: Any, n_params: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and their covariance from EconML's statsmodels final model."""
    import econml

    try:
        params = np.asarray(final_model._param, dtype=np.float64).ravel()
        cov = np.asarray(final_model._param_var, dtype=np.float64)
    except AttributeError as exc:  # pragma: no cover - depends on the EconML version
        raise RuntimeError(
            f"{source}: could not read the final-stage coefficients from EconML "
            f"{econml.__version__}; kgcm was tested with EconML 0.15-0.17. Install one of those."
        ) from exc
    if params.shape != (n_params,) or cov.shape != (n_params, n_params):  # pragma: no cover
        raise RuntimeError(
            f"{source}: EconML {econml.__version__} returned {params.shape[0]} final-stage "
            f"coefficients where {n_params} were expected; install EconML 0.15-0.17."
        )
    return params, cov


def _check_same(ours: np.ndarray, theirs: np.ndarray, source: str) -> None:
    """Guard against EconML internals changing meaning: our effects must equal EconML's."""
    import econml

    if not np.allclose(ours, theirs, rtol=1e-6, atol=1e-9 * max(1.0, np.abs(theirs).max())):
        raise RuntimeError(  # pragma: no cover - depends on the EconML version
            f"{source}: effects rebuilt from EconML {econml.__version__}'s coefficients do not "
            f"match EconML's own (max difference {np.abs(ours - theirs).max():.3g}); install "
            f"EconML 0.15-0.17."
        )


class _DMLBase(RegressorEstimator):
    """Settings, intervals and persistence shared by the two DML estimators."""

    no_bootstrap_reason: ClassVar[str] = (
        "EconML's standard errors already carry the estimation uncertainty (its intervals are "
        "the 'model' strategy), and a resample's copies of one unit would land in different "
        "cross-fitting folds, so the nuisances would predict them in-sample."
    )
    no_parametric_reason: ClassVar[str] = (
        "EconML's standard errors already carry the estimation uncertainty (its intervals are "
        "the 'model' strategy)."
    )

    def __init__(
        self,
        *,
        seed: int = 0,
        model: str = "gradient-boosting",
        n_estimators: int = 100,
        max_depth: int | None = None,
        cv: int = 2,
    ) -> None:
        super().__init__(seed=seed, model=model, n_estimators=n_estimators, max_depth=max_depth)
        self.cv = cv

    def _check_params(self) -> None:
        self._check_learner()
        check_positive_int(self.cv, "cv")
        if self.cv < 2:
            raise ConfigError(f"cv must be at least 2 (cross-fitting folds); got {self.cv!r}.")

    # subclasses: effect (n, t) and its standard error (n, t) for paths T0 -> T1; the shared
    # interval path (kgcm.inference) turns them into normal intervals
    def _effect_se(
        self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _get_state(self) -> dict[str, Any]:
        return {
            "params": self.params_.tolist(),
            "cov": self.cov_.tolist(),
            "baseline": self.baseline_.to_state(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.params_ = np.asarray(state["params"], dtype=np.float64)
        self.cov_ = np.asarray(state["cov"], dtype=np.float64)
        self.baseline_ = FlatRegressor.from_state(state["baseline"])


class LinearDML(_DMLBase):
    """EconML's LinearDML on flattened steps: effects linear in X, continuous treatment.

    Each ``(unit, step)`` is one independent sample with ``X[unit, step]``; history is ignored.
    Needs EconML (``pip install 'kgcm[econml]'``).

    Parameters
    ----------
    seed : int
        Seeds the cross-fitting folds and the nuisance learners. Same seed, same numbers.
    model : {"gradient-boosting", "random-forest", "linear"}
        Learner of the nuisances E[Y|X], E[T|X] and of the prediction baseline.
    n_estimators, max_depth
        Tree settings of the learner.
    cv : int
        Cross-fitting folds (>= 2).

    Attributes
    ----------
    params_ : ndarray, shape (n_features + 1,)
        :math:`(c_0, c)`: :math:`\\theta(x) = c_0 + c^\\top x` in the covariates' own units.
    cov_ : ndarray, shape (n_features + 1, n_features + 1)
        Their covariance (EconML's statsmodels inference).
    baseline_ : FlatRegressor
        :math:`b(x)` of ``predict``.
    """

    name: ClassVar[str] = "linear-dml"
    #: fast settings for the test suite
    test_params: ClassVar[dict[str, Any]] = {"model": "linear"}
    tags: ClassVar[dict[str, bool]] = {
        "intervals": True,
        "needs_covariates": True,
        "sequence": False,
        "binary_treatment": False,
    }

    def _fit(self, data: ValidatedData) -> None:
        self._check_params()
        require_econml()
        from econml.dml import LinearDML as EconLinearDML

        assert data.Y is not None
        X, t, y = rows(data.X), rows(data.T), rows(data.Y)
        if np.ptp(t) <= 0:
            raise InputError(
                f"T is constant ({t[0]:g}) across all samples; DML needs treatment variation."
            )
        est = EconLinearDML(
            model_y=self._regressor(),
            model_t=self._regressor(),
            discrete_treatment=False,
            cv=int(self.cv),
            random_state=int(self.seed),
        )
        est.fit(y, t, X=X, inference="statsmodels")
        self.params_, self.cov_ = _linear_params(est.model_final_, X.shape[1] + 1, "LinearDML")
        check = slice(0, min(50, X.shape[0]))
        _check_same(
            self._theta(X[check]), np.ravel(est.const_marginal_effect(X[check])), "LinearDML"
        )
        residual = y - self._theta(X) * t
        self.baseline_ = self._fit_flat(X, residual)

    def _features(self, X_rows: np.ndarray) -> np.ndarray:
        return np.concatenate([np.ones((X_rows.shape[0], 1)), X_rows], axis=1)

    def _theta(self, X_rows: np.ndarray) -> np.ndarray:
        """:math:`\\theta(x)` per sample, (n_samples,)."""
        return self._features(X_rows) @ self.params_

    def _predict(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        X_rows = rows(X)
        return (self.baseline_.predict(X_rows) + self._theta(X_rows) * rows(T)).reshape(T.shape)

    def _effect_se(
        self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        phi = self._features(rows(X))
        dt = rows(T1) - rows(T0)
        effect = (phi @ self.params_) * dt
        sd_theta = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", phi, self.cov_, phi), 0.0))
        return effect.reshape(T0.shape), (np.abs(dt) * sd_theta).reshape(T0.shape)


class DynamicDML(_DMLBase):
    """EconML's DynamicDML on the panel: lagged effects of a changed treatment path.

    Units are groups and steps are periods; effects at each step sum the lagged effects of the
    change in the path (see the module docstring for the time-homogeneity reading). Needs
    EconML (``pip install 'kgcm[econml]'``).

    Parameters
    ----------
    seed, n_estimators, max_depth, cv
        As for :class:`LinearDML` (folds keep each group's steps together).
    n_lags : int or None
        ``m``, the number of lags with an estimated effect (lags ``>= m`` have none): windows
        are cut into ``w // m`` groups of ``m`` consecutive steps (the last ``w % m`` steps
        are left out of the effect model's fit). None, or a value of at least the window
        length ``w``, makes each whole window one group.
    model : {"linear", "gradient-boosting", "random-forest"}
        Nuisance and baseline learner; linear (least squares) by default because DynamicDML fits
        about ``m (m + 3) / 2`` nuisance models per fold for ``m`` steps.
    heterogeneity : bool
        Effects linear in the first-step covariates (each group's when fitting, ``X[:, 0]``
        when computing effects) (True) or constant, with X only as controls (False).

    Attributes
    ----------
    n_lags_ : int
        ``m``, the number of lags with an estimated effect (``n_lags``, at most the training
        window length).
    params_ : ndarray, shape (m * k,)
        Stacked coefficients, period ``j`` in block ``j`` (``k = n_features + 1`` with
        heterogeneity, else 1; intercept first).
    cov_ : ndarray, shape (m * k, m * k)
        Their covariance (EconML's inference).
    baseline_ : FlatRegressor
        :math:`b(x_s)` of ``predict``.
    """

    name: ClassVar[str] = "dynamic-dml"
    #: fast settings for the test suite
    test_params: ClassVar[dict[str, Any]] = {"model": "linear"}
    tags: ClassVar[dict[str, bool]] = {
        "intervals": True,
        "needs_covariates": True,
        "sequence": True,
        "binary_treatment": False,
    }

    def __init__(
        self,
        *,
        seed: int = 0,
        model: str = "linear",
        n_estimators: int = 100,
        max_depth: int | None = None,
        cv: int = 2,
        heterogeneity: bool = True,
        n_lags: int | None = 2,
    ) -> None:
        super().__init__(
            seed=seed, model=model, n_estimators=n_estimators, max_depth=max_depth, cv=cv
        )
        self.heterogeneity = heterogeneity
        self.n_lags = n_lags

    def _fit(self, data: ValidatedData) -> None:
        self._check_params()
        require_econml()
        from econml.panel.dml import DynamicDML as EconDynamicDML

        if self.n_lags is not None:
            check_positive_int(self.n_lags, "n_lags")
        assert data.Y is not None
        n, w = data.T.shape
        if n < 2 * self.cv:
            raise InputError(
                f"DynamicDML splits units into cv={self.cv} folds and needs at least "
                f"{2 * self.cv} units; got {n}. Pass more units or lower cv."
            )
        m = w if self.n_lags is None else min(int(self.n_lags), w)
        per_unit = w // m

        def groups_of(a: np.ndarray) -> np.ndarray:
            """(n, w, ...) -> (n * per_unit, m, ...): consecutive sub-windows of m steps."""
            return a[:, : per_unit * m].reshape(n * per_unit, m, *a.shape[2:])

        X_g, T_g, Y_g = groups_of(data.X), groups_of(data.T), groups_of(data.Y)
        X, t, y = rows(X_g), rows(T_g), rows(Y_g)
        if np.ptp(t) <= 0:
            raise InputError(
                f"T is constant ({t[0]:g}) across all samples; DML needs treatment variation."
            )
        groups = np.repeat(np.arange(n * per_unit), m)
        est = EconDynamicDML(
            model_y=self._regressor(),
            model_t=self._regressor(),
            cv=int(self.cv),
            random_state=int(self.seed),
        )
        if self.heterogeneity:
            est.fit(y, t, X=X, groups=groups, inference="auto")
        else:
            est.fit(y, t, X=None, W=X, groups=groups, inference="auto")
        self.n_lags_ = int(m)
        k = self._n_block(data.X.shape[2])
        self.params_, self.cov_ = _linear_params(
            est._ortho_learner_model_final.model_final_, m * k, "DynamicDML"
        )
        first = X_g[: min(n, 50), 0, :]
        theirs = est.const_marginal_effect(first if self.heterogeneity else None)
        theirs = np.broadcast_to(np.asarray(theirs).reshape(-1, m), (first.shape[0], m))
        _check_same(self._period_effects(first), theirs, "DynamicDML")
        effect_part = self._lag_sum(data.X, data.T)
        self.baseline_ = self._fit_flat(rows(data.X), rows(data.Y) - rows(effect_part))

    def _n_block(self, n_features: int) -> int:
        return n_features + 1 if self.heterogeneity else 1

    def _phi(self, first: np.ndarray) -> np.ndarray:
        """Heterogeneity features ``[1, x]`` (or ``[1]``) of the first step, (n, k)."""
        ones = np.ones((first.shape[0], 1))
        return np.concatenate([ones, first], axis=1) if self.heterogeneity else ones

    def _period_effects(self, first: np.ndarray) -> np.ndarray:
        """:math:`\\theta_j(x)` per unit and period, (n, m)."""
        k = self._n_block(first.shape[1])
        blocks = self.params_.reshape(self.n_lags_, k)
        return self._phi(first) @ blocks.T

    def _design(self, X: np.ndarray, dT: np.ndarray) -> np.ndarray:
        """Row vectors ``a`` with effect = a @ params: (n, t, m * k)."""
        n, t = dT.shape
        m, phi = self.n_lags_, self._phi(X[:, 0, :])
        k = phi.shape[1]
        # weight of period block j at step s: dT[s - l] with lag l = m - 1 - j
        weights = np.zeros((n, t, m))
        for s in range(t):
            for lag in range(min(s + 1, m)):
                weights[:, s, m - 1 - lag] = dT[:, s - lag]
        return (weights[..., :, None] * phi[:, None, None, :]).reshape(n, t, m * k)

    def _lag_sum(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Effect part :math:`\\sum_l \\beta_l(x) T_{s-l}` of the path, (n, t)."""
        return self._design(X, T) @ self.params_

    def _predict(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        base = self.baseline_.predict(rows(X)).reshape(T.shape)
        return base + self._lag_sum(X, T)

    def _effect_se(
        self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        effect = np.empty(T0.shape)
        se = np.empty(T0.shape)
        # chunks of units bound the (units, steps, m * k) design array
        k = self._n_block(X.shape[2])
        chunk = max(1, 2_000_000 // max(1, T0.shape[1] * self.n_lags_ * k))
        for start in range(0, T0.shape[0], chunk):
            sl = slice(start, start + chunk)
            a = self._design(X[sl], T1[sl] - T0[sl])
            effect[sl] = a @ self.params_
            var = np.einsum("nti,ij,ntj->nt", a, self.cov_, a)
            se[sl] = np.sqrt(np.maximum(var, 0.0))
        return effect, se

    def _get_state(self) -> dict[str, Any]:
        return {**super()._get_state(), "n_lags": self.n_lags_}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self.n_lags_ = int(state["n_lags"])
