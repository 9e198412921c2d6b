"""The one evaluation path (kgcm.experiments.evaluation): every command fits and estimates
through it, and its scores are the metric's."""

from __future__ import annotations

import numpy as np
import pytest

from kgcm.experiments import evaluation
from kgcm.metrics import score_effects


@pytest.fixture
def calls(monkeypatch):
    """Which functions of the evaluation path ran, in order."""
    seen: list[str] = []
    for name in ("fit_estimator", "estimate", "score", "zero_reference"):
        original = getattr(evaluation, name)

        def recorded(*args, _name=name, _original=original, **kwargs):
            seen.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(evaluation, name, recorded)
    return seen


def test_benchmark_cell_demo_fit_and_effect_share_the_path(calls, tmp_path) -> None:
    from kgcm.config import load_config
    from kgcm.experiments import benchmark as bm
    from kgcm.experiments.demo import DemoConfig, run_demo

    dataset = bm.DatasetSpec("arctic", "arctic", {"ny": 4, "nx": 4, "days": 60})
    row = bm.run_cell(dataset, bm.EstimatorSpec("s-learner"), 0, tau=5, alpha=0.05)
    assert row["status"] == "ok" and calls == ["fit_estimator", "estimate", "score"]
    calls.clear()
    cfg = load_config(
        DemoConfig,
        None,
        ["arctic.ny=4", "arctic.nx=4", "arctic.days=60", "estimator.name='s-learner'",
         "estimator.params={}"],
    )  # fmt: skip
    result = run_demo(cfg, tmp_path / "demo", log=lambda m: None, allow_weak_overlap=True)
    # the zero-effect reference is scored by the same function
    assert calls == ["fit_estimator", "estimate", "score", "zero_reference", "score"]
    assert set(result.metrics["s-learner"]) >= {"pehe", "ate_error", "factual_rmse"}
    # kgcm fit and kgcm effect on a prepared store
    from kgcm.config import from_dict
    from kgcm.experiments.fit import FitConfig, run_effect, run_fit
    from kgcm.synthetic.arctic import simulate_arctic

    calls.clear()
    ds = simulate_arctic(ny=4, nx=4, days=90, seed=0).dataset
    ds.attrs["kgcm_prepare_config"] = "{}"
    ds.to_zarr(tmp_path / "store.zarr", consolidated=True)
    config = from_dict(FitConfig, {
        "data": str(tmp_path / "store.zarr"), "window": 20, "covariates": ["zos"],
        "bounds": "none", "estimator": {"name": "s-learner"},
    })  # fmt: skip
    run_fit(config, tmp_path / "run", allow_weak_overlap=True, log=lambda m: None)
    assert calls == ["fit_estimator"]
    run_effect(tmp_path / "run", out=tmp_path / "fx" / "effects.nc", allow_weak_overlap=True,
               log=lambda m: None)  # fmt: skip
    assert calls == ["fit_estimator", "estimate"]


def test_scores_leave_out_the_burn_in_like_the_metric() -> None:
    rng = np.random.default_rng(0)
    truth, effect, y, pred = (rng.normal(size=(6, 10)) for _ in range(4))
    lower, upper = effect - 1.0, effect + 1.0
    got = evaluation.score(truth, evaluation.Estimates(effect, lower, upper), y, pred, score_from=3)
    expected = score_effects(truth[:, 3:], effect[:, 3:], y, pred, (lower[:, 3:], upper[:, 3:]))
    assert got == expected
    point = evaluation.score(truth, evaluation.Estimates(effect), y, pred)
    assert "coverage" not in point and point == score_effects(truth, effect, y, pred, None)


def test_estimate_takes_the_interval_where_there_is_one(panel) -> None:
    X, T, Y = panel["X"], panel["T"], panel["Y"]
    with_interval = evaluation.fit_estimator("linear-dml", {}, None, seed=0, Y=Y, T=T, X=X)
    got = evaluation.estimate(with_interval, X, T, T + 1.0, alpha=0.1)
    assert got.interval is not None and np.all(got.lower <= got.upper)
    point_only = evaluation.fit_estimator("s-learner", {}, None, seed=0, Y=Y, T=T, X=X)
    got = evaluation.estimate(point_only, X, T, T + 1.0, alpha=0.1)
    assert got.interval is None and got.effect.shape == T.shape


def test_every_task_is_built_next_to_its_simulator() -> None:
    import importlib

    from kgcm.errors import ConfigError
    from kgcm.synthetic.tasks import BUILDERS, Task, make_task

    for kind, where in BUILDERS.items():
        module, name = where.split(":")
        assert module.startswith("kgcm.synthetic."), kind
        assert callable(getattr(importlib.import_module(module), name)), kind
    task = make_task("arctic", {"ny": 3, "nx": 3, "days": 40, "window": 10}, 0)
    assert isinstance(task, Task) and task.true_effect.shape == task.Y_test.shape
    with pytest.raises(ConfigError, match=r"unknown dataset kind 'arctics'.*arctic"):
        make_task("arctics", {}, 0)
