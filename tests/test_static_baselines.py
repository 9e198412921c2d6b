"""Static baselines beyond the contract: TARNet/CFRNet, CEVAE, meta-learners, DML, IHDP loader."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kgcm
from kgcm.errors import ConfigError, DataError, InputError
from kgcm.estimators._flat_models import FlatRegressor, make_regressor
from kgcm.estimators.tarnet import ipm
from kgcm.losses import wasserstein_sinkhorn
from kgcm.metrics import interval_coverage, pehe
from kgcm.synthetic.ihdp import load_ihdp

SMALL_NET = {
    "rep_layers": 2,
    "rep_units": 32,
    "head_layers": 2,
    "head_units": 16,
    "training": {"max_epochs": 40, "progress": False},
}


def _latent_confounded(n: int, seed: int) -> dict[str, np.ndarray]:
    """Static (n_steps = 1) binary-treatment data: a hidden z behind proxies, treatment and
    outcome; heterogeneous effect tau = 1 + z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    cont = [z + 0.5 * rng.normal(size=n) for _ in range(4)]
    binary = [(z + rng.normal(size=n) > 0).astype(float) for _ in range(2)]
    X = np.stack(cont + binary, axis=-1)[:, None, :]
    T = (rng.random(n) < 1.0 / (1.0 + np.exp(-1.5 * z))).astype(float)[:, None]
    tau = (1.0 + z)[:, None]
    Y = z[:, None] + T * tau + 0.2 * rng.normal(size=(n, 1))
    return {"X": X, "T": T, "Y": Y, "tau": tau}


@pytest.fixture(scope="module")
def static_data() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return _latent_confounded(500, 0), _latent_confounded(200, 1)


def _test_effect(est, test: dict[str, np.ndarray]) -> np.ndarray:
    zeros = np.zeros_like(test["T"])
    return est.effect(test["X"], T0=zeros, T1=zeros + 1.0)


# --------------------------------------------------------------------------------------------
# IPM


def test_wasserstein_ipm_zero_for_identical_positive_for_shifted() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(80, 2, generator=gen)
    same = wasserstein_sinkhorn(a, a.clone())
    shifts = (0.5, 1.0, 2.0)
    shifted = [wasserstein_sinkhorn(a, a + s).item() for s in shifts]
    # a translation by s in both coordinates moves every point by |s| * sqrt(2): W1 = that
    np.testing.assert_allclose(shifted, np.sqrt(2.0) * np.array(shifts), rtol=0.1)
    assert same.item() < 0.25 * shifted[0]
    # sharper entropic regularisation takes identical samples to ~0
    assert wasserstein_sinkhorn(a, a.clone(), lam=200.0, iterations=50).item() < 1e-3
    x = a.clone().requires_grad_()
    wasserstein_sinkhorn(x, a + 1.0).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ipm_skips_groups_too_small() -> None:
    a, b = torch.randn(1, 3), torch.randn(5, 3)
    assert ipm(a, b, "mmd") is None
    assert ipm(a, b, "wasserstein") is not None
    assert ipm(a[:0], b, "wasserstein") is None


# --------------------------------------------------------------------------------------------
# Neural static baselines


@pytest.mark.parametrize(
    ("name", "extra"),
    # z drives both treatment and outcome here, so a strong IPM (the default alpha = 1) erases
    # outcome information from the representation; a weaker one is what validation would pick
    [
        ("tarnet", {}),
        ("cfrnet", {"ipm": "wasserstein", "alpha": 0.1}),
        ("cfrnet", {"ipm": "mmd", "alpha": 0.1}),
    ],
)
def test_representation_nets_beat_zero_effect(name, extra, static_data) -> None:
    train, test = static_data
    est = kgcm.make_estimator(name, seed=0, **SMALL_NET, **extra)
    est.fit(train["Y"], train["T"], X=train["X"])
    score = pehe(test["tau"], _test_effect(est, test))
    assert score < 0.6 * pehe(test["tau"], 0 * test["tau"])
    parts = est.history_[0]
    assert ("train_ipm" in parts) == (name == "cfrnet")
    assert {"train_factual", "train_l2", "val_loss"} <= parts.keys()


def test_cevae_recovers_effect_and_intervals_cover(static_data) -> None:
    train, test = static_data
    est = kgcm.make_estimator(
        "cevae",
        seed=0,
        latent_dim=4,
        hidden=32,
        layers=2,
        n_draws=50,
        training={"max_epochs": 40, "progress": False},
    )
    est.fit(train["Y"], train["T"], X=train["X"])
    assert est.binary_mask_.tolist() == [False] * 4 + [True] * 2
    zeros = np.zeros_like(test["T"])
    effect, lo, hi = est.effect_with_interval(test["X"], T0=zeros, T1=zeros + 1, alpha=0.1)
    assert pehe(test["tau"], effect) < 0.6 * pehe(test["tau"], 0 * test["tau"])
    # intervals reflect the latent uncertainty of z | x only (not of the weights): they cover
    # most true effects, and more of them as they widen
    coverage = {
        a: interval_coverage(
            test["tau"], *est.effect_interval(test["X"], T0=zeros, T1=zeros + 1, alpha=a)
        )
        for a in (0.5, 0.1, 0.01)
    }
    assert coverage[0.1] >= 0.6
    assert coverage[0.5] < coverage[0.1] < coverage[0.01]
    assert np.all(hi - lo > 0)
    # reversing the contrast flips the sign; predict averages the same draws
    np.testing.assert_allclose(est.effect(test["X"], T0=zeros + 1, T1=zeros), -effect)
    diff = est.predict(test["X"], zeros + 1) - est.predict(test["X"], zeros)
    np.testing.assert_allclose(diff, effect, atol=1e-9)


def test_static_nets_treat_steps_as_samples(binary_panel) -> None:
    Y, T, X = binary_panel["Y"], binary_panel["T"], binary_panel["X"]
    est = kgcm.make_estimator("tarnet", seed=0, **SMALL_NET).fit(Y, T, X=X)
    # a step's effect depends on that step's covariates only
    e_full = est.effect(X, T0=np.zeros_like(T), T1=np.ones_like(T))
    e_one = est.effect(X[:, 4:5], T0=np.zeros_like(T[:, 4:5]), T1=np.ones_like(T[:, 4:5]))
    np.testing.assert_allclose(e_full[:, 4:5], e_one, rtol=1e-5, atol=1e-6)


def test_settings_errors(static_data) -> None:
    train, _ = static_data
    Y, T, X = train["Y"], train["T"], train["X"]
    with pytest.raises(ConfigError, match="Did you mean 'wasserstein'"):
        kgcm.make_estimator("cfrnet", ipm="wasserstien").fit(Y, T, X=X)
    with pytest.raises(ConfigError, match="alpha must be a finite number >= 0"):
        kgcm.make_estimator("cfrnet", alpha=-1.0).fit(Y, T, X=X)
    with pytest.raises(ConfigError, match="rep_units must be an integer >= 1"):
        kgcm.make_estimator("tarnet", rep_units=0).fit(Y, T, X=X)
    with pytest.raises(InputError, match=r"binary_features names column 0.*recode it to 0/1"):
        kgcm.make_estimator("cevae", binary_features=[0]).fit(Y, T, X=X)
    with pytest.raises(InputError, match="every training sample has T = 1"):
        kgcm.make_estimator("tarnet").fit(Y, np.ones_like(T), X=X)
    with pytest.raises(ConfigError, match="unknown training setting 'epochs'"):
        kgcm.make_estimator("tarnet", training={"epochs": 3}).fit(Y, T, X=X)


# --------------------------------------------------------------------------------------------
# Meta-learners


@pytest.mark.parametrize("name", ["t-learner", "s-learner"])
def test_meta_learners_beat_zero_effect(name, static_data) -> None:
    train, test = static_data
    est = kgcm.make_estimator(name, seed=0, n_estimators=50)
    est.fit(train["Y"], train["T"], X=train["X"])
    assert pehe(test["tau"], _test_effect(est, test)) < 0.6 * pehe(test["tau"], 0 * test["tau"])


def test_s_learner_continuous_treatment(panel) -> None:
    Y, T, X = panel["Y"], panel["T"], panel["X"]
    est = kgcm.make_estimator("s-learner", seed=0, model="linear").fit(Y, T, X=X)
    np.testing.assert_allclose(est.effect(X, T0=T, T1=T + 1), 2.0, atol=0.05)
    forest = kgcm.make_estimator("s-learner", seed=0, model="random-forest", n_estimators=30)
    assert 1.0 < forest.fit(Y, T, X=X).ate(X, T0=T, T1=T + 1) < 2.5


def test_t_learner_needs_both_arms(binary_panel) -> None:
    Y, T, X = binary_panel["Y"], binary_panel["T"], binary_panel["X"]
    T = T.copy()
    T[:] = 0.0
    T[0, 0] = 1.0
    with pytest.raises(InputError, match="1 treated samples"):
        kgcm.make_estimator("t-learner").fit(Y, T, X=X)
    with pytest.raises(ConfigError, match="model must be one of"):
        kgcm.make_estimator("t-learner", model="xgboost").fit(Y, binary_panel["T"], X=X)


@pytest.mark.parametrize("kind", ["gradient-boosting", "random-forest", "linear"])
def test_flat_regressor_matches_scikit_learn(kind) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X[:, 0] * X[:, 1] + np.sin(X[:, 2]) + 0.1 * rng.normal(size=300)
    model = make_regressor(kind, seed=0, n_estimators=20).fit(X, y)
    flat = FlatRegressor.from_sklearn(model)
    X_new = rng.normal(size=(200, 4))
    np.testing.assert_allclose(flat.predict(X_new), model.predict(X_new), rtol=1e-10, atol=1e-10)
    back = FlatRegressor.from_state(flat.to_state())
    np.testing.assert_array_equal(back.predict(X_new), flat.predict(X_new))


# --------------------------------------------------------------------------------------------
# DML (EconML)


def test_linear_dml_recovers_theta_and_matches_econml() -> None:
    pytest.importorskip("econml")
    from econml.dml import LinearDML

    rng = np.random.default_rng(0)
    n = 600
    X = rng.normal(size=(n, 1, 2))
    T = X[..., 0] + rng.normal(size=(n, 1))
    Y = (1.0 + 0.5 * X[..., 1]) * T + X[..., 0] + 0.3 * rng.normal(size=(n, 1))
    est = kgcm.make_estimator("linear-dml", seed=0, model="linear").fit(Y, T, X=X)
    np.testing.assert_allclose(est.params_, [1.0, 0.0, 0.5], atol=0.1)
    lo, hi = est.effect_interval(X, T0=T, T1=T + 2, alpha=0.1)
    ref = LinearDML(
        model_y=make_regressor("linear", seed=0),
        model_t=make_regressor("linear", seed=0),
        cv=2,
        random_state=0,
    ).fit(Y[:, 0], T[:, 0], X=X[:, 0], inference="statsmodels")
    ref_lo, ref_hi = ref.effect_interval(X[:, 0], T0=T[:, 0], T1=T[:, 0] + 2, alpha=0.1)
    np.testing.assert_allclose(lo[:, 0], ref_lo, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hi[:, 0], ref_hi, rtol=1e-6, atol=1e-8)
    effect = est.effect(X, T0=T, T1=T + 2)
    np.testing.assert_allclose(effect[:, 0], ref.effect(X[:, 0], T0=T[:, 0], T1=T[:, 0] + 2))
    assert np.all((lo <= effect) & (effect <= hi))


def _lagged_panel(n: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n, w, 2), T (n, w) confounded by X[..., 0], and Y with an effect of +1 now and +0.5
    one step later."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, w, 2))
    T = 0.5 * X[..., 0] + rng.normal(size=(n, w))
    T_prev = np.concatenate([np.zeros((n, 1)), T[:, :-1]], axis=1)
    Y = T + 0.5 * T_prev + X[..., 0] + 0.3 * rng.normal(size=(n, w))
    return X, T, Y


def test_dynamic_dml_recovers_lagged_effects_and_matches_econml() -> None:
    pytest.importorskip("econml")
    from econml.panel.dml import DynamicDML

    n, m = 400, 3
    X, T, Y = _lagged_panel(n, m, seed=0)
    # the whole window as one group, as EconML's reference below is fitted
    est = kgcm.make_estimator("dynamic-dml", seed=0, heterogeneity=False, n_lags=None)
    est.fit(Y, T, X=X)
    effect, lo, hi = est.effect_with_interval(X, T0=T, T1=T + 1, alpha=0.1)
    # step 0 feels the contemporaneous effect only; later steps add the lag-1 effect
    np.testing.assert_allclose(effect.mean(axis=0), [1.0, 1.5, 1.5], atol=0.15)
    assert np.all(lo < effect) and np.all(effect < hi)
    ref = DynamicDML(
        model_y=make_regressor("linear", seed=0),
        model_t=make_regressor("linear", seed=0),
        cv=2,
        random_state=0,
    )
    groups = np.repeat(np.arange(n), m)
    ref.fit(Y.ravel(), T.ravel(), X=None, W=X.reshape(n * m, 2), groups=groups)
    ref_effect = ref.effect(None, T0=np.zeros((1, m)), T1=np.ones((1, m)))
    ref_lo, ref_hi = ref.effect_interval(None, T0=np.zeros((1, m)), T1=np.ones((1, m)), alpha=0.1)
    np.testing.assert_allclose(effect[:, -1], np.ravel(ref_effect)[0], rtol=1e-6)
    np.testing.assert_allclose(lo[:, -1], np.ravel(ref_lo)[0], rtol=1e-6)
    np.testing.assert_allclose(hi[:, -1], np.ravel(ref_hi)[0], rtol=1e-6)


def test_dynamic_dml_cuts_windows_into_groups_of_n_lags_steps() -> None:
    """n_lags=m fits EconML on consecutive m-step sub-windows (w // m groups a unit): the same
    model as the sub-windows passed as units, and effects that stop after m - 1 lags."""
    pytest.importorskip("econml")
    n, w = 300, 6
    X, T, Y = _lagged_panel(n, w, seed=1)
    est = kgcm.make_estimator("dynamic-dml", seed=0, heterogeneity=False, n_lags=2)
    est.fit(Y, T, X=X)
    assert est.n_lags_ == 2 and est.params_.shape == (2,)
    cut = kgcm.make_estimator("dynamic-dml", seed=0, heterogeneity=False, n_lags=None)
    cut.fit(Y.reshape(3 * n, 2), T.reshape(3 * n, 2), X=X.reshape(3 * n, 2, 2))
    np.testing.assert_allclose(est.params_, cut.params_, rtol=1e-10)
    effect = est.effect(X, T0=T, T1=T + 1)
    np.testing.assert_allclose(effect.mean(axis=0), [1.0] + [1.5] * (w - 1), atol=0.1)
    whole = kgcm.make_estimator("dynamic-dml", seed=0, heterogeneity=False, n_lags=None)
    assert whole.fit(Y, T, X=X).n_lags_ == w
    with pytest.raises(ConfigError, match="n_lags must be an integer >= 1; got 0"):
        kgcm.make_estimator("dynamic-dml", n_lags=0).fit(Y, T, X=X)


def test_dml_without_econml_names_the_extra(monkeypatch, panel) -> None:
    monkeypatch.setitem(sys.modules, "econml", None)
    for name in ("linear-dml", "dynamic-dml"):
        with pytest.raises(ImportError, match=r"pip install 'kgcm\[econml\]'"):
            kgcm.make_estimator(name, model="linear").fit(panel["Y"], panel["T"], X=panel["X"])


# --------------------------------------------------------------------------------------------
# IHDP loader


def _fake_ihdp(path, n: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = (rng.random(n) < 0.3).astype(float)
    outcomes = rng.normal(size=(n, 4))
    cont = rng.normal(size=(n, 6))
    binary = (rng.random((n, 19)) < 0.5).astype(float)
    binary[:, 7] += 1.0  # x14 is coded 1/2 in the real files
    table = np.column_stack([t, outcomes, cont, binary])
    np.savetxt(path, table, delimiter=",")
    return table


def test_load_ihdp_shapes_split_and_recoding(tmp_path) -> None:
    table = _fake_ihdp(tmp_path / "ihdp_npci_3.csv")
    rep = load_ihdp(tmp_path, 3)
    assert rep.X.shape == (50, 1, 25) and rep.T.shape == rep.Y.shape == rep.mu0.shape == (50, 1)
    np.testing.assert_array_equal(rep.T[:, 0], table[:, 0])
    np.testing.assert_allclose(rep.ite[:, 0], table[:, 4] - table[:, 3])
    assert set(np.unique(rep.X[:, 0, 13])) <= {0.0, 1.0}
    assert len(rep.test) == 5 and len(rep.train) == 45
    assert not set(rep.train) & set(rep.test)
    again = load_ihdp(tmp_path / "ihdp_npci_3.csv", 3)
    np.testing.assert_array_equal(again.test, rep.test)
    assert rep.binary_features == tuple(range(6, 25))


def test_load_ihdp_splits(tmp_path) -> None:
    _fake_ihdp(tmp_path / "ihdp_npci_3.csv", n=200)
    seeded = load_ihdp(tmp_path, 3)
    assert np.array_equal(seeded.test, load_ihdp(tmp_path, 3, split_seed=0).test)
    # "replication": the first 10% of numpy's permutation seeded by the replication number
    by_rep = load_ihdp(tmp_path, 3, split="replication")
    expected = np.sort(np.random.default_rng(3).permutation(200)[:20])
    np.testing.assert_array_equal(by_rep.test, expected)
    np.testing.assert_array_equal(by_rep.train, np.setdiff1d(np.arange(200), expected))
    other = load_ihdp(tmp_path, 3, split_seed=1)
    tests = [set(seeded.test), set(by_rep.test), set(other.test)]
    assert all(a != b for i, a in enumerate(tests) for b in tests[i + 1 :])
    with pytest.raises(DataError, match=r"split must be one of \['seeded', 'replication'\]"):
        load_ihdp(tmp_path, 3, split="random")
    with pytest.raises(DataError, match="split_seed=1 would be ignored"):
        load_ihdp(tmp_path, 3, split="replication", split_seed=1)


def test_tarnet_default_extrapolates_on_ihdp_replication_9() -> None:
    """Replication 9's split seeded by the replication number holds out unit 599, whose control
    outcome (255.7) lies a third beyond every training unit's (largest 191.7): the split that
    made TARNet's sqrt(PEHE) 13. With the representation divided by its norm (the paper code's
    setting, formerly the default) these fast settings measured 13.2 (unit 599 predicted at 146);
    with the default, 8.0 (190). The bound is 1.3x the default's figure."""
    rep = load_ihdp(Path(__file__).parents[1] / "benchmarks/data/ihdp", 9, split="replication")
    assert 599 in rep.test and rep.mu0[rep.train].max() < 0.76 * rep.mu0[599, 0]
    fast = {"rep_layers": 2, "rep_units": 64, "head_layers": 2, "head_units": 32}
    est = kgcm.make_estimator("tarnet", seed=0, **fast, training={"progress": False})
    est.fit(rep.Y[rep.train], rep.T[rep.train], X=rep.X[rep.train])
    zeros = np.zeros_like(rep.T[rep.test])
    score = pehe(rep.ite[rep.test], est.effect(rep.X[rep.test], T0=zeros, T1=zeros + 1.0))
    assert np.isfinite(score) and score < 10.4, score


def test_load_ihdp_errors(tmp_path) -> None:
    with pytest.raises(DataError, match=r"ihdp_npci_4\.csv' not found"):
        load_ihdp(tmp_path, 4)
    np.savetxt(tmp_path / "ihdp_npci_1.csv", np.zeros((3, 7)), delimiter=",")
    with pytest.raises(DataError, match="has 7 columns"):
        load_ihdp(tmp_path, 1)
