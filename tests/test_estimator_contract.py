"""One conformance test suite run over every registered estimator.

Estimators tagged ``binary_treatment`` get the 0/1-treatment panel (``binary_panel``) and the
flipped path ``1 - T`` as counterfactual; the others the continuous panel and ``T + 1``.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import kgcm
from conftest import binary_treatment, fast_params
from kgcm.errors import ConfigError, InputError
from kgcm.testing import CHECKS, EstimatorCheckError, check_estimator

NAMES = kgcm.list_estimators()


def _make(name: str, **extra):
    return kgcm.make_estimator(name, seed=0, **{**fast_params(name), **extra})


def test_registry_lists_core_estimators() -> None:
    assert {"kgcm-vae", "zero-effect"} <= set(NAMES)
    assert kgcm.KGCMVAE is kgcm.estimators.estimator_class("kgcm-vae")
    assert "kgcm-vae" in kgcm.list_estimators(intervals=True)


@pytest.mark.parametrize("name", NAMES)
def test_conforms(name) -> None:
    """The public conformance checks (kgcm.testing.check_estimator): init stores settings only,
    not-fitted error, shapes and intervals, zero effect for the same path, same seed same
    numbers with the global random state untouched, save/load, input errors, float32."""
    assert check_estimator(_make(name)) == list(CHECKS)


@pytest.mark.parametrize("name", [n for n in NAMES if binary_treatment(n)])
def test_binary_estimators_refuse_other_treatments(name, panel, binary_panel) -> None:
    est = _make(name).fit(binary_panel["Y"], binary_panel["T"], X=binary_panel["X"])
    T, X = panel["T"], panel["X"]
    with pytest.raises(InputError, match=r"needs a binary treatment: T must hold only 0 and 1"):
        _make(name).fit(panel["Y"], T, X=X)
    zeros = np.zeros_like(T)
    with pytest.raises(InputError, match=r"T1 must hold only 0 and 1.*'s-learner'"):
        est.effect(X, T0=zeros, T1=zeros + 2.0)


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


@pytest.mark.parametrize("name", NAMES)
def test_xarray_input(name, data_for) -> None:
    data = data_for(name)
    X = xr.DataArray(
        data["X"],
        dims=("unit", "step", "feature"),
        coords={"feature": ["zos", "uo", "sithick"]},
    )
    est = _make(name).fit(data["Y"], data["T"], X=X)
    assert est.feature_names_in_ == ("zos", "uo", "sithick")


class _Leaky(kgcm.estimators.estimator_class("zero-effect")):
    """Breaks the contract on purpose: its effect of a path on itself is not zero."""

    def effect(self, X=None, *, T0, T1):  # type: ignore[no-untyped-def]
        return super().effect(X, T0=T0, T1=T1) + 0.5


@pytest.mark.parametrize(
    "broken,check",
    [(_Leaky(), "same_path_zero"), ("not an estimator", None)],
)
def test_check_estimator_catches_a_broken_estimator(broken, check) -> None:
    if check is None:
        with pytest.raises(InputError, match="needs an estimator instance"):
            check_estimator(broken)
        return
    with pytest.raises(EstimatorCheckError, match=f"check {check!r} failed: T1 = T0 gave"):
        check_estimator(broken, checks=[check])
    with pytest.raises(EstimatorCheckError, match="check 'shapes' failed: effect_with_interval"):
        check_estimator(broken)  # caught earlier still: effect disagrees with its interval call
    with pytest.raises(InputError, match="unknown checks"):
        check_estimator(broken, checks=["nope"])
