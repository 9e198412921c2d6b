"""The zero-effect reference: predicts no effect at all.

Its PEHE is the root mean square of the true effect, the score of an estimator that has learnt
nothing about the treatment. Every table prints it beside the models: a model is only
informative where it beats this line.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from kgcm.estimators.base import BaseEstimator, ValidatedData

__all__ = ["ZeroEffect"]


class ZeroEffect(BaseEstimator):
    """Effect 0 everywhere; the factual prediction is the training mean per step.

    Parameters
    ----------
    seed : int
        Accepted for the common interface; nothing here is random.
    """

    name: ClassVar[str] = "zero-effect"
    #: fast settings for the test suite (it has none to set)
    test_params: ClassVar[dict[str, Any]] = {}
    tags: ClassVar[dict[str, bool]] = {
        "intervals": True,
        "needs_covariates": False,
        "sequence": True,
        "forecast": True,
    }

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def _fit(self, data: ValidatedData) -> None:
        assert data.Y is not None
        self.step_mean_ = data.Y.mean(axis=0)
        self.mean_ = float(data.Y.mean())

    def _predict(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        n, t = T.shape
        if t == self.step_mean_.shape[0]:
            return np.broadcast_to(self.step_mean_, (n, t)).copy()
        return np.full((n, t), self.mean_)

    def _effect_draws(self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray) -> np.ndarray:
        return np.zeros((1, *T0.shape))

    def _forecast_effect_draws(
        self, X: np.ndarray, Y: np.ndarray | None, T0: np.ndarray, T1: np.ndarray
    ) -> np.ndarray:
        return np.zeros((1, T0.shape[0], T0.shape[1] - X.shape[1]))

    def _get_state(self) -> dict[str, Any]:
        return {"step_mean": self.step_mean_.tolist(), "mean": self.mean_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.step_mean_ = np.asarray(state["step_mean"], dtype=np.float64)
        self.mean_ = float(state["mean"])
