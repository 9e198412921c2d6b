"""Conformance checks for any estimator: ``kgcm.testing.check_estimator(est)``.

Every estimator kgcm ships passes these, and so must a new one (``docs/how-to-add-a-baseline.md``),
as scikit-learn offers ``check_estimator``. Each check fits on a small confounded panel (a 0/1
treatment for estimators tagged ``binary_treatment``), so the estimator should be built with fast
settings (few epochs, small layers)::

    from kgcm.testing import check_estimator
    check_estimator(kgcm.make_estimator("crn", seed=0, hidden=8, training={"max_epochs": 3}))

A failing check raises :class:`EstimatorCheckError` naming the check and what went wrong; on
success the names of the checks run are returned.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kgcm.errors import InputError, NotFittedError

__all__ = ["CHECKS", "EstimatorCheckError", "check_estimator", "make_panel"]


class EstimatorCheckError(AssertionError):
    """An estimator broke the contract; the message names the check."""


def make_panel(*, binary: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """A small confounded panel: Y (40, 12), T (40, 12), X (40, 12, 3).

    A hidden confounder ``u`` drives X (three noisy copies), the treatment and the outcome;
    the true effect of T on Y is +2 per unit of T (continuous T is Gaussian; a binary T is more
    likely where ``u`` is high).
    """
    rng = np.random.default_rng(seed)
    n, t, p = 40, 12, 3
    u = rng.normal(size=(n, t))
    X = np.stack([u + 0.1 * rng.normal(size=(n, t)) for _ in range(p)], axis=-1)
    T = 0.5 * u + rng.normal(size=(n, t))
    if binary:
        T = (T > 0).astype(np.float64)
    Y = 2.0 * T + u + 0.1 * rng.normal(size=(n, t))
    return {"Y": Y, "T": T, "X": X}


def _other_path(est: Any, T: np.ndarray) -> np.ndarray:
    return 1.0 - T if est.tags.get("binary_treatment") else T + 1.0


def _clone(est: Any) -> Any:
    return type(est)(**est.get_params())


def _fail(check: str, what: str) -> EstimatorCheckError:
    return EstimatorCheckError(f"check {check!r} failed: {what}")


def _check_init_stores_only(est: Any, data: dict) -> None:
    fitted = [k for k in vars(est) if k.endswith("_")]
    if fitted:
        raise _fail("init_stores_only", f"__init__ sets fitted attributes {fitted}; store "
                    "settings only and set fitted state (ending in '_') in fit")  # fmt: skip
    try:
        _clone(est)
    except Exception as exc:
        raise _fail("init_stores_only", f"type(est)(**est.get_params()) fails: {exc}") from exc


def _check_not_fitted(est: Any, data: dict) -> None:
    try:
        _clone(est).effect(data["X"], T0=data["T"], T1=data["T"])
    except NotFittedError:
        return
    except Exception as exc:
        raise _fail("not_fitted", f"effect before fit raised {exc!r}, not NotFittedError") from exc
    raise _fail("not_fitted", "effect before fit returned instead of raising NotFittedError")


def _fitted(est: Any, data: dict) -> Any:
    fresh = _clone(est)
    out = fresh.fit(data["Y"], data["T"], X=data["X"])
    if out is not fresh:
        raise _fail("fit_returns_self", f"fit returned {type(out).__name__}, not the estimator")
    return fresh


def _check_shapes(est: Any, data: dict) -> None:
    Y, T, X = data["Y"], data["T"], data["X"]
    fitted = _fitted(est, data)
    T1 = _other_path(est, T)
    if fitted.predict(X, T).shape != Y.shape:
        raise _fail("shapes", f"predict gave {fitted.predict(X, T).shape}, expected {Y.shape}")
    e = fitted.effect(X, T0=T, T1=T1)
    if e.shape != Y.shape or not np.isfinite(e).all():
        raise _fail("shapes", f"effect gave shape {e.shape} (expected {Y.shape}) or non-finite")
    if fitted.gives_intervals():
        lo, hi = fitted.effect_interval(X, T0=T, T1=T1, alpha=0.1)
        if lo.shape != Y.shape or hi.shape != Y.shape or not np.all(lo <= hi):
            raise _fail("shapes", "effect_interval is not (n, t) twice with lower <= upper")
        mid, lo2, hi2 = fitted.effect_with_interval(X, T0=T, T1=T1, alpha=0.1)
        if not (np.allclose(lo2, lo) and np.allclose(hi2, hi) and np.allclose(mid, e)):
            raise _fail("shapes", "effect_with_interval disagrees with effect/effect_interval")
    if est.tags.get("sequence"):
        short = T[:5, :7]
        got = fitted.effect(X[:5, :7], T0=short, T1=_other_path(est, short)).shape
        if got != (5, 7):
            raise _fail("shapes", f"5 units of 7 steps gave effects of shape {got}")


def _check_same_path_zero(est: Any, data: dict) -> None:
    fitted = _fitted(est, data)
    e = fitted.effect(data["X"], T0=data["T"], T1=data["T"])
    if not np.allclose(e, 0.0, atol=1e-6):
        raise _fail("same_path_zero", f"T1 = T0 gave effects up to {np.abs(e).max():.3g}")


def _check_same_seed_identical(est: Any, data: dict) -> None:
    import torch

    T, X = data["T"], data["X"]
    T1 = _other_path(est, T)
    # the legacy global generators are exactly what must stay untouched
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    expected_t, expected_np = torch.rand(3), np.random.rand(3)  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    a, b = _fitted(est, data), _fitted(est, data)
    if not (torch.equal(torch.rand(3), expected_t)
            and np.array_equal(np.random.rand(3), expected_np)):  # noqa: NPY002  # fmt: skip
        raise _fail("same_seed_identical", "fit changed the global numpy or torch random state")
    if not np.array_equal(a.effect(X, T0=T, T1=T1), b.effect(X, T0=T, T1=T1)):
        raise _fail("same_seed_identical", "two fits with the same seed give other effects")
    if not np.array_equal(a.predict(X, T), b.predict(X, T)):
        raise _fail("same_seed_identical", "two fits with the same seed predict differently")


def _check_save_load(est: Any, data: dict) -> None:
    from kgcm.estimators import load

    T, X = data["T"], data["X"]
    T1 = _other_path(est, T)
    fitted = _fitted(est, data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.kgcm"
        fitted.save(path)
        back = load(path)
    if type(back) is not type(fitted) or back.get_params().keys() != fitted.get_params().keys():
        raise _fail("save_load", "the loaded estimator is of another type or has other settings")
    for what, a, b in (
        ("effect", back.effect(X, T0=T, T1=T1), fitted.effect(X, T0=T, T1=T1)),
        ("predict", back.predict(X, T), fitted.predict(X, T)),
    ):
        if not np.allclose(a, b):
            raise _fail("save_load", f"{what} differs after save and load")
    if fitted.gives_intervals():
        pairs = zip(back.effect_interval(X, T0=T, T1=T1), fitted.effect_interval(X, T0=T, T1=T1),
                    strict=True)  # fmt: skip
        if not all(np.allclose(a, b) for a, b in pairs):
            raise _fail("save_load", "effect_interval differs after save and load")


def _check_input_errors(est: Any, data: dict) -> None:
    Y, T, X = data["Y"], data["T"], data["X"]
    bad = Y.copy()
    bad[3, 4] = np.nan
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("Y of another length than T", lambda: _clone(est).fit(Y[:, :11], T, X=X)),
        ("X with other units than Y", lambda: _clone(est).fit(Y, T, X=X[:30])),
        ("NaN in Y", lambda: _clone(est).fit(bad, T, X=X)),
    ]
    for what, call in cases:
        try:
            call()
        except InputError:
            continue
        except Exception as exc:
            raise _fail("input_errors", f"{what} raised {exc!r}, not InputError") from exc
        raise _fail("input_errors", f"{what} was accepted")


def _check_float32(est: Any, data: dict) -> None:
    fitted = _clone(est).fit(
        *(data[k].astype(np.float32) for k in ("Y", "T")), X=data["X"].astype(np.float32)
    )
    e = fitted.effect(data["X"], T0=data["T"], T1=_other_path(est, data["T"]))
    if e.dtype != np.float64 or not np.isfinite(e).all():
        raise _fail("float32", f"float32 input gave effects of dtype {e.dtype} or non-finite")


#: The checks, in the order run: name -> function(estimator, panel).
CHECKS: dict[str, Callable[[Any, dict], None]] = {
    "init_stores_only": _check_init_stores_only,
    "not_fitted": _check_not_fitted,
    "shapes": _check_shapes,
    "same_path_zero": _check_same_path_zero,
    "same_seed_identical": _check_same_seed_identical,
    "save_load": _check_save_load,
    "input_errors": _check_input_errors,
    "float32": _check_float32,
}


def check_estimator(est: Any, *, checks: list[str] | None = None) -> list[str]:
    """Run the conformance checks on an (unfitted) estimator; returns the names of those run.

    ``checks`` picks a subset by name (see :data:`CHECKS`). The estimator itself is never
    fitted: each check fits a fresh copy built from ``est.get_params()``.
    """
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise InputError(f"unknown checks {unknown}; known: {list(CHECKS)}.")
    if not hasattr(est, "get_params") or not hasattr(est, "tags"):
        raise InputError(
            f"check_estimator needs an estimator instance (e.g. kgcm.make_estimator(name, "
            f"seed=0, ...)); got {type(est).__name__}."
        )
    data = make_panel(binary=bool(est.tags.get("binary_treatment")))
    for name in names:
        CHECKS[name](est, data)
    return names
