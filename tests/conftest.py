"""Shared fixtures: small data and fast estimator settings."""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on CI's two cores: one thread each (torch here and in the
    # CLI subprocesses the tests start), so the workers do not oversubscribe the cores
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def fast_params(name: str) -> dict:
    """Fast settings for a registered estimator (a new copy of its class's ``test_params``)."""
    import copy

    from kgcm.estimators import estimator_class

    cls = estimator_class(name)
    if cls.test_params is None:
        raise KeyError(
            f"estimator {name!r} has no fast test settings: set test_params = {{...}} on "
            f"{cls.__module__}.{cls.__qualname__} (settings that make a fit take about a second)"
        )
    return copy.deepcopy(cls.test_params)


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
