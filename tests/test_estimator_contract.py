"""One conformance test suite run over every registered estimator.

Estimators tagged ``binary_treatment`` get the 0/1-treatment panel (``binary_panel``) and the
flipped path ``1 - T`` as counterfactual; the others the continuous panel and ``T + 1``.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import kgcm
from conftest import binary_treatment, fast_params, other_path
from kgcm.errors import ConfigError, InputError, NotFittedError

NAMES = kgcm.list_estimators()


def _make(name: str, **extra):
    return kgcm.make_estimator(name, seed=0, **{**fast_params(name), **extra})


@pytest.fixture(scope="module", params=NAMES)
def fitted(request, data_for):
    data = data_for(request.param)
    est = _make(request.param).fit(data["Y"], data["T"], X=data["X"])
    return request.param, est


def test_registry_lists_core_estimators() -> None:
    assert {"kgcm-vae", "zero-effect"} <= set(NAMES)
    assert kgcm.KGCMVAE is kgcm.estimators.estimator_class("kgcm-vae")
    assert "kgcm-vae" in kgcm.list_estimators(intervals=True)


def test_fit_returns_self_and_init_stores_only(data_for) -> None:
    for name in NAMES:
        data = data_for(name)
        est = _make(name)
        assert not any(k.endswith("_") for k in vars(est)), "__init__ must store settings only"
        assert est.fit(data["Y"], data["T"], X=data["X"]) is est


def test_shapes(fitted, data_for) -> None:
    name, est = fitted
    data = data_for(name)
    Y, T, X = data["Y"], data["T"], data["X"]
    T1 = other_path(name, T)
    assert est.predict(X, T).shape == Y.shape
    e = est.effect(X, T0=T, T1=T1)
    assert e.shape == Y.shape and np.isfinite(e).all()
    if est.tags["intervals"]:
        lo, hi = est.effect_interval(X, T0=T, T1=T1, alpha=0.1)
        assert lo.shape == hi.shape == Y.shape
        assert np.all(lo <= hi)
    # fewer units and another window length also work for sequence models
    short = T[:5, :7]
    T1_short = 1.0 - short if binary_treatment(name) else short * 2
    assert est.effect(X[:5, :7], T0=short, T1=T1_short).shape == (5, 7)


def test_same_path_gives_zero_effect(fitted, data_for) -> None:
    name, est = fitted
    data = data_for(name)
    e = est.effect(data["X"], T0=data["T"], T1=data["T"])
    np.testing.assert_allclose(e, 0.0, atol=1e-6)


def test_binary_estimators_refuse_other_treatments(fitted, panel) -> None:
    name, est = fitted
    if not binary_treatment(name):
        return
    T, X = panel["T"], panel["X"]
    with pytest.raises(InputError, match=r"needs a binary treatment: T must hold only 0 and 1"):
        _make(name).fit(panel["Y"], T, X=X)
    zeros = np.zeros_like(T)
    with pytest.raises(InputError, match=r"T1 must hold only 0 and 1.*'s-learner'"):
        est.effect(X, T0=zeros, T1=zeros + 2.0)


def test_not_fitted_error(data_for) -> None:
    for name in NAMES:
        data = data_for(name)
        with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
            _make(name).effect(data["X"], T0=data["T"], T1=data["T"])


def test_same_seed_identical(data_for) -> None:
    for name in NAMES:
        data = data_for(name)
        Y, T, X = data["Y"], data["T"], data["X"]
        a = _make(name).fit(Y, T, X=X)
        b = _make(name).fit(Y, T, X=X)
        T1 = other_path(name, T)
        np.testing.assert_array_equal(a.effect(X, T0=T, T1=T1), b.effect(X, T0=T, T1=T1))
        np.testing.assert_array_equal(a.predict(X, T), b.predict(X, T))


def test_fit_leaves_global_random_state_alone(data_for) -> None:
    import torch

    # the legacy global numpy generator is exactly what must stay untouched here
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    expected_t, expected_np = torch.rand(3), np.random.rand(3)  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    for name in NAMES:
        data = data_for(name)
        _make(name).fit(data["Y"], data["T"], X=data["X"])
    np.testing.assert_array_equal(torch.rand(3), expected_t)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)  # noqa: NPY002


def test_save_load_round_trip(fitted, data_for, tmp_path) -> None:
    name, est = fitted
    path = tmp_path / f"{name}.kgcm"
    est.save(path)
    back = kgcm.load(path)
    assert type(back) is type(est)
    assert back.get_params().keys() == est.get_params().keys()
    data = data_for(name)
    T, X = data["T"], data["X"]
    T1 = other_path(name, T)
    np.testing.assert_allclose(back.effect(X, T0=T, T1=T1), est.effect(X, T0=T, T1=T1))
    np.testing.assert_allclose(back.predict(X, T), est.predict(X, T))
    if est.tags["intervals"]:
        for a, b in zip(
            back.effect_interval(X, T0=T, T1=T1), est.effect_interval(X, T0=T, T1=T1), strict=True
        ):
            np.testing.assert_allclose(a, b)


def test_load_rejects_garbage(tmp_path) -> None:
    bad = tmp_path / "bad.kgcm"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a readable kgcm estimator file"):
        kgcm.load(bad)


def test_load_names_a_layout_mismatch(tmp_path, data_for) -> None:
    import torch

    data = data_for("zero-effect")
    path = tmp_path / "model.kgcm"
    kgcm.make_estimator("zero-effect").fit(data["Y"], data["T"], X=data["X"]).save(path)
    payload = torch.load(path, weights_only=True)
    del payload["common"]["t_scaler_"]  # as if saved by an older layout
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"is damaged.*checksum"):
        kgcm.load(path)  # edited after saving: refused by the checksum first
    from kgcm.estimators.base import payload_digest

    payload["checksum"] = payload_digest(payload)  # written that way by an older layout
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"does not match this kgcm.*refit and save"):
        kgcm.load(path)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"format 99.*reads format 2"):
        kgcm.load(path)


def test_float32_input(data_for) -> None:
    for name in NAMES:
        data = data_for(name)
        est = _make(name).fit(
            *(data[k].astype(np.float32) for k in ("Y", "T")), X=data["X"].astype(np.float32)
        )
        T1 = other_path(name, data["T"])
        assert est.effect(data["X"], T0=data["T"], T1=T1).dtype == np.float64


@pytest.mark.parametrize("name", NAMES)
def test_input_errors_are_clear(name, data_for) -> None:
    data = data_for(name)
    Y, T, X = data["Y"], data["T"], data["X"]
    est = _make(name)
    with pytest.raises(InputError, match=r"Y has shape \(40, 11\) but T has \(40, 12\)"):
        est.fit(Y[:, :11], T, X=X)
    with pytest.raises(InputError, match=r"X must be \(n_units, n_steps, n_features\)"):
        est.fit(Y, T, X=X[:30])
    with pytest.raises(InputError, match="must have 2 dimensions"):
        est.fit(Y[:, 0], T, X=X)
    bad = Y.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match="Y holds 1 NaN or infinite values"):
        est.fit(bad, T, X=X)
    est.fit(Y, T, X=X)
    with pytest.raises(InputError, match="fitted with 3"):
        est.effect(X[..., :2], T0=T, T1=T)
    with pytest.raises(InputError, match=r"but T1 has \(40, 5\)"):
        est.effect(X, T0=T, T1=T[:, :5])
    with pytest.raises(InputError, match="alpha must be a number in"):
        est.effect_interval(X, T0=T, T1=T, alpha=1.5)


def test_unknown_names_and_params_are_refused() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'kgcm-vae'"):
        kgcm.make_estimator("kgcm-ave")
    with pytest.raises(ConfigError, match="Did you mean 'latent_dim'"):
        kgcm.make_estimator("kgcm-vae", latnt_dim=3)


def test_xarray_input(data_for) -> None:
    for name in NAMES:
        data = data_for(name)
        X = xr.DataArray(
            data["X"],
            dims=("unit", "step", "feature"),
            coords={"feature": ["zos", "uo", "sithick"]},
        )
        est = _make(name).fit(data["Y"], data["T"], X=X)
        assert est.feature_names_in_ == ("zos", "uo", "sithick")
