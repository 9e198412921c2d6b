"""Shared fixtures: small data and fast estimator settings."""

from __future__ import annotations

import numpy as np
import pytest

#: Settings that make each registered estimator fit in about a second for contract tests.
FAST_PARAMS: dict[str, dict] = {
    "kgcm-vae": {
        "hidden": 8,
        "latent_dim": 4,
        "treatment_embedding": 4,
        "history": 3,
        "n_draws": 8,
        "training": {"max_epochs": 3, "progress": False},
    },
    "zero-effect": {},
    "gst-unet": {
        "context": 3,
        "width": 4,
        "n_bootstrap": 2,
        "training": {"max_epochs": 2, "batch_size": 128, "progress": False},
    },
    # time-varying baselines (tests/test_recurrent_baselines.py)
    **{
        name: {
            "hidden": 8,
            "history": 3,
            "treatment_embedding": 4,
            "training": {"max_epochs": 3, "progress": False},
        }
        for name in ("r-crn", "cf-rnn", "ts-tarnet")
    },
    "crn": {"hidden": 8, "rep_dim": 4, "training": {"max_epochs": 3, "progress": False}},
    "rmsn": {"hidden": 8, "rep_dim": 4, "training": {"max_epochs": 3, "progress": False}},
    "causal-transformer": {
        "d_model": 8,
        "rep_dim": 4,
        "max_distance": 4,
        "training": {"max_epochs": 3, "progress": False},
    },
    # static baselines (tests/test_static_baselines.py)
    **{
        name: {
            "rep_layers": 1,
            "rep_units": 16,
            "head_layers": 1,
            "head_units": 8,
            "training": {"max_epochs": 3, "progress": False},
        }
        for name in ("tarnet", "cfrnet")
    },
    "cevae": {
        "latent_dim": 4,
        "hidden": 16,
        "layers": 2,
        "n_draws": 8,
        "training": {"max_epochs": 3, "progress": False},
    },
    "t-learner": {"n_estimators": 10},
    "s-learner": {"n_estimators": 10},
    "linear-dml": {"model": "linear"},
    "dynamic-dml": {"model": "linear"},
}


def fast_params(name: str) -> dict:
    """Fast settings for a registered estimator (new copy)."""
    import copy

    if name not in FAST_PARAMS:
        raise KeyError(f"add fast test settings for estimator {name!r} to tests/conftest.py")
    return copy.deepcopy(FAST_PARAMS[name])


@pytest.fixture(scope="session")
def panel() -> dict[str, np.ndarray]:
    """A small confounded panel: Y (40, 12), T (40, 12), X (40, 12, 3), true effect of +1."""
    rng = np.random.default_rng(0)
    n, t, p = 40, 12, 3
    u = rng.normal(size=(n, t))
    X = np.stack([u + 0.1 * rng.normal(size=(n, t)) for _ in range(p)], axis=-1)
    T = 0.5 * u + rng.normal(size=(n, t))
    Y = 2.0 * T + u + 0.1 * rng.normal(size=(n, t))
    return {"Y": Y, "T": T, "X": X}


def binary_treatment(name: str) -> bool:
    """Whether a registered estimator needs a 0/1 treatment (its ``binary_treatment`` tag)."""
    from kgcm.estimators import estimator_class

    return bool(estimator_class(name).tags.get("binary_treatment", False))


def other_path(name: str, T: np.ndarray) -> np.ndarray:
    """A counterfactual path the estimator accepts: ``1 - T`` for 0/1 treatments, else T + 1."""
    return 1.0 - T if binary_treatment(name) else T + 1.0


@pytest.fixture(scope="session")
def binary_panel() -> dict[str, np.ndarray]:
    """The panel with a 0/1 treatment: Y (40, 12), T (40, 12) in {0, 1}, X (40, 12, 3), true
    effect of +2, treatment more likely where the confounder u is high."""
    rng = np.random.default_rng(1)
    n, t, p = 40, 12, 3
    u = rng.normal(size=(n, t))
    X = np.stack([u + 0.1 * rng.normal(size=(n, t)) for _ in range(p)], axis=-1)
    T = (0.5 * u + rng.normal(size=(n, t)) > 0).astype(np.float64)
    Y = 2.0 * T + u + 0.1 * rng.normal(size=(n, t))
    return {"Y": Y, "T": T, "X": X}


@pytest.fixture(scope="session")
def data_for(panel, binary_panel):
    """``data_for(name)``: the binary panel for 0/1-treatment estimators, else the panel."""

    def pick(name: str) -> dict[str, np.ndarray]:
        return binary_panel if binary_treatment(name) else panel

    return pick
