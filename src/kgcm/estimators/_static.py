"""Helpers shared by the static baselines (TARNet, CFRNet, CEVAE, meta-learners, DML).

Static methods know nothing of time: every ``(unit, step)`` pair is one independent sample with
covariates ``X[unit, step]``. These helpers flatten panels to samples and back, check binary
treatments, build the ELU networks of the papers, and merge a model's paper defaults into the
shared :class:`~kgcm.estimators.training.TrainingConfig`. :class:`NeuralStaticEstimator` is
the base of the neural ones (TARNet, CFRNet, CEVAE): one network on a binary treatment, trained
by the shared loop, and its persistence.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kgcm.errors import ConfigError, InputError, did_you_mean
from kgcm.estimators.base import BaseEstimator, ValidatedData
from kgcm.estimators.training import (
    LossFn,
    TrainingConfig,
    ValFn,
    fit_module,
    resolve_device,
    to_tensor,
)

__all__ = [
    "NeuralStaticEstimator",
    "check_binary_paths",
    "check_binary_treatment",
    "check_choice",
    "check_non_negative",
    "check_positive_int",
    "elu_mlp",
    "merge_training",
    "rows",
]

#: Registered estimators that accept a continuous treatment, named in errors.
CONTINUOUS_ALTERNATIVES = "'s-learner', 'linear-dml', 'dynamic-dml' or 'kgcm-vae'"


def rows(a: np.ndarray) -> np.ndarray:
    """Flatten ``(n_units, n_steps, ...)`` to ``(n_units * n_steps, ...)``, unit-major."""
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def check_binary_treatment(T: np.ndarray, name: str, estimator: str) -> None:
    """Raise :class:`InputError` unless every value of ``T`` is 0 or 1.

    Parameters
    ----------
    T : ndarray, shape (n_units, n_steps)
        Treatment path.
    name : str
        Its name in the error (``"T"``, ``"T0"``, ``"T1"``).
    estimator : str
        The estimator's class name, for the error.
    """
    bad = (T != 0.0) & (T != 1.0)
    if np.any(bad):
        values = np.unique(T[bad])
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise InputError(
            f"{estimator} needs a binary treatment: {name} must hold only 0 and 1, but it has "
            f"{int(bad.sum())} other values ({shown}). Pass a 0/1 treatment (for instance "
            f"(T > threshold).astype(float)), or use an estimator for continuous treatments: "
            f"{CONTINUOUS_ALTERNATIVES}."
        )


def check_binary_paths(T0: np.ndarray, T1: np.ndarray, estimator: str) -> None:
    """:func:`check_binary_treatment` of both paths of an effect, ``T0`` first."""
    check_binary_treatment(T0, "T0", estimator)
    check_binary_treatment(T1, "T1", estimator)


def check_choice(value: Any, key: str, allowed: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(
            f"{key} must be one of {list(allowed)}; got {value!r}."
            f"{did_you_mean(str(value), allowed)}"
        )


def check_positive_int(value: Any, key: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{key} must be an integer >= 1; got {value!r}.")


def check_non_negative(value: Any, key: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{key} must be a finite number >= 0; got {value!r}.")
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{key} must be a finite number >= 0; got {value!r}.")


def merge_training(
    user: TrainingConfig | Mapping[str, Any] | None, defaults: Mapping[str, Any]
) -> TrainingConfig:
    """The training settings: the model's paper defaults, overridden by the user's.

    A :class:`TrainingConfig` instance is taken as given; a mapping overrides single fields of
    ``defaults`` (unknown keys refused); None gives ``defaults``.
    """
    if isinstance(user, TrainingConfig):
        return user
    if user is not None and not isinstance(user, Mapping):
        return TrainingConfig.coerce(user)  # raises the standard error
    return TrainingConfig.coerce({**defaults, **(user or {})})


def elu_mlp(sizes: Sequence[int], *, activate_last: bool = False) -> nn.Sequential:
    """Fully connected ELU network ``sizes[0] -> ... -> sizes[-1]``.

    The last layer is linear unless ``activate_last`` (for representations and shared trunks).
    """
    layers: list[nn.Module] = []
    pairs = list(itertools.pairwise(sizes))
    for i, (a, b) in enumerate(pairs):
        layers.append(nn.Linear(a, b))
        if i < len(pairs) - 1 or activate_last:
            layers.append(nn.ELU())
    return nn.Sequential(*layers)


class NeuralStaticEstimator(BaseEstimator):
    """Base of the neural static baselines (TARNet, CFRNet, CEVAE): a binary treatment, one
    network trained by :func:`~kgcm.estimators.training.fit_module` on the samples
    ``{x: _inputs(X), t: T, y: scaled Y}``, and persistence of that network.

    A subclass supplies the settings check (``_check_params``, returning the training
    settings), what it learns from the data before training (``_prepare``), the network
    (``_build``), its covariate inputs (``_inputs``; scaled X by default), its losses
    (``_loss_fn``, ``_val_fn``) and the state it saves besides the network (``_extra_state``,
    ``_set_extra_state``).

    Attributes (after fit): ``model_`` (the network, CPU, eval mode), ``history_`` (per-epoch
    losses) and ``device_`` (where it was trained).
    """

    seed: int

    # ---- hooks ---------------------------------------------------------------------------
    def _check_params(self) -> TrainingConfig:
        raise NotImplementedError

    def _prepare(self, data: ValidatedData) -> None:
        """Fitted state the network or its losses need, set before training."""
        del data

    def _build(self) -> nn.Module:
        raise NotImplementedError

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        """The network's covariate input ``(n_units, n_steps, n_features)``: scaled X."""
        return to_tensor(self.x_scaler_.transform(X))

    def _loss_fn(self, net: Any) -> LossFn:
        raise NotImplementedError

    def _val_fn(self, net: Any) -> ValFn:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        del state

    # ---- fit -----------------------------------------------------------------------------
    def _fit(self, data: ValidatedData) -> None:
        training = self._check_params()
        assert data.Y is not None
        check_binary_treatment(data.T, "T", type(self).__name__)
        self._prepare(data)
        tensors = {
            "x": self._inputs(data.X),
            "t": to_tensor(data.T),
            "y": to_tensor(self.y_scaler_.transform(data.Y)),
        }
        net, history = fit_module(
            self._build,
            tensors,
            loss_fn=self._loss_fn,
            val_fn=self._val_fn,
            config=training,
            seed=int(self.seed),
            description=type(self).__name__,
        )
        self.model_ = net.cpu()
        self.history_ = history
        self.device_ = str(resolve_device(training.device))

    # ---- persistence ---------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {
            "model": self.model_.state_dict(),
            "history": self.history_,
            "device": self.device_,
            **self._extra_state(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._set_extra_state(state)  # before _build, which may read it
        self.history_ = state["history"]
        self.device_ = state["device"]
        net = self._build()
        net.load_state_dict(state["model"])
        net.eval()
        self.model_ = net
