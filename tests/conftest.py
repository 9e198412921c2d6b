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
