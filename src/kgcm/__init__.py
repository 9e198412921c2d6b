"""kgcm: causal effects of SSH and ocean velocity on Arctic sea-ice thickness.

The public names are imported on first use (``kgcm.KGCMVAE`` loads torch only then), so
``import kgcm`` is cheap and does nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "KGCMVAE": "kgcm.estimators.kgcm_vae",
    "ZeroEffect": "kgcm.estimators.zero_effect",
    "check_overlap": "kgcm.overlap",
    "Inference": "kgcm.inference",
    "inference": "kgcm.inference",
    "OverlapReport": "kgcm.overlap",
    "BaseEstimator": "kgcm.estimators.base",
    "TrainingConfig": "kgcm.estimators.training",
    "make_estimator": "kgcm.estimators",
    "list_estimators": "kgcm.estimators",
    "load": "kgcm.estimators",
    "treatments": "kgcm.treatments",
    "metrics": "kgcm.metrics",
    "synthetic": "kgcm.synthetic",
    "sequences": "kgcm.sequences",
    "streaming": "kgcm.streaming",
    "tiles": "kgcm.tiles",
    "distributed": "kgcm.distributed",
    "open_dataset": "kgcm.readers",
    "list_readers": "kgcm.readers",
    "readers": "kgcm.readers",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith(name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kgcm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
