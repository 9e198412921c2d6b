"""Long runs, marked `slow`. CI runs them in a small form; KGCM_FULL=1 runs the full size.

KGCM_FULL=1 .venv/bin/python -m pytest -m slow
"""

from __future__ import annotations

import os

import pytest

from kgcm.config import load_config
from kgcm.experiments.demo import DemoConfig, run_demo

FULL = os.environ.get("KGCM_FULL") == "1"


@pytest.mark.slow
def test_demo_meets_its_target(tmp_path) -> None:
    """The main job beats the zero-effect reference by the documented margin.

    Full: the default demo (24 x 24 cells, 365 days), PEHE at most 0.5 x zero-effect.
    Small (CI): 12 x 12 cells, 180 days, PEHE at most 0.75 x zero-effect (measured 0.48).
    """
    overrides = [] if FULL else ["arctic.ny=12", "arctic.nx=12", "arctic.days=180"]
    bound = 0.5 if FULL else 0.75
    cfg = load_config(DemoConfig, None, overrides)
    # the 1.5 x T0 scenario moves the treatment by about 2 residual sd, at the overlap check's
    # limit: the 12 x 12 world lands just above it (2.2), the default 24 x 24 just below
    result = run_demo(cfg, tmp_path, log=lambda _m: None, allow_weak_overlap=not FULL)
    model, zero = result.metrics["kgcm-vae"], result.metrics["zero-effect"]
    assert model["pehe"] <= bound * zero["pehe"], result.metrics
    assert model["ate_error"] < 0.5 * zero["ate_error"], result.metrics
    assert model["factual_rmse"] < 0.5 * zero["factual_rmse"], result.metrics
