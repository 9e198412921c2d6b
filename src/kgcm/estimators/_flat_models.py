"""scikit-learn regressors turned into plain arrays, so fitted baselines save safely.

``kgcm.load`` reads files with ``torch.load(weights_only=True)``, which refuses pickled Python
objects (a pickle can run code). The tree ensembles and linear models used by the meta-learners
and DML baselines are therefore exported after fitting into arrays (node tables, coefficients)
and *always* predicted from those arrays, before and after a save, so the numbers never depend
on which path was taken.

- :class:`FlatRegressor` ``.from_sklearn(model)`` for ``GradientBoostingRegressor``,
  ``RandomForestRegressor``, ``ExtraTreesRegressor``, ``DecisionTreeRegressor`` and any linear
  model with ``coef_`` and ``intercept_``;
- :func:`make_regressor` builds the model named by a baseline's ``model`` setting;
- :class:`RegressorEstimator` is the base of the baselines built on these regressors
  (meta-learners, DML): the base learner's settings, their checks and the fitted learner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kgcm.errors import ConfigError
from kgcm.estimators._static import check_choice, check_positive_int
from kgcm.estimators.base import BaseEstimator

__all__ = ["MODELS", "FlatRegressor", "RegressorEstimator", "make_regressor"]

#: Names accepted by the baselines' ``model`` setting.
MODELS = ("gradient-boosting", "random-forest", "linear")


def make_regressor(
    kind: str, *, seed: int, n_estimators: int = 100, max_depth: int | None = None
) -> Any:
    """A fresh scikit-learn regressor.

    Parameters
    ----------
    kind : {"gradient-boosting", "random-forest", "linear"}
        ``GradientBoostingRegressor`` (depth 3 unless ``max_depth``), ``RandomForestRegressor``
        (fully grown unless ``max_depth``, leaves of at least 5 samples) or ordinary least
        squares (``LinearRegression``).
    seed : int
        ``random_state`` of the tree models.
    """
    if kind == "gradient-boosting":
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(
            n_estimators=n_estimators, max_depth=3 if max_depth is None else max_depth,
            random_state=seed,
        )  # fmt: skip
    if kind == "random-forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(
            n_estimators=n_estimators, max_depth=max_depth, min_samples_leaf=5,
            random_state=seed, n_jobs=1,
        )  # fmt: skip
    if kind == "linear":
        from sklearn.linear_model import LinearRegression

        return LinearRegression()
    raise ConfigError(f"model must be one of {list(MODELS)}; got {kind!r}.")


@dataclass(frozen=True)
class FlatRegressor:
    """A fitted regressor as arrays: a tree ensemble or a linear model.

    Trees (all of them in one node table): ``left``, ``right``, ``feature``, ``threshold``,
    ``value`` per node, ``roots`` the first node of each tree, ``depth`` the deepest path.
    Prediction: ``offset + scale * sum_trees value[leaf(x)]``; inputs are compared in float32
    as scikit-learn does. Linear: ``offset + x @ coef``.
    """

    kind: str  # "trees" or "linear"
    offset: float
    scale: float
    arrays: dict[str, np.ndarray]
    depth: int = 0

    @classmethod
    def from_sklearn(cls, model: Any) -> FlatRegressor:
        """Export a fitted scikit-learn regressor (single output)."""
        from sklearn.dummy import DummyRegressor
        from sklearn.ensemble import (
            ExtraTreesRegressor,
            GradientBoostingRegressor,
            RandomForestRegressor,
        )
        from sklearn.tree import DecisionTreeRegressor

        if isinstance(model, GradientBoostingRegressor):
            if not isinstance(model.init_, DummyRegressor):
                raise TypeError("only GradientBoostingRegressor with the default init exports")
            trees = [est.tree_ for est in model.estimators_[:, 0]]
            offset = float(np.ravel(model.init_.constant_)[0])
            return cls._from_trees(trees, offset=offset, scale=float(model.learning_rate))
        if isinstance(model, RandomForestRegressor | ExtraTreesRegressor):
            trees = [est.tree_ for est in model.estimators_]
            return cls._from_trees(trees, offset=0.0, scale=1.0 / len(trees))
        if isinstance(model, DecisionTreeRegressor):
            return cls._from_trees([model.tree_], offset=0.0, scale=1.0)
        if hasattr(model, "coef_") and hasattr(model, "intercept_"):
            coef = np.asarray(model.coef_, dtype=np.float64).ravel()
            return cls(
                kind="linear",
                offset=float(np.ravel(model.intercept_)[0]),
                scale=1.0,
                arrays={"coef": coef},
            )
        raise TypeError(f"cannot export a {type(model).__name__} to arrays")

    @classmethod
    def _from_trees(cls, trees: list[Any], *, offset: float, scale: float) -> FlatRegressor:
        sizes = np.array([t.node_count for t in trees])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

        def shifted(children: np.ndarray, start: int) -> np.ndarray:
            c = children.astype(np.int64)
            return np.where(c >= 0, c + start, -1)

        arrays = {
            "left": np.concatenate(
                [shifted(t.children_left, s) for t, s in zip(trees, starts, strict=True)]
            ),
            "right": np.concatenate(
                [shifted(t.children_right, s) for t, s in zip(trees, starts, strict=True)]
            ),
            "feature": np.concatenate([t.feature.astype(np.int64) for t in trees]),
            "threshold": np.concatenate([t.threshold.astype(np.float64) for t in trees]),
            "value": np.concatenate([t.value[:, 0, 0].astype(np.float64) for t in trees]),
            "roots": starts.astype(np.int64),
        }
        depth = int(max(t.max_depth for t in trees))
        return cls(kind="trees", offset=offset, scale=scale, arrays=arrays, depth=depth)

    def predict(self, X: np.ndarray, *, rows_per_chunk: int = 8192) -> np.ndarray:
        """Predictions ``(n_samples,)`` for ``X (n_samples, n_features)``."""
        X = np.asarray(X, dtype=np.float64)
        if self.kind == "linear":
            return self.offset + X @ self.arrays["coef"]
        a = self.arrays
        left, right, feature = a["left"], a["right"], a["feature"]
        threshold, value, roots = a["threshold"], a["value"], a["roots"]
        # scikit-learn compares float32 inputs with float64 thresholds
        X32 = X.astype(np.float32)
        out = np.empty(X.shape[0])
        for start in range(0, X.shape[0], rows_per_chunk):
            xs = X32[start : start + rows_per_chunk]
            node = np.broadcast_to(roots, (xs.shape[0], roots.size)).copy()
            row = np.arange(xs.shape[0])[:, None]
            for _ in range(self.depth):
                inner = left[node] >= 0
                if not inner.any():
                    break
                f = np.where(inner, feature[node], 0)
                go_left = xs[row, f] <= threshold[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            out[start : start + xs.shape[0]] = value[node].sum(axis=1)
        return self.offset + self.scale * out

    def to_state(self) -> dict[str, Any]:
        """Plain types and tensors (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "kind": self.kind,
            "offset": self.offset,
            "scale": self.scale,
            "depth": self.depth,
            "arrays": {
                k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FlatRegressor:
        return cls(
            kind=str(state["kind"]),
            offset=float(state["offset"]),
            scale=float(state["scale"]),
            depth=int(state["depth"]),
            arrays={k: v.numpy().copy() for k, v in state["arrays"].items()},
        )


class RegressorEstimator(BaseEstimator):
    """Base of the estimators built on scikit-learn regressors (meta-learners, DML).

    Parameters
    ----------
    seed : int
        ``random_state`` of the base learner.
    model : {"gradient-boosting", "random-forest", "linear"}
        Base learner (see :func:`make_regressor`).
    n_estimators : int
        Trees of the ensemble.
    max_depth : int, optional
        Tree depth (default 3 for boosting, unlimited for forests).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        model: str = "gradient-boosting",
        n_estimators: int = 100,
        max_depth: int | None = None,
    ) -> None:
        self.seed = seed
        self.model = model
        self.n_estimators = n_estimators
        self.max_depth = max_depth

    def _check_learner(self) -> None:
        """Check ``model``, ``n_estimators`` and ``max_depth`` (called from ``fit``)."""
        check_choice(self.model, "model", MODELS)
        check_positive_int(self.n_estimators, "n_estimators")
        if self.max_depth is not None:
            check_positive_int(self.max_depth, "max_depth")

    def _regressor(self) -> Any:
        """A fresh, seeded base learner."""
        return make_regressor(
            self.model,
            seed=int(self.seed),
            n_estimators=int(self.n_estimators),
            max_depth=self.max_depth,
        )

    def _fit_flat(self, X: np.ndarray, y: np.ndarray) -> FlatRegressor:
        """Fit a fresh base learner on ``X (n_samples, n_features)``, ``y (n_samples,)`` and
        export it to arrays."""
        return FlatRegressor.from_sklearn(self._regressor().fit(X, y))
