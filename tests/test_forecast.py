"""Forecasts under a treatment plan: the contract, its bad-input errors and KGCM-VAE's roll."""

from __future__ import annotations

import numpy as np
import pytest

import kgcm
from conftest import fast_params
from kgcm.errors import InputError

K = 8  # history steps of the panel's 12


@pytest.fixture(scope="module")
def vae(panel):
    return kgcm.make_estimator("kgcm-vae", **fast_params("kgcm-vae")).fit(
        panel["Y"], panel["T"], X=panel["X"]
    )


def _plans(T: np.ndarray, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    T1 = T.copy()
    T1[:, K:] += shift
    return T, T1


def test_registry_lists_forecasters() -> None:
    able = kgcm.list_estimators(forecast=True)
    assert {"kgcm-vae", "zero-effect"} <= set(able)
    assert "s-learner" in kgcm.list_estimators(forecast=False)


def test_vae_forecast_shapes_and_interval(vae, panel) -> None:
    T0, T1 = _plans(panel["T"])
    X, Y = panel["X"][:, :K], panel["Y"][:, :K]
    effect = vae.effect(X, T0=T0, T1=T1, Y=Y)
    assert effect.shape == (40, 4)
    lower, upper = vae.effect_interval(X, T0=T0, T1=T1, alpha=0.1)
    assert lower.shape == upper.shape == (40, 4)
    assert np.all(lower <= upper) and np.any(lower < upper)
    mean, lo, up = vae.effect_with_interval(X, T0=T0, T1=T1, Y=Y)
    np.testing.assert_allclose(mean, effect)
    # the history is all that is read: the covariates after step k cannot matter
    assert np.all((lo <= mean) & (mean <= up))


def test_vae_equal_plans_give_exactly_zero(vae, panel) -> None:
    T = panel["T"]
    assert np.all(vae.effect(panel["X"][:, :K], T0=T, T1=T.copy()) == 0.0)


def test_vae_forecast_deterministic_under_seed(vae, panel) -> None:
    T0, T1 = _plans(panel["T"])
    X = panel["X"][:, :K]
    first = vae.effect_with_interval(X, T0=T0, T1=T1)
    again = vae.effect_with_interval(X, T0=T0, T1=T1)
    refit = kgcm.make_estimator("kgcm-vae", **fast_params("kgcm-vae")).fit(
        panel["Y"], panel["T"], X=panel["X"]
    )
    for a, b, c in zip(first, again, refit.effect_with_interval(X, T0=T0, T1=T1), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_vae_forecast_responds_to_the_plan(vae, panel) -> None:
    T0, T1 = _plans(panel["T"], shift=2.0)
    X = panel["X"][:, :K]
    assert np.abs(vae.effect(X, T0=T0, T1=T1)).mean() > 1e-3


def test_whole_path_estimand_unchanged(vae, panel) -> None:
    T = panel["T"]
    effect = vae.effect(panel["X"], T0=T, T1=T + 1.0)
    assert effect.shape == T.shape


def test_standard_prior_refuses_forecasts(panel) -> None:
    est = kgcm.make_estimator("kgcm-vae", **fast_params("kgcm-vae"), prior="standard")
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    T0, T1 = _plans(panel["T"])
    with pytest.raises(InputError, match=r"no dynamics to roll.*prior='transition'"):
        est.effect(panel["X"][:, :K], T0=T0, T1=T1)


def test_zero_effect_forecasts_zero(panel) -> None:
    est = kgcm.make_estimator("zero-effect").fit(panel["Y"], panel["T"], X=panel["X"])
    T0, T1 = _plans(panel["T"])
    effect, lower, upper = est.effect_with_interval(panel["X"][:, :K], T0=T0, T1=T1)
    assert effect.shape == (40, 4)
    assert not effect.any() and not lower.any() and not upper.any()


def test_estimator_without_forecast_names_those_with(panel) -> None:
    est = kgcm.make_estimator("s-learner", **fast_params("s-learner"))
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    T0, T1 = _plans(panel["T"])
    with pytest.raises(InputError, match=r"SLearner cannot forecast.*kgcm-vae.*zero-effect"):
        est.effect(panel["X"][:, :K], T0=T0, T1=T1)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ("t1_length", r"T0 has shape \(40, 12\) but T1 has \(40, 11\).*T1\[:, k:\] = plan"),
        ("t_short", r"T0/T1 have 6 steps, fewer than the 8 steps.*h >= 1 plan steps"),
        ("y_long", r"Y has 10 steps, longer than the history X \(8 steps\).*Y\[:, :8\]"),
        ("history_differs", r"T1 differs from T0 on the observed history.*T1\[:, :8\] = T0"),
        ("nan_x", r"observed history X holds 1 NaN.*complete history.*Fill the gaps"),
        ("nan_y", r"observed history Y holds 1 NaN.*complete history"),
        ("y_no_plan", r"Y is given but T0/T1 have the same 8 steps.*no plan to forecast"),
    ],
)
def test_bad_forecast_input(vae, panel, change, match) -> None:
    T0, T1 = _plans(panel["T"])
    X, Y = panel["X"][:, :K].copy(), panel["Y"][:, :K].copy()
    if change == "t1_length":
        T1 = T1[:, :-1]
    elif change == "t_short":
        T0, T1 = T0[:, :6], T1[:, :6]
    elif change == "y_long":
        Y = panel["Y"][:, :10]
    elif change == "history_differs":
        T1[3, 2] += 0.5
    elif change == "nan_x":
        X[0, 1, 0] = np.nan
    elif change == "nan_y":
        Y[5, 0] = np.nan
    elif change == "y_no_plan":
        T0, T1 = T0[:, :K], T1[:, :K]
    with pytest.raises(InputError, match=match):
        vae.effect(X, T0=T0, T1=T1, Y=Y)
    if change != "y_no_plan":
        with pytest.raises(InputError, match=match):
            vae.effect_interval(X, T0=T0, T1=T1, Y=Y)
