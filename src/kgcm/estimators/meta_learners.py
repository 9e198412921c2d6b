r"""Meta-learners (Künzel, Sekhon, Bickel, Yu 2019): the S-learner and the T-learner.

- **S-learner** ("single"): one regression :math:`\mu(x, t)` of the outcome on the covariates
  and the treatment together; :math:`\hat\tau(x) = \mu(x, T^1) - \mu(x, T^0)`. Works for a
  continuous treatment as it is.
- **T-learner** ("two"): one regression per arm, :math:`\mu_0(x)` on the control samples and
  :math:`\mu_1(x)` on the treated ones; :math:`\hat\tau(x) = \mu_{T^1}(x) - \mu_{T^0}(x)`. Needs
  a binary treatment (0/1); other values are refused rather than split at an arbitrary
  threshold, which would change the estimand.

Base learners are scikit-learn gradient boosting (default) or random forests, seeded from
``seed``; after fitting they are exported to arrays (:mod:`kgcm.estimators._flat_models`) so the
estimators save with the safe weights-only format.

Static methods: each ``(unit, step)`` is one independent sample with covariates
``X[unit, step]``; history is ignored. Covariates and outcome are used in their own units (trees
do not need scaling).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from kgcm.errors import ConfigError, InputError
from kgcm.estimators._flat_models import FlatRegressor, RegressorEstimator
from kgcm.estimators._static import check_binary_paths, check_binary_treatment, rows
from kgcm.estimators.base import ValidatedData

__all__ = ["SLearner", "TLearner"]


class _MetaLearner(RegressorEstimator):
    """Settings checks shared by the S- and T-learner (the settings: RegressorEstimator)."""

    def _check_params(self) -> None:
        self._check_learner()
        if not isinstance(self.seed, int | np.integer) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer; got {self.seed!r}.")


class SLearner(_MetaLearner):
    """S-learner: one model of the outcome on ``[X, T]``; continuous or binary treatment.

    Each ``(unit, step)`` is one independent sample with ``X[unit, step]``; history is ignored.

    Parameters
    ----------
    seed : int
        ``random_state`` of the base learner. Same seed, same numbers.
    model : {"gradient-boosting", "random-forest", "linear"}
        Base learner (see :func:`~kgcm.estimators._flat_models.make_regressor`); "linear"
        gives a constant effect, for reference.
    n_estimators : int
        Trees of the ensemble.
    max_depth : int, optional
        Tree depth (default 3 for boosting, unlimited for forests).

    Attributes
    ----------
    model_ : FlatRegressor
        The fitted base learner on features ``[X, T]``.
    """

    name: ClassVar[str] = "s-learner"
    #: fast settings for the test suite
    test_params: ClassVar[dict[str, Any]] = {"n_estimators": 10}
    tags: ClassVar[dict[str, bool]] = {
        "intervals": False,
        "needs_covariates": False,
        "sequence": False,
        "binary_treatment": False,
    }

    def _fit(self, data: ValidatedData) -> None:
        self._check_params()
        assert data.Y is not None
        features = np.concatenate([rows(data.X), rows(data.T)[:, None]], axis=1)
        self.model_ = self._fit_flat(features, rows(data.Y))

    def _predict(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        features = np.concatenate([rows(X), rows(T)[:, None]], axis=1)
        return self.model_.predict(features).reshape(T.shape)

    def _get_state(self) -> dict[str, Any]:
        return {"model": self.model_.to_state()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.model_ = FlatRegressor.from_state(state["model"])


class TLearner(_MetaLearner):
    """T-learner: one outcome model per arm; binary treatment (0/1) only.

    Each ``(unit, step)`` is one independent sample with ``X[unit, step]``; history is ignored.
    A treatment with other values is refused with an :class:`~kgcm.errors.InputError`; use the
    S-learner or a DML estimator for continuous treatments.

    Parameters
    ----------
    seed, model, n_estimators, max_depth
        As for :class:`SLearner`.

    Attributes
    ----------
    models_ : list of FlatRegressor
        ``[mu_0, mu_1]``, fitted on the control and the treated samples.
    """

    name: ClassVar[str] = "t-learner"
    #: fast settings for the test suite
    test_params: ClassVar[dict[str, Any]] = {"n_estimators": 10}
    tags: ClassVar[dict[str, bool]] = {
        "intervals": False,
        "needs_covariates": True,
        "sequence": False,
        "binary_treatment": True,
    }

    def _fit(self, data: ValidatedData) -> None:
        self._check_params()
        assert data.Y is not None
        check_binary_treatment(data.T, "T", type(self).__name__)
        X, t, y = rows(data.X), rows(data.T), rows(data.Y)
        treated = t > 0.5
        counts = (int((~treated).sum()), int(treated.sum()))
        if min(counts) < 2:
            raise InputError(
                f"TLearner fits one model per arm and needs at least 2 samples in each; got "
                f"{counts[0]} control and {counts[1]} treated samples. Fit on data with both "
                f"arms, or use the S-learner."
            )
        self.models_ = [
            self._fit_flat(X[~treated], y[~treated]),
            self._fit_flat(X[treated], y[treated]),
        ]

    def _predict(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        check_binary_treatment(T, "T", type(self).__name__)
        X_rows, t = rows(X), rows(T)
        y0, y1 = (m.predict(X_rows) for m in self.models_)
        return np.where(t > 0.5, y1, y0).reshape(T.shape)

    def _effect_draws(self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray) -> None:
        # check both paths; the base class then takes predict(T1) - predict(T0)
        check_binary_paths(T0, T1, type(self).__name__)
        return None

    def _get_state(self) -> dict[str, Any]:
        return {"models": [m.to_state() for m in self.models_]}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.models_ = [FlatRegressor.from_state(s) for s in state["models"]]
