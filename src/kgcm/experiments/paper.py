"""The paper protocol as an experiment: fit on training windows, score on test windows."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from kgcm.estimators import estimator_class, make_estimator
from kgcm.metrics import score_effects
from kgcm.synthetic.paper import PaperData

__all__ = ["run_paper"]


def run_paper(
    data: PaperData, *, estimator: str = "kgcm-vae", seed: int = 0, **params: Any
) -> dict[str, dict[str, float]]:
    """Fit ``estimator`` on the training windows; PEHE etc. on the test windows, beside the
    zero-effect reference. Estimators with a ``history`` parameter get ``data.history``
    (the notebooks' lag L as L + 1 steps of treatment history) unless given."""
    accepted = inspect.signature(estimator_class(estimator).__init__).parameters
    if "history" in accepted:
        params = {"history": data.history, **params}
    est = make_estimator(estimator, seed=seed, **params)
    X = data.X
    tr, te = data.train, data.test
    est.fit(data.Y[tr], data.T0[tr], X=X[tr])
    truth = data.true_effect[te]
    interval = None
    if est.gives_intervals():
        effect, lower, upper = est.effect_with_interval(X[te], T0=data.T0[te], T1=data.T1[te])
        interval = (lower, upper)
    else:
        effect = est.effect(X[te], T0=data.T0[te], T1=data.T1[te])
    row = score_effects(truth, effect, data.Y[te], est.predict(X[te], data.T0[te]), interval)
    zero = make_estimator("zero-effect").fit(data.Y[tr], data.T0[tr], X=X[tr])
    zero_row = score_effects(
        truth, np.zeros_like(truth), data.Y[te], zero.predict(X[te], data.T0[te]), None
    )
    return {
        estimator: row,
        "zero-effect": zero_row,
        "truth": {"ate": float(truth.mean()), "effect_rms": float(np.sqrt(np.mean(truth**2)))},
    }
