"""The two files every run folder holds, written one way: ``effects.nc`` and ``run.json``.

``kgcm demo`` and ``kgcm fit`` / ``kgcm effect`` build them here, so a reader (``kgcm report``,
a user's script) finds the same variables, attributes and keys whichever command wrote them.

``effects.nc`` (CF-1.8 NetCDF on the outcome's grid, ``(time, y, x)`` or ``(time,)``):
``effect`` (Y(T1) − Y(T0)), ``effect_lower``/``effect_upper`` where the estimator gives an
interval, ``true_effect`` where the truth is known (simulators), the factual outcome under its
own name (e.g. ``sithick``) and ``<outcome>_counterfactual``, ``treatment`` and
``treatment_scenario``, and ``heldout`` (the share of the windows covering each step that were
held out of training). Global attributes name the title, scenario, estimator and, where the
overlap check failed and the run went on, its warning.

``run.json``: the command, kgcm version, code revision (:mod:`kgcm.provenance`), Python,
platform and torch versions, seeds, estimator, timings per stage, the output files, and what
the command adds (e.g. the overlap report).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kgcm._io import atomic_path, atomic_write_text
from kgcm.sequences import SequenceSet

__all__ = ["effects_dataset", "heldout_share", "write_effects", "write_run_json"]


def heldout_share(seqs: SequenceSet, is_test: np.ndarray) -> xr.DataArray:
    """Per step of the grid, the share of the windows covering it that were held out."""
    return seqs.to_grid(
        np.broadcast_to(np.asarray(is_test, dtype=float)[:, None], seqs.Y.shape),
        "heldout",
        {"long_name": "share of the windows covering the step that were held out of training"},
        combine="mean",
    )


def effects_dataset(
    template: xr.DataArray,
    *,
    outcome: str,
    effect: np.ndarray,
    factual: np.ndarray,
    counterfactual: np.ndarray,
    treatment: np.ndarray,
    treatment_scenario: np.ndarray,
    heldout: xr.DataArray,
    scenario: str,
    estimator: str,
    title: str,
    alpha: float,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    true_effect: np.ndarray | None = None,
    units: str = "",
    treatment_units: str = "",
    overlap: Mapping[str, Any] | None = None,
    **attrs: str,
) -> xr.Dataset:
    """The effects of a scenario as one CF dataset on ``template``'s grid.

    Every array is on the template's shape (already put on the grid, e.g. by
    ``SequenceSet.to_grid``); ``lower``/``upper`` and ``true_effect`` are left out when None.
    ``units`` are the outcome's; ``overlap`` is :func:`kgcm.check_overlap`'s report (its
    message becomes the ``overlap_warning`` attribute when it is not ok); extra keyword
    arguments become global attributes.
    """
    level = f"{1 - alpha:.0%}"
    fields: list[tuple[str, np.ndarray | None, dict[str, str]]] = [
        ("effect", effect, {"long_name": f"estimated effect on {outcome}: Y(T1) - Y(T0)"}),
        ("effect_lower", lower, {"long_name": f"lower end of the {level} interval"}),
        ("effect_upper", upper, {"long_name": f"upper end of the {level} interval"}),
        ("true_effect", true_effect, {"long_name": f"exact effect on {outcome}: Y(T1) - Y(T0)"}),
        (outcome, factual, {"long_name": f"factual {outcome}"}),
        (f"{outcome}_counterfactual", counterfactual,
         {"long_name": f"estimated {outcome} under the scenario ({scenario})"}),
    ]  # fmt: skip
    data: dict[str, xr.DataArray] = {}
    for name, values, var_attrs in fields:
        if values is None:
            continue
        if units:
            var_attrs = {**var_attrs, "units": units}
        data[name] = template.copy(data=np.asarray(values, dtype=np.float64)).rename(name)
        data[name].attrs = var_attrs
    data[outcome].attrs.update(_outcome_attrs(template))
    for name, values, long_name in (
        ("treatment", treatment, "factual treatment T0"),
        ("treatment_scenario", treatment_scenario, f"scenario treatment T1 ({scenario})"),
    ):
        data[name] = template.copy(data=np.asarray(values, dtype=np.float64)).rename(name)
        data[name].attrs = {"long_name": long_name}
        if treatment_units:
            data[name].attrs["units"] = treatment_units
    data["heldout"] = heldout.rename("heldout")
    data["effect"].attrs["outcome"] = outcome
    ds = xr.Dataset(data)
    spatial = {"lat", "lon"} <= set(ds.coords)
    for name in ds.data_vars:
        if spatial:
            ds[name].attrs["coordinates"] = "lat lon"
        ds[name].encoding.update(zlib=True, complevel=4, dtype="float32", _FillValue=np.nan)
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": title,
        "scenario": scenario,
        "estimator": estimator,
        **attrs,
    }
    if overlap is not None and not overlap.get("ok", True):
        ds.attrs["overlap_warning"] = str(overlap["message"])
    return ds


def _outcome_attrs(template: xr.DataArray) -> dict[str, str]:
    """The factual outcome keeps its CF identity (standard name) from the source grid."""
    keep = ("standard_name",)
    return {k: str(template.attrs[k]) for k in keep if k in template.attrs}


def write_effects(ds: xr.Dataset, path: str | Path) -> None:
    """Write ``ds`` atomically as compressed float32 NetCDF (the encodings set above)."""
    with atomic_path(Path(path)) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")


def write_run_json(
    out: str | Path,
    *,
    command: str,
    seed: int,
    estimator: str,
    seconds: Mapping[str, float],
    **extra: Any,
) -> dict[str, Any]:
    """Write ``out/run.json`` (atomically) and return what it holds; the file list is the
    folder's content at the time of the call, so call it after the other outputs."""
    from kgcm import __version__
    from kgcm.provenance import code_revision

    out = Path(out)
    info: dict[str, Any] = {
        "command": command,
        "kgcm_version": __version__,
        "code_revision": code_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _torch_version(),
        "seed": seed,
        "estimator": estimator,
        "seconds": dict(seconds),
        **extra,
    }
    info["files"] = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    atomic_write_text(out / "run.json", json.dumps(info, indent=2) + "\n")
    return info


def _torch_version() -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return "not installed"
    return str(torch.__version__)
