"""Forecasts under a treatment plan: the contract, its bad-input errors and KGCM-VAE's roll."""

from __future__ import annotations

import numpy as np
import pytest

import kgcm
from conftest import fast_params
from kgcm.errors import ConfigError, InputError

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
    with pytest.raises(InputError, match=r"no dynamics to roll.*prior='autonomous'"):
        est.effect(panel["X"][:, :K], T0=T0, T1=T1)


def test_autonomous_prior_rolls_one_state_for_both_plans(panel) -> None:
    import torch

    est = kgcm.make_estimator("kgcm-vae", **fast_params("kgcm-vae"), prior="autonomous")
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    net = est.models_[0]
    z = torch.randn(3, 5, net.latent_dim)
    # p(z_t | z_{t-1}) does not read the treatment
    for a, b in zip(net.step(z, torch.zeros(5)), net.step(z, torch.full((5,), 3.0)), strict=True):
        torch.testing.assert_close(a, b)
    T0, T1 = _plans(panel["T"], shift=2.0)
    X = panel["X"][:, :K]
    effect = est.effect(X, T0=T0, T1=T1)
    assert effect.shape == (40, 4) and np.isfinite(effect).all()
    # the plan acts on the outcome head only: same z draws, so the effect is the head's response
    assert np.abs(effect).mean() > 1e-3


def test_rollout_loss_trains_the_prior_to_forecast(vae, panel) -> None:
    params = {**fast_params("kgcm-vae"), "rollout_weight": 1.0, "rollout_steps": 4}
    est = kgcm.make_estimator("kgcm-vae", **params).fit(panel["Y"], panel["T"], X=panel["X"])
    assert all("train_rollout" in epoch for epoch in est.history_)
    T0, T1 = _plans(panel["T"], shift=2.0)
    X = panel["X"][:, :K]
    effect = est.effect(X, T0=T0, T1=T1)
    assert effect.shape == (40, 4) and np.abs(effect - vae.effect(X, T0=T0, T1=T1)).max() > 1e-6
    with pytest.raises(ConfigError, match="prior='standard' has none"):
        kgcm.make_estimator("kgcm-vae", **params, prior="standard").fit(
            panel["Y"], panel["T"], X=panel["X"]
        )


def test_zero_effect_forecasts_zero(panel) -> None:
    est = kgcm.make_estimator("zero-effect").fit(panel["Y"], panel["T"], X=panel["X"])
    T0, T1 = _plans(panel["T"])
    effect, lower, upper = est.effect_with_interval(panel["X"][:, :K], T0=T0, T1=T1)
    assert effect.shape == (40, 4)
    assert not effect.any() and not lower.any() and not upper.any()


@pytest.mark.parametrize(
    ("name", "cls"),
    [("s-learner", "SLearner"), ("linear-dml", "LinearDML"), ("gst-unet", "GSTUNet")],
)
def test_estimator_without_forecast_names_those_with(panel, name, cls) -> None:
    assert name in kgcm.list_estimators(forecast=False)
    est = kgcm.make_estimator(name, **fast_params(name))
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    T0, T1 = _plans(panel["T"])
    X, Y = panel["X"][:, :K], panel["Y"][:, :K]
    match = (
        rf"{cls}\w* cannot forecast.*causal-transformer, cf-rnn, crn, kgcm-vae, r-crn, rmsn, "
        r"ts-tarnet, zero-effect"
    )
    with pytest.raises(InputError, match=match):
        est.effect(X, T0=T0, T1=T1, Y=Y)
    if est.gives_intervals():
        with pytest.raises(InputError, match=match):
            est.effect_with_interval(X, T0=T0, T1=T1, Y=Y)
        with pytest.raises(InputError, match=match):
            est.effect_interval(X, T0=T0, T1=T1, Y=Y)


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


# --------------------------------------------------------------------------------------------
# The arctic simulator's feedback and plan re-simulation

WORLD = {"ny": 6, "nx": 7, "days": 90}


def _digest(sim) -> str:
    import hashlib

    h = hashlib.sha256()
    for v in ("sithick", "zos", "uo", "vo", "treatment"):
        h.update(np.ascontiguousarray(sim.dataset[v].values).tobytes())
    h.update(sim.sensitivity.tobytes())
    h.update(np.float64(sim.saturation).tobytes())
    return h.hexdigest()


def test_feedback_off_leaves_worlds_unchanged_bit_for_bit() -> None:
    from kgcm.synthetic.arctic import simulate_arctic

    sim = simulate_arctic(**WORLD, seed=5)
    # the digest of this world as simulated before the feedback knobs existed
    assert _digest(sim) == "649d79d67567fa5c7d2bb176f37f1b4e6d36507876ea04c9c979964c0707a443"
    zero = simulate_arctic(**WORLD, seed=5, ocean_feedback=0.0, ice_feedback=0.0)
    assert _digest(zero) == _digest(sim)


def test_feedback_changes_the_factual_world() -> None:
    from kgcm.synthetic.arctic import simulate_arctic

    off = simulate_arctic(**WORLD, seed=5).dataset
    ocean = simulate_arctic(**WORLD, seed=5, ocean_feedback=1.0).dataset
    ice = simulate_arctic(**WORLD, seed=5, ice_feedback=1.0).dataset
    # the ocean answers the forcing: SSH and currents move, the forcing itself does not
    assert not np.allclose(ocean["zos"], off["zos"]) and not np.allclose(ocean["uo"], off["uo"])
    np.testing.assert_array_equal(ocean["treatment"], off["treatment"])
    # the forcing answers the ice: the treatment moves, the ocean does not
    assert not np.allclose(ice["treatment"], off["treatment"])
    np.testing.assert_array_equal(ice["zos"], off["zos"])


def test_feedback_knobs_are_checked() -> None:
    from kgcm.errors import ConfigError
    from kgcm.synthetic.arctic import simulate_arctic

    with pytest.raises(ConfigError, match=r"arctic.ocean_feedback must be a number in \[-2.0"):
        simulate_arctic(**WORLD, ocean_feedback=5.0)


def test_plan_without_feedback_reproduces_potential_outcomes() -> None:
    from kgcm.synthetic.arctic import simulate_arctic

    sim = simulate_arctic(**WORLD, seed=2)
    t0 = sim.dataset["treatment"].values
    plan = 1.5 * t0
    np.testing.assert_array_equal(sim.plan_outcomes(plan, 0).sithick, sim.potential_outcome(plan))
    later = sim.plan_outcomes(plan[40:], 40)
    expected = sim.potential_outcome(np.concatenate([t0[:40], plan[40:]]))
    np.testing.assert_allclose(later.sithick, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(later.zos, sim.dataset["zos"].values.astype(np.float64))
    # windowed units: history factual, plan after; the outcome is y + the window effect
    cells, starts, history, h = np.array([[1, 2], [4, 5]]), np.array([5, 30]), 20, 10
    iy, ix = cells[:, 0], cells[:, 1]
    days = starts[:, None] + np.arange(history + h)
    t_units = t0[days, iy[:, None], ix[:, None]]
    plans = 1.5 * t_units[:, history:]
    t1 = t_units.copy()
    t1[:, history:] = plans
    got = sim.window_plan_outcomes(plans, cells, starts, history)
    y = sim.dataset["sithick"].values[days, iy[:, None], ix[:, None]].astype(np.float64)
    want = (y + sim.window_effects(t1, cells, starts, history + h))[:, history:]
    np.testing.assert_allclose(got.sithick, want, atol=1e-12)


def test_plan_with_feedback_moves_the_covariates_after_k() -> None:
    from kgcm.synthetic.arctic import simulate_arctic

    sim = simulate_arctic(**WORLD, seed=2, ocean_feedback=1.0, ice_feedback=1.0)
    ds, k = sim.dataset, 40
    plan = 1.5 * ds["treatment"].values[k:]
    out = sim.plan_outcomes(plan, k)
    for name in ("sithick", "zos", "uo", "vo"):
        factual = ds[name].values.astype(np.float64)
        # before the plan, the factual world, exactly (SSH answers from the day after k)
        first = k + (name != "sithick")
        np.testing.assert_array_equal(getattr(out, name)[:first], factual[:first])
        assert np.abs(getattr(out, name)[first:] - factual[first:]).mean() > 1e-5, name
    # the factual plan replays the factual world (same noise draws)
    replay = sim.plan_outcomes(ds["treatment"].values[k:], k)
    np.testing.assert_allclose(replay.sithick, ds["sithick"].values, atol=1e-6)
    # the ocean's answer changes the outcome beyond the direct effect (covariates held fixed)
    direct = sim.potential_outcome(np.concatenate([ds["treatment"].values[:k], plan]))
    assert np.abs(out.sithick[k + 1 :] - direct[k + 1 :]).mean() > 1e-3


def test_window_plans_match_the_whole_field_for_one_cell() -> None:
    from kgcm.synthetic.arctic import simulate_arctic

    sim = simulate_arctic(**WORLD, seed=2, ocean_feedback=1.0, ice_feedback=0.5)
    t0 = sim.dataset["treatment"].values
    cells, starts, history, h = np.array([[2, 3]]), np.array([10]), 20, 6
    first = int(starts[0] + history)
    plans = 2.0 * t0[first : first + h, 2, 3][None]
    got = sim.window_plan_outcomes(plans, cells, starts, history)
    t1 = t0.copy()
    t1[first : first + h, 2, 3] = plans[0]
    full = sim.plan_outcomes(t1, first)
    for name in ("sithick", "zos", "uo", "vo"):
        np.testing.assert_allclose(
            getattr(got, name)[0], getattr(full, name)[first : first + h, 2, 3], atol=1e-9
        )


# --------------------------------------------------------------------------------------------
# Native forecasts of the recurrent baselines


@pytest.mark.parametrize("name", ["crn", "rmsn"])
def test_encoder_decoder_baselines_forecast_without_future_covariates(panel, name) -> None:
    est = kgcm.make_estimator(name, **fast_params(name), decoder_covariates=False, n_ensemble=2)
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    T0, T1 = _plans(panel["T"])
    X, Y = panel["X"][:, :K], panel["Y"][:, :K]
    effect, lower, upper = est.effect_with_interval(X, T0=T0, T1=T1, Y=Y)
    assert effect.shape == lower.shape == (40, 4)
    assert np.all(lower <= upper) and np.abs(effect).mean() > 0
    assert not est.effect(X, T0=T0, T1=T0.copy(), Y=Y).any()
    # the whole-window estimand still works with this decoder
    assert est.effect(panel["X"], T0=panel["T"], T1=panel["T"] + 1).shape == (40, 12)
    with pytest.raises(InputError, match=r"forecasts from the observed history.*pass Y"):
        est.effect(X, T0=T0, T1=T1)


def test_causal_transformer_forecasts_without_covariate_tokens_after_the_history(panel) -> None:
    params = {**fast_params("causal-transformer"), "n_ensemble": 2}
    T0, T1 = _plans(panel["T"], shift=2.0)
    X, Y = panel["X"][:, :K], panel["Y"][:, :K]
    plain = kgcm.make_estimator("causal-transformer", **params)
    plain.fit(panel["Y"], panel["T"], X=panel["X"])
    with pytest.raises(InputError, match=r"forecast_steps=0.*Refit with forecast_steps=h"):
        plain.effect(X, T0=T0, T1=T1, Y=Y)
    est = kgcm.make_estimator("causal-transformer", **params, forecast_steps=4)
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    effect, lower, upper = est.effect_with_interval(X, T0=T0, T1=T1, Y=Y)
    assert effect.shape == lower.shape == (40, 4)
    assert np.all(lower <= upper) and np.abs(effect).mean() > 1e-3
    assert not est.effect(X, T0=T0, T1=T0.copy(), Y=Y).any()
    # the plan steps have no covariate token: the learned stand-in was trained (moved off 0)
    assert all(float(net.unseen.detach().abs().max()) > 0 for net in est.models_)
    # the observed outcomes are fed on the history: other outcomes, another forecast
    assert np.abs(est.effect(X, T0=T0, T1=T1, Y=Y + 1.0) - effect).max() > 1e-6
    # the whole-window estimand is unchanged, and the saved model forecasts the same
    assert est.effect(panel["X"], T0=panel["T"], T1=panel["T"] + 1).shape == (40, 12)
    with pytest.raises(InputError, match=r"forecasts from the observed history.*pass Y"):
        est.effect(X, T0=T0, T1=T1)
    longer = panel["X"][:, : K - 2], panel["Y"][:, : K - 2]  # a 6-step plan past 6 steps
    with pytest.raises(InputError, match=r"runs 6 steps.*forecast_steps=4; refit with"):
        est.effect(longer[0], T0=T0, T1=T1, Y=longer[1])
    with pytest.raises(ConfigError, match=r"forecast_steps must be an integer >= 0"):
        kgcm.make_estimator("causal-transformer", forecast_steps=-1).fit(
            panel["Y"], panel["T"], X=panel["X"]
        )


def test_causal_transformer_forecast_survives_save_and_load(panel, tmp_path) -> None:
    est = kgcm.make_estimator("causal-transformer", **fast_params("causal-transformer"),
                              forecast_steps=4)  # fmt: skip
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    T0, T1 = _plans(panel["T"])
    X, Y = panel["X"][:, :K], panel["Y"][:, :K]
    est.save(tmp_path / "ct.kgcm")
    again = kgcm.load(tmp_path / "ct.kgcm")
    np.testing.assert_array_equal(
        again.effect(X, T0=T0, T1=T1, Y=Y), est.effect(X, T0=T0, T1=T1, Y=Y)
    )


@pytest.mark.parametrize("name", ["r-crn", "cf-rnn", "ts-tarnet"])
def test_paper_baselines_forecast_with_a_learned_stand_in_for_future_covariates(
    panel, tmp_path, name
) -> None:
    T0, T1 = _plans(panel["T"], shift=2.0)
    X, Y = panel["X"][:, :K], panel["Y"][:, :K]
    plain = kgcm.make_estimator(name, **fast_params(name)).fit(panel["Y"], panel["T"], X=panel["X"])
    with pytest.raises(InputError, match=r"forecast_steps=0.*Refit with forecast_steps=h"):
        plain.effect(X, T0=T0, T1=T1)
    est = kgcm.make_estimator(name, **fast_params(name), forecast_steps=4, n_ensemble=2)
    est.fit(panel["Y"], panel["T"], X=panel["X"])
    effect, lower, upper = est.effect_with_interval(X, T0=T0, T1=T1)
    assert effect.shape == lower.shape == (40, 4)
    assert np.all(lower <= upper) and np.abs(effect).mean() > 1e-3
    assert not est.effect(X, T0=T0, T1=T0.copy()).any()
    # the stand-in for the plan's covariates was trained (moved off the covariates' mean)
    assert all(float(net.unseen.detach().abs().max()) > 0 for net in est.models_)
    # no outcome is read: Y is optional and changes nothing
    np.testing.assert_array_equal(est.effect(X, T0=T0, T1=T1, Y=Y + 1.0), effect)
    # the history's covariates are read, and so is the history's treatment (the filter of the
    # plan's first steps reaches back into it): either changed, another forecast
    assert np.abs(est.effect(X + 1.0, T0=T0, T1=T1) - effect).max() > 1e-6
    T0s, T1s = T0.copy(), T1.copy()
    T0s[:, :K] += 1.0
    T1s[:, :K] += 1.0
    assert np.abs(est.effect(X, T0=T0s, T1=T1s) - effect).max() > 1e-6
    with pytest.raises(InputError, match=r"runs 6 steps.*forecast_steps=4; refit with"):
        est.effect(panel["X"][:, : K - 2], T0=T0, T1=T1)
    with pytest.raises(ConfigError, match=r"forecast_steps must be an integer >= 0"):
        kgcm.make_estimator(name, forecast_steps=1.5).fit(panel["Y"], panel["T"], X=panel["X"])
    with pytest.raises(ConfigError, match=r"forecast_steps=12 leaves no observed step.*<= 11"):
        kgcm.make_estimator(name, forecast_steps=12).fit(panel["Y"], panel["T"], X=panel["X"])
    est.save(tmp_path / "model.kgcm")
    np.testing.assert_array_equal(
        kgcm.load(tmp_path / "model.kgcm").effect(X, T0=T0, T1=T1), effect
    )
    # a NumPy integer setting is saved as a plain number, so the file loads
    est.forecast_steps = np.int64(4)
    est.save(tmp_path / "numpy.kgcm")
    assert kgcm.load(tmp_path / "numpy.kgcm").get_params()["forecast_steps"] == 4


@pytest.mark.parametrize("name", ["crn", "rmsn"])
def test_decoder_with_covariates_refuses_forecasts(panel, name) -> None:
    est = kgcm.make_estimator(name, **fast_params(name)).fit(panel["Y"], panel["T"], X=panel["X"])
    T0, T1 = _plans(panel["T"])
    with pytest.raises(InputError, match=r"decoder_covariates=True.*Refit with decoder_cov"):
        est.effect(panel["X"][:, :K], T0=T0, T1=T1, Y=panel["Y"][:, :K])
