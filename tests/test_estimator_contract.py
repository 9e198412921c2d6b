"""One conformance test suite run over every registered estimator."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import kgcm
from conftest import fast_params
from kgcm.errors import ConfigError, InputError, NotFittedError

NAMES = kgcm.list_estimators()


def _make(name: str, **extra):
    return kgcm.make_estimator(name, seed=0, **{**fast_params(name), **extra})


@pytest.fixture(scope="module", params=NAMES)
def fitted(request, panel):
    est = _make(request.param).fit(panel["Y"], panel["T"], X=panel["X"])
    return request.param, est


def test_registry_lists_core_estimators() -> None:
    assert {"kgcm-vae", "zero-effect"} <= set(NAMES)
    assert kgcm.KGCMVAE is kgcm.estimators.estimator_class("kgcm-vae")
    assert "kgcm-vae" in kgcm.list_estimators(intervals=True)


def test_fit_returns_self_and_init_stores_only(panel) -> None:
    for name in NAMES:
        est = _make(name)
        assert not any(k.endswith("_") for k in vars(est)), "__init__ must store settings only"
        assert est.fit(panel["Y"], panel["T"], X=panel["X"]) is est


def test_shapes(fitted, panel) -> None:
    _, est = fitted
    Y, T, X = panel["Y"], panel["T"], panel["X"]
    assert est.predict(X, T).shape == Y.shape
    e = est.effect(X, T0=T, T1=T + 1)
    assert e.shape == Y.shape and np.isfinite(e).all()
    if est.tags["intervals"]:
        lo, hi = est.effect_interval(X, T0=T, T1=T + 1, alpha=0.1)
        assert lo.shape == hi.shape == Y.shape
        assert np.all(lo <= hi)
    # fewer units and another window length also work for sequence models
    assert est.effect(X[:5, :7], T0=T[:5, :7], T1=T[:5, :7] * 2).shape == (5, 7)


def test_same_path_gives_zero_effect(fitted, panel) -> None:
    _, est = fitted
    e = est.effect(panel["X"], T0=panel["T"], T1=panel["T"])
    np.testing.assert_allclose(e, 0.0, atol=1e-6)


def test_not_fitted_error(panel) -> None:
    for name in NAMES:
        with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
            _make(name).effect(panel["X"], T0=panel["T"], T1=panel["T"])


def test_same_seed_identical(panel) -> None:
    for name in NAMES:
        a = _make(name).fit(panel["Y"], panel["T"], X=panel["X"])
        b = _make(name).fit(panel["Y"], panel["T"], X=panel["X"])
        T = panel["T"]
        np.testing.assert_array_equal(
            a.effect(panel["X"], T0=T, T1=T + 1), b.effect(panel["X"], T0=T, T1=T + 1)
        )
        np.testing.assert_array_equal(a.predict(panel["X"], T), b.predict(panel["X"], T))


def test_fit_leaves_global_random_state_alone(panel) -> None:
    import torch

    # the legacy global numpy generator is exactly what must stay untouched here
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    expected_t, expected_np = torch.rand(3), np.random.rand(3)  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    for name in NAMES:
        _make(name).fit(panel["Y"], panel["T"], X=panel["X"])
    np.testing.assert_array_equal(torch.rand(3), expected_t)
    np.testing.assert_array_equal(np.random.rand(3), expected_np)  # noqa: NPY002


def test_save_load_round_trip(fitted, panel, tmp_path) -> None:
    name, est = fitted
    path = tmp_path / f"{name}.kgcm"
    est.save(path)
    back = kgcm.load(path)
    assert type(back) is type(est)
    assert back.get_params().keys() == est.get_params().keys()
    T, X = panel["T"], panel["X"]
    np.testing.assert_allclose(back.effect(X, T0=T, T1=T + 1), est.effect(X, T0=T, T1=T + 1))
    np.testing.assert_allclose(back.predict(X, T), est.predict(X, T))


def test_load_rejects_garbage(tmp_path) -> None:
    bad = tmp_path / "bad.kgcm"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a readable kgcm estimator file"):
        kgcm.load(bad)


def test_float32_input(panel) -> None:
    for name in NAMES:
        est = _make(name).fit(
            *(panel[k].astype(np.float32) for k in ("Y", "T")), X=panel["X"].astype(np.float32)
        )
        assert est.effect(panel["X"], T0=panel["T"], T1=panel["T"] + 1).dtype == np.float64


@pytest.mark.parametrize("name", NAMES)
def test_input_errors_are_clear(name, panel) -> None:
    Y, T, X = panel["Y"], panel["T"], panel["X"]
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


def test_xarray_input(panel) -> None:
    X = xr.DataArray(
        panel["X"], dims=("unit", "step", "feature"), coords={"feature": ["zos", "uo", "sithick"]}
    )
    for name in NAMES:
        est = _make(name).fit(panel["Y"], panel["T"], X=X)
        assert est.feature_names_in_ == ("zos", "uo", "sithick")
