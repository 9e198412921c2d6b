"""Estimators behind one contract, and their registry.

``make_estimator(name, **params)`` builds one by name; ``list_estimators()`` lists the names;
``load(path)`` reads a saved estimator back. Modules are imported on first use, so importing
kgcm stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from kgcm.errors import ConfigError, InputError, did_you_mean

__all__ = ["estimator_class", "list_estimators", "load", "make_estimator"]

#: name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "kgcm-vae": "kgcm.estimators.kgcm_vae:KGCMVAE",
    "r-crn": "kgcm.estimators.paper_baselines:RCRN",
    "cf-rnn": "kgcm.estimators.paper_baselines:CFRNN",
    "ts-tarnet": "kgcm.estimators.paper_baselines:TSTARNet",
    "crn": "kgcm.estimators.crn:CRN",
    "rmsn": "kgcm.estimators.rmsn:RMSN",
    "causal-transformer": "kgcm.estimators.causal_transformer:CausalTransformer",
    "tarnet": "kgcm.estimators.tarnet:TARNet",
    "cfrnet": "kgcm.estimators.tarnet:CFRNet",
    "cevae": "kgcm.estimators.cevae:CEVAE",
    "t-learner": "kgcm.estimators.meta_learners:TLearner",
    "s-learner": "kgcm.estimators.meta_learners:SLearner",
    "linear-dml": "kgcm.estimators.dml:LinearDML",
    "dynamic-dml": "kgcm.estimators.dml:DynamicDML",
    "zero-effect": "kgcm.estimators.zero_effect:ZeroEffect",
    "gst-unet": "kgcm.estimators.gst_unet:GSTUNet",
}


def estimator_class(name: str) -> type:
    """The class registered under ``name``."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown estimator {name!r}; registered: {sorted(_REGISTRY)}."
            f"{did_you_mean(name, _REGISTRY)}"
        )
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def list_estimators(**tags: bool) -> list[str]:
    """Registered names, optionally only those whose tags match (``intervals=True``,
    ``forecast=True``); an absent tag counts as False."""
    names = sorted(_REGISTRY)
    if not tags:
        return names
    return [
        n
        for n in names
        if all(bool(estimator_class(n).tags.get(k, False)) == v for k, v in tags.items())
    ]


def make_estimator(name: str, **params: Any) -> Any:
    """Build a registered estimator; unknown parameters are refused with the valid ones."""
    cls = estimator_class(name)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in params:
        if key not in valid:
            raise ConfigError(
                f"estimator {name!r} has no parameter {key!r}; valid: {valid}."
                f"{did_you_mean(key, valid)}"
            )
    return cls(**params)


def load(path: str | os.PathLike[str]) -> Any:
    """Read an estimator written by ``save``."""
    import torch

    if os.path.exists(path) and not os.path.isfile(path):
        raise InputError(
            f"{os.fspath(path)!r} is not a regular file (a folder, pipe or device); give the "
            f"path of a model file written by est.save()."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise InputError(
            f"{os.fspath(path)!r} is not a readable kgcm estimator file ({exc.__class__.__name__}: "
            f"{exc}); it may be truncated or from another program. Save it again with est.save()."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != "kgcm-estimator":
        raise InputError(f"{os.fspath(path)!r} is not a kgcm estimator file.")
    from kgcm.estimators.base import FORMAT_VERSION, _version

    written = f"kgcm {payload.get('kgcm_version', '?')}, format {payload.get('format_version')}"
    if payload.get("format_version") == FORMAT_VERSION:
        from kgcm.estimators.base import payload_digest

        if payload.get("checksum") != payload_digest(payload):
            raise InputError(
                f"{os.fspath(path)!r} is damaged: its content does not match the checksum "
                f"written with it (a corrupted or partly overwritten file). Restore it from a "
                f"copy, or refit and save."
            )
    elif payload.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{os.fspath(path)!r} was written by {written}; this kgcm ({_version()}) reads "
            f"format {FORMAT_VERSION}. Load it with the kgcm that wrote it, or refit and save."
        )
    try:
        return estimator_class(payload["estimator"])._from_payload(payload)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"{os.fspath(path)!r} ({payload.get('estimator')!r}, written by {written}) does not "
            f"match this kgcm's ({_version()}) layout for that estimator "
            f"({exc.__class__.__name__}: {exc}); it was probably saved by an earlier "
            f"development version. Load it with the kgcm that wrote it, or refit and save."
        ) from exc
