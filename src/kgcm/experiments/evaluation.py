"""The one evaluation path: fit, estimate, score.

Every command that fits an estimator and asks it for effects goes through these functions:
the demo, ``kgcm fit`` / ``kgcm effect``, and each cell of ``kgcm benchmark`` and
``kgcm ablate``. So they make the estimator the same way (one seed precedence), pass the same
inference strategy, take an interval wherever the fitted estimator gives one, and score with
the same metrics beside the same zero-effect reference.

- :func:`fit_estimator`: ``make_estimator(name, seed=seed, **params)`` then ``fit`` with the
  inference strategy and its spatial groups (:func:`kgcm.inference.fit_arguments`). A seed
  inside ``params`` is refused by the configs (:func:`kgcm.config.check_estimator_params`);
  here the run's seed is the only one.
- :func:`estimate`: the effect of ``T0 -> T1`` and, when the estimator gives intervals, its
  ``1 - alpha`` interval, from one call.
- :func:`score`: :func:`kgcm.metrics.score_effects` on the scored steps, and
  :func:`zero_reference`: the same metrics for the zero-effect reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Estimates", "estimate", "fit_estimator", "score", "zero_reference"]


@dataclass(frozen=True)
class Estimates:
    """Effects ``(n, t)`` (or ``(n, h)`` for a forecast) and their interval (None without)."""

    effect: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def steps(self, first: int) -> Estimates:
        """The estimates on steps ``first`` and later (a factual burn-in left out)."""
        cut = slice(first, None)
        if self.lower is None or self.upper is None:
            return Estimates(self.effect[:, cut])
        return Estimates(self.effect[:, cut], self.lower[:, cut], self.upper[:, cut])

    @property
    def interval(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.lower is None or self.upper is None else (self.lower, self.upper)


def fit_estimator(
    name: str,
    params: Mapping[str, Any],
    inference: Any,
    *,
    seed: int,
    Y: np.ndarray,
    T: np.ndarray,
    X: Any,
    cells: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Make the registered estimator ``name`` with ``params`` and the run's ``seed`` and fit it
    on ``(Y, T, X)`` with the ``inference`` strategy; ``cells`` (n, 2) are the units' grid
    cells, from which the refitting strategies draw spatial blocks (None off a grid)."""
    from kgcm.estimators import make_estimator
    from kgcm.inference import describe, fit_arguments

    est = make_estimator(name, seed=seed, **params)
    fit_args = fit_arguments(inference, cells)
    if log is not None:
        log(describe(fit_args["inference"], fit_args.get("groups")))
    est.fit(Y, T, X=X, **fit_args)
    return est


def estimate(
    est: Any,
    X: Any,
    T0: np.ndarray,
    T1: np.ndarray,
    *,
    alpha: float,
    Y: np.ndarray | None = None,
) -> Estimates:
    """The effect of ``T0 -> T1`` with its ``1 - alpha`` interval where ``est`` gives one;
    ``Y`` is the observed outcome history of a forecast (None for the whole-path estimand)."""
    history = {} if Y is None else {"Y": Y}
    if est.gives_intervals():
        effect, lower, upper = est.effect_with_interval(X, T0=T0, T1=T1, alpha=alpha, **history)
        return Estimates(effect, lower, upper)
    return Estimates(est.effect(X, T0=T0, T1=T1, **history))


def score(
    truth: np.ndarray,
    estimates: Estimates,
    Y: np.ndarray,
    y_pred: np.ndarray,
    *,
    score_from: int = 0,
) -> dict[str, float]:
    """PEHE, ATE error, factual RMSE and, with an interval, coverage and width
    (:func:`kgcm.metrics.score_effects`); effects scored on steps ``score_from`` and later."""
    from kgcm.metrics import score_effects

    scored = estimates.steps(score_from)
    return score_effects(truth[:, score_from:], scored.effect, Y, y_pred, scored.interval)


def zero_reference(
    truth: np.ndarray,
    train: tuple[np.ndarray, np.ndarray, Any],
    X: Any,
    T: np.ndarray,
    Y: np.ndarray,
    *,
    score_from: int = 0,
) -> dict[str, float]:
    """The zero-effect reference scored as :func:`score` scores an estimator: fitted on the
    ``train`` triple ``(Y, T, X)``, its factual prediction on ``(X, T)`` against ``Y``."""
    from kgcm.estimators import make_estimator

    Y_train, T_train, X_train = train
    zero = make_estimator("zero-effect").fit(Y_train, T_train, X=X_train)
    zeros = Estimates(np.zeros_like(truth))
    return score(truth, zeros, Y, zero.predict(X, T), score_from=score_from)
