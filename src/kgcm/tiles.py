"""Effects over a whole grid and period, written to Zarr tile by tile, on dask.distributed.

:func:`tiled_effects` takes a fitted estimator, the units of a store
(:class:`kgcm.streaming.StreamedUnits`: the same covariates, window and blocks the model was
trained with) and a scenario, and writes ``effect``, ``effect_lower``, ``effect_upper`` (where
the estimator gives intervals) on ``(time, y, x)``:

- **Tiles.** One task per block of the units (one spatial tile over a run of window starts):
  the task reads that slice of the store, cuts its units, computes their effects and writes
  them into the output's region of that block. Output chunks are the blocks, so concurrent
  writes never touch the same chunk. Memory per task is one block's fields and units.
- **Where it runs.** In this process when ``client`` is None; otherwise every block is a task
  on a ``dask.distributed`` client: ``Client(LocalCluster(...))`` on this machine, or any
  scheduler (``Client("tcp://host:8786")``; on HPC a ``dask_jobqueue`` cluster such as
  ``SLURMCluster``). Workers load the model from its file and open the store themselves, so
  both must be on storage every worker sees.
- **Resumable.** A block's marker is written after its region; a run started again on the same
  output with the same model, units, scenario and level skips the blocks already written. Other
  settings on an existing output are refused (``restart=True`` starts over).
- **Windows.** Windows must not overlap (``stride >= window``): each day of a cell gets the
  effect of the one window holding it. Days no window covers (the tail of the series, land)
  stay NaN.
- **Overlap.** Given the report of :func:`kgcm.check_overlap` on a sample of the units
  (``overlap=``), the output also holds ``treatment_shift_sd``: the scenario's change of the
  treatment, ``|T1 - T0|``, in units of the report's residual sd of ``T`` given the covariates,
  per cell and day; cells above ``SHIFT_SD_MAX`` (2) are read from a region of treatments the
  data rarely show at those covariates. The report itself goes into the attributes
  (``overlap_*``), with ``overlap_warning`` when it was not ok.
- **NetCDF.** :func:`to_netcdf` copies a finished store into one compressed CF NetCDF file,
  chunk by chunk (memory bounded by a chunk), written beside and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kgcm.errors import ConfigError, DataError, InputError, OutputError
from kgcm.streaming import Block, StreamedUnits
from kgcm.treatments import Scenario

__all__ = [
    "SHIFT",
    "UnitTiles",
    "effect_values",
    "empty_grids",
    "place",
    "shift_values",
    "tiled_effects",
    "to_netcdf",
]

_DONE = ".kgcm-blocks"
#: the per cell-day overlap diagnostic: the scenario's treatment change in residual sd
SHIFT = "treatment_shift_sd"


class UnitTiles:
    """Blocks of :class:`StreamedUnits`, their units' effects as the estimator gives them."""

    def __init__(self, units: StreamedUnits) -> None:
        self.units = units

    def fingerprint(self) -> str:
        return self.units.fingerprint()

    def block_units(self, block: Block) -> Any:
        """The block's units (None when all of them hold NaN)."""
        return self.units.units(block)

    def covariates(self, seqs: Any) -> np.ndarray:
        """What the estimator reads as X for these units."""
        return seqs.X

    def outcome_changes(self, seqs: Any, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The estimator's effects (and bounds) as changes of the outcome written out."""
        return values

    def block_grids(
        self,
        est: Any,
        block: Block,
        scenario: Scenario,
        alpha: float,
        names: list[str],
        residual_sd: float | None = None,
    ) -> dict[str, np.ndarray]:
        """The block's effects (and bounds, and the shift) on its (time, y, x) grids."""
        from kgcm.experiments.evaluation import estimate

        grids = empty_grids(block, names)
        seqs = self.block_units(block)
        if seqs is not None:
            T1 = scenario.apply(seqs.T)
            got = estimate(est, self.covariates(seqs), seqs.T, T1, alpha=alpha)
            values = self.outcome_changes(seqs, effect_values(names, got))
            values.update(shift_values(seqs.T, T1, residual_sd))
            place(grids, block, seqs.cells, seqs.starts, self.units.window, values)
        return grids


def shift_values(T0: np.ndarray, T1: np.ndarray, residual_sd: float | None) -> dict[str, Any]:
    """``{SHIFT: |T1 - T0| / residual_sd}`` per unit and step; empty without a residual sd."""
    if residual_sd is None:
        return {}
    return {SHIFT: np.abs(np.asarray(T1) - np.asarray(T0)) / residual_sd}


def effect_values(names: list[str], got: Any) -> dict[str, np.ndarray]:
    """The effect and its interval bounds of an estimate, by their names among ``names``."""
    bounds = (got.effect, got.lower, got.upper)
    return dict(zip([n for n in names if n != SHIFT], bounds, strict=False))


def _names(intervals: bool, shift: bool) -> list[str]:
    names = ["effect", "effect_lower", "effect_upper"] if intervals else ["effect"]
    return [*names, SHIFT] if shift else names


def empty_grids(block: Block, names: list[str]) -> dict[str, np.ndarray]:
    shape = (block.steps.stop - block.steps.start, block.y.stop - block.y.start,
             block.x.stop - block.x.start)  # fmt: skip
    return {n: np.full(shape, np.nan, dtype="float32") for n in names}


def place(
    grids: dict[str, np.ndarray],
    block: Block,
    cells: np.ndarray,
    starts: np.ndarray,
    window: int,
    values: dict[str, np.ndarray],
) -> None:
    """Put per-unit window values (n, window) at their (step, y, x) in a block's grids; cells
    and starts are the store's."""
    rows = (cells[:, 0] - block.y.start)[:, None]
    cols = (cells[:, 1] - block.x.start)[:, None]
    steps = (starts - block.steps.start)[:, None] + np.arange(window)
    for name, v in values.items():
        grids[name][steps, rows, cols] = v


def tiled_effects(
    model: str | os.PathLike[str],
    units: StreamedUnits | Any,
    scenario: Scenario,
    out: str | os.PathLike[str],
    *,
    alpha: float = 0.05,
    client: Any | None = None,
    progress: bool | None = None,
    restart: bool = False,
    overlap: Mapping[str, Any] | None = None,
) -> Path:
    """Write the effects of ``scenario`` over every unit of ``units`` to the Zarr store
    ``out`` (module docstring); returns its path.

    ``model`` is the path of a saved estimator (``est.save(path)``); ``client`` a
    ``dask.distributed.Client`` or None (this process); ``progress`` shows a bar (None: when
    stderr is a terminal); ``overlap`` the report of :func:`kgcm.check_overlap` (a mapping, as
    ``OverlapReport.to_dict()`` gives it) on a sample of the units under this scenario: the
    output then holds the per cell-day shift and the report's figures.
    """
    from kgcm.estimators import load

    source = UnitTiles(units) if isinstance(units, StreamedUnits) else units
    if not isinstance(getattr(source, "units", None), StreamedUnits):
        raise InputError(f"units must be kgcm.streaming.StreamedUnits; got {type(units).__name__}.")
    units = source.units
    if units.stride < units.window:
        raise ConfigError(
            f"tiled effects need windows that do not overlap (stride >= window); the units "
            f"have stride {units.stride} and window {units.window}. Pass stride={units.window}."
        )
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1); got {alpha!r}.")
    residual_sd = _residual_sd(overlap)
    model_path = Path(model)
    est = load(model_path)  # refused here, once, if it is not a model
    names = _names(bool(est.gives_intervals()), residual_sd is not None)
    out_path = Path(out)
    key = _key(model_path, source, scenario, alpha, residual_sd)
    blocks = units.blocks()
    _open_output(out_path, units, key, names, restart, len(blocks), overlap)
    done_dir = out_path / _DONE
    done_dir.mkdir(exist_ok=True)  # also after a run killed between template and markers
    todo = [i for i in range(len(blocks)) if not (done_dir / str(i)).exists()]
    from kgcm._progress import progress_bar

    show = progress if progress is not None else sys.stderr.isatty()
    done = len(blocks) - len(todo)
    with progress_bar(show, "effects by block", len(blocks), completed=done) as advance:
        if client is None:
            for i in todo:
                _block_effects(str(model_path), source, scenario, alpha, residual_sd,
                               str(out_path), i)  # fmt: skip
                advance()
        else:
            import uuid

            from dask.distributed import as_completed

            token = uuid.uuid4().hex[:8]  # a fresh task name per call: no stale futures
            futures = [
                client.submit(
                    _block_effects, str(model_path), source, scenario, alpha, residual_sd,
                    str(out_path), i,
                    key=f"kgcm-effects-{key}-{i}-{token}", pure=False,
                )
                for i in todo
            ]  # fmt: skip
            for future in as_completed(futures):
                future.result()  # a failed block raises here, with its error
                advance()
    return out_path


def _residual_sd(overlap: Mapping[str, Any] | None) -> float | None:
    if overlap is None:
        return None
    sd = overlap.get("residual_sd") if isinstance(overlap, Mapping) else None
    if not isinstance(sd, int | float) or not np.isfinite(sd) or sd <= 0:
        raise InputError(
            "overlap must be the report of kgcm.check_overlap as a mapping "
            f"(OverlapReport.to_dict()), with a positive residual_sd; got {overlap!r:.200}."
        )
    return float(sd)


def _key(
    model: Path, source: Any, scenario: Scenario, alpha: float, residual_sd: float | None
) -> str:
    h = hashlib.sha256()
    h.update(model.read_bytes())
    h.update(repr((source.fingerprint(), scenario.describe(), alpha, residual_sd)).encode())
    return h.hexdigest()[:16]


def _overlap_attrs(overlap: Mapping[str, Any] | None) -> dict[str, Any]:
    """The report as attributes NetCDF can hold too (no booleans, no None)."""
    if overlap is None:
        return {}
    attrs: dict[str, Any] = {"overlap_ok": int(bool(overlap.get("ok")))}
    for name in ("r2", "shift_sd", "residual_sd", "r2_max", "shift_max"):
        if isinstance(overlap.get(name), int | float):
            attrs[f"overlap_{name}"] = float(overlap[name])
    attrs["overlap_message"] = str(overlap.get("message", ""))
    if not overlap.get("ok"):
        attrs["overlap_warning"] = attrs["overlap_message"]
    return attrs


def _open_output(
    out: Path,
    units: StreamedUnits,
    key: str,
    names: list[str],
    restart: bool,
    n_blocks: int,
    overlap: Mapping[str, Any] | None,
) -> None:
    """Create the output's template (NaN everywhere, chunks = blocks), or check that an
    existing one was started with the same settings."""
    if out.exists():
        try:
            attrs = xr.open_zarr(out).attrs
        except Exception as exc:
            raise OutputError(
                f"{out} exists and is not a kgcm effects store ({type(exc).__name__}); choose "
                "another output or remove it."
            ) from exc
        if "kgcm_effects_key" not in attrs:
            raise OutputError(f"{out} exists and is not a kgcm effects store; choose another.")
        if attrs["kgcm_effects_key"] == key and not restart:
            return
        if not restart:
            raise OutputError(
                f"{out} holds effects of another model, store, scenario, level or overlap "
                "sample (or was started by another kgcm version); pass restart=True (kgcm: "
                "--restart) to start over, or choose another output."
            )
        shutil.rmtree(out)
    ds = units.ds
    shape = tuple(ds.sizes[d] for d in ("time", "y", "x"))
    chunks = (units.starts_per_block * units.stride, *units.tile)
    import dask.array as da

    fields = {n: (("time", "y", "x"), da.full(shape, np.nan, dtype="float32", chunks=chunks))
              for n in names}  # fmt: skip
    template = xr.Dataset(
        fields,
        coords={c: ds[c] for c in ds.coords if set(ds[c].dims) <= {"time", "y", "x"}},
        attrs={
            "Conventions": "CF-1.8",
            "kgcm_effects_key": key,
            "kgcm_blocks": n_blocks,
            "title": "kgcm effects of a scenario, per cell and day",
            "scenario_stride": units.stride,
            **_overlap_attrs(overlap),
        },
    )
    outcome = units.options["outcome"]
    units_attr = ds[outcome].attrs.get("units", "")
    for n in names:
        long_name = f"{n.replace('_', ' ')} of {outcome}"
        template[n].attrs = {"units": units_attr, "long_name": long_name}
    if SHIFT in names:
        template[SHIFT].attrs = {
            "units": "1",
            "long_name": "the scenario's treatment change |T1 - T0| in residual sd of the "
            "treatment given the covariates (overlap; above 2: outside the observed support)",
        }
    out.parent.mkdir(parents=True, exist_ok=True)
    template.to_zarr(out, compute=False, mode="w")
    (out / _DONE).mkdir()


_MODELS: dict[tuple[str, float], Any] = {}  # loaded once per worker process


def _model(path: str) -> Any:
    from kgcm.estimators import load

    key = (path, os.stat(path).st_mtime)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = load(path)
    return _MODELS[key]


def _block_effects(
    model: str,
    source: Any,
    scenario: Scenario,
    alpha: float,
    residual_sd: float | None,
    out: str,
    index: int,
) -> int:
    """Effects of block ``index`` written into its region of ``out``; runs in a worker."""
    block: Block = source.units.blocks()[index]
    est = _model(model)
    names = _names(bool(est.gives_intervals()), residual_sd is not None)
    grids = source.block_grids(est, block, scenario, alpha, names, residual_sd)
    part = xr.Dataset({n: (("time", "y", "x"), g) for n, g in grids.items()})
    part.to_zarr(out, region={"time": block.steps, "y": block.y, "x": block.x})
    marker = Path(out) / _DONE / str(index)
    marker.write_text(
        json.dumps({"cells_with_effects": int(np.isfinite(grids["effect"]).any(0).sum())})
    )
    return index


def _is_effects_netcdf(path: Path) -> bool:
    try:
        with xr.open_dataset(path) as ds:
            return "kgcm_effects_key" in ds.attrs
    except Exception:
        return False


def to_netcdf(store: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Copy a finished effects store (every block written) into one NetCDF file at ``path``:
    compressed float32, the store's chunks as NetCDF chunks, read and written chunk by chunk.
    The file is written beside ``path`` and renamed; an existing ``path`` is replaced only if
    it is such a copy."""
    store = Path(store)
    try:
        ds = xr.open_zarr(store)
    except Exception as exc:
        raise InputError(f"{store} is not a kgcm effects store ({type(exc).__name__}).") from exc
    with ds:
        return _copy_to_netcdf(ds, store, Path(path))


def _copy_to_netcdf(ds: xr.Dataset, store: Path, path: Path) -> Path:
    from kgcm._io import output_file

    if "kgcm_effects_key" not in ds.attrs or "kgcm_blocks" not in ds.attrs:
        raise InputError(f"{store} is not a kgcm effects store written by this kgcm version.")
    done_dir = store / _DONE
    done = len(list(done_dir.iterdir())) if done_dir.is_dir() else 0
    if done < int(ds.attrs["kgcm_blocks"]):
        raise DataError(
            f"{store} holds {done} of its {ds.attrs['kgcm_blocks']} blocks; finish it first "
            "(run the same kgcm effect --tiles command again: it resumes)."
        )
    encoding = {}
    for name, var in ds.variables.items():
        var.encoding = {}
        if name in ds.data_vars:
            chunks = tuple(c[0] for c in ds[name].chunks or ())
            encoding[name] = {"zlib": True, "complevel": 4, "dtype": "float32",
                              "_FillValue": np.float32(np.nan), "chunksizes": chunks}  # fmt: skip
    with output_file(path, _is_effects_netcdf) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
    return path
