"""Exceptions raised by kgcm.

Every error says what was expected, what was received, and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "DataError",
    "InputError",
    "KgcmError",
    "NoCompleteUnits",
    "NotFittedError",
    "OutputError",
    "WeakOverlapError",
    "did_you_mean",
]


class KgcmError(Exception):
    """Base class of every error kgcm raises on purpose."""


class InputError(KgcmError, ValueError):
    """Arrays or datasets of the wrong shape, dtype or content."""


class NoCompleteUnits(InputError):
    """Every unit cut from a dataset holds NaN (e.g. an all-land tile): nothing to learn from."""


class ConfigError(KgcmError, ValueError):
    """A config file or parameter set that cannot be used as given."""


class DataError(InputError):
    """A data file or dataset that cannot be used as given: names the file, the variable, and
    what to do."""


class NotFittedError(KgcmError, RuntimeError):
    """An estimator was used before ``fit``."""


class WeakOverlapError(KgcmError, ValueError):
    """The treatment barely varies at given covariates, or a scenario leaves the observed
    support (:func:`kgcm.check_overlap`): the effect is not identified from these data."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class OutputError(KgcmError, OSError):
    """An output path that cannot be written as asked: not a folder, not writable, in use by
    another run, or holding files kgcm did not write."""
