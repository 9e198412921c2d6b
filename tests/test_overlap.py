"""kgcm.check_overlap: R² of the treatment given the covariates' history, the scenario's shift in
residual sd, and clear errors for bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

import kgcm
from kgcm.errors import InputError, WeakOverlapError
from kgcm.overlap import R2_MAX, SHIFT_SD_MAX, check_overlap, require_overlap, shift_in_sd


def _covariates(n: int = 300, k: int = 20, p: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, k, p))


def test_top_level_export() -> None:
    assert kgcm.check_overlap is check_overlap
    assert "check_overlap" in dir(kgcm)


def test_treatment_that_is_a_function_of_the_covariates_history_is_refused() -> None:
    x = _covariates()
    # T_t depends on X_t and X_{t-1} (the first step has no lag: use X_t only there)
    lag = np.concatenate([x[:, :1, 1], x[:, :-1, 1]], axis=1)
    t = np.tanh(x[..., 0]) + 0.5 * lag
    report = check_overlap(t, x)
    assert not report.ok
    assert report.r2 > 0.95
    assert report.shift_sd is None
    assert "nearly a function of the covariates" in report.message
    assert "Remove from the covariates the fields the treatment is computed from" in report.message


def test_independent_treatment_passes_with_r2_near_zero() -> None:
    x = _covariates()
    t = np.random.default_rng(1).standard_normal(x.shape[:2])
    report = check_overlap(t, x)
    assert report.ok
    assert abs(report.r2) < 0.05
    assert report.residual_sd == pytest.approx(1.0, abs=0.05)
    assert report.message.startswith("overlap ok")


def test_shift_scales_with_the_scenario_and_a_large_one_is_refused() -> None:
    x = _covariates()
    t = x[..., 0] + np.random.default_rng(1).standard_normal(x.shape[:2])
    small = check_overlap(t, x, t + 0.5)
    double = check_overlap(t, x, t + 1.0)
    assert small.ok and double.ok
    assert double.shift_sd == pytest.approx(2 * small.shift_sd, rel=1e-9)
    assert small.shift_sd == pytest.approx(0.5 / small.residual_sd)
    assert small.r2 == double.r2  # the learner does not see T1
    far = check_overlap(t, x, t + 3.0)
    assert not far.ok and far.shift_sd > SHIFT_SD_MAX
    assert "nearly a function" not in far.message
    assert "far outside the observed support" in far.message
    assert f"limit {SHIFT_SD_MAX:g}" in far.message


def test_shift_counts_only_the_changed_steps() -> None:
    t = np.ones((4, 10))
    t1 = t.copy()
    t1[:, -2:] += 3.0
    assert shift_in_sd(t, t1, 1.5) == pytest.approx(2.0)
    assert shift_in_sd(t, t, 1.5) == 0.0


def test_same_seed_same_report_and_xarray_input() -> None:
    x = _covariates(n=60)
    t = x[..., 0] + np.random.default_rng(2).standard_normal(x.shape[:2])
    a = check_overlap(t, x, 1.5 * t)
    b = check_overlap(
        xr.DataArray(t, dims=("unit", "step")),
        xr.DataArray(x, dims=("unit", "step", "feature")),
        xr.DataArray(1.5 * t, dims=("unit", "step")),
    )
    assert a == b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.ok = True  # type: ignore[misc]
    assert set(a.to_dict()) >= {"ok", "r2", "shift_sd", "message"}


def test_caps_bound_the_rows_used() -> None:
    x = _covariates(n=400, k=30)
    t = np.random.default_rng(3).standard_normal(x.shape[:2])
    report = check_overlap(t, x, max_units=100, max_rows=1000)
    assert report.n_train_rows + report.n_test_rows <= 1000


def test_constant_treatment_is_not_ok() -> None:
    x = _covariates(n=20)
    report = check_overlap(np.full(x.shape[:2], 0.3), x)
    assert not report.ok
    assert "the treatment is constant" in report.message


@pytest.mark.parametrize(
    ("t", "x", "t1", "match"),
    [
        (np.zeros(10), np.zeros((10, 1, 2)), None, r"T must have shape \(n_units, n_steps\)"),
        (np.zeros((10, 5)), np.zeros((10, 4, 2)), None, r"X must have shape .* got shape"),
        (np.zeros((10, 5)), None, None, "needs the covariates X"),
        (np.zeros((10, 5)), np.zeros((10, 5, 2)), np.zeros((10, 4)), r"T1 has shape \(10, 4\)"),
        (np.zeros((3, 5)), np.zeros((3, 5, 2)), None, "at least 4 units"),
    ],
)
def test_bad_shapes(t, x, t1, match) -> None:
    with pytest.raises(InputError, match=match):
        check_overlap(t, x, t1)


def test_nan_is_refused_with_the_fix() -> None:
    x = _covariates(n=20)
    x[3, 4, 1] = np.nan
    with pytest.raises(InputError, match=r"X holds 1 NaN .* drop_incomplete=True"):
        check_overlap(np.zeros(x.shape[:2]), x)
    t = np.zeros(x.shape[:2])
    t1 = t.copy()
    t1[0, 0] = t1[1, 1] = np.nan
    with pytest.raises(InputError, match="T1 holds 2 NaN"):
        check_overlap(t, np.nan_to_num(x), t1)


def test_require_overlap_refuses_unless_allowed() -> None:
    x = _covariates()
    t = x[..., 0] + 0.3 * np.random.default_rng(1).standard_normal(x.shape[:2])
    with pytest.raises(WeakOverlapError, match=r"far outside.*--allow-weak-overlap"):
        require_overlap(t, x, t + 5.0, log=lambda m: None)
    logged: list[str] = []
    entry = require_overlap(t, x, t + 5.0, allow_weak=True, log=logged.append)
    assert entry["ok"] is False and entry["shift_sd"] > SHIFT_SD_MAX
    assert logged[0].startswith("warning: weak overlap")


def test_defaults_are_the_documented_limits() -> None:
    # docs/benchmarks.md ("Overlap check: thresholds") justifies these two numbers
    assert (R2_MAX, SHIFT_SD_MAX) == (0.95, 2.0)
