"""Helpers shared by the static baselines (TARNet, CFRNet, CEVAE, meta-learners, DML).

Static methods know nothing of time: every ``(unit, step)`` pair is one independent sample with
covariates ``X[unit, step]``. These helpers flatten panels to samples and back, check binary
treatments, build the ELU networks of the papers, and merge a model's paper defaults into the
shared :class:`~kgcm.estimators.training.TrainingConfig`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kgcm.errors import ConfigError, InputError, did_you_mean
from kgcm.estimators.training import TrainingConfig

__all__ = [
    "check_binary_treatment",
    "check_choice",
    "check_non_negative",
    "check_positive_int",
    "elu_mlp",
    "merge_training",
    "rows",
    "tensor",
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


def tensor(a: np.ndarray) -> torch.Tensor:
    """float32 tensor of an array (a contiguous copy where needed)."""
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)
