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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from kgcm.errors import ConfigError, InputError, OutputError
from kgcm.streaming import Block, StreamedUnits
from kgcm.treatments import Scenario

__all__ = ["UnitTiles", "empty_grids", "place", "tiled_effects"]

_DONE = ".kgcm-blocks"


class UnitTiles:
    """Blocks of :class:`StreamedUnits`, their units' effects as the estimator gives them."""

    def __init__(self, units: StreamedUnits) -> None:
        self.units = units

    def fingerprint(self) -> str:
        return self.units.fingerprint()

    def block_grids(
        self, est: Any, block: Block, scenario: Scenario, alpha: float, names: list[str]
    ) -> dict[str, np.ndarray]:
        from kgcm.experiments.evaluation import estimate

        grids = empty_grids(block, names)
        seqs = self.units.units(block)
        if seqs is not None:
            got = estimate(est, seqs.X, seqs.T, scenario.apply(seqs.T), alpha=alpha)
            place(grids, block, seqs.cells, seqs.starts, self.units.window,
                  dict(zip(names, (got.effect, got.lower, got.upper), strict=False)))  # fmt: skip
        return grids


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
) -> Path:
    """Write the effects of ``scenario`` over every unit of ``units`` to the Zarr store
    ``out`` (module docstring); returns its path.

    ``model`` is the path of a saved estimator (``est.save(path)``); ``client`` a
    ``dask.distributed.Client`` or None (this process); ``progress`` shows a bar (None: when
    stderr is a terminal).
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
    model_path = Path(model)
    est = load(model_path)  # refused here, once, if it is not a model
    intervals = bool(est.gives_intervals())
    out_path = Path(out)
    key = _key(model_path, source, scenario, alpha)
    blocks = units.blocks()
    _open_output(out_path, units, key, intervals, restart)
    done_dir = out_path / _DONE
    done_dir.mkdir(exist_ok=True)  # also after a run killed between template and markers
    todo = [i for i in range(len(blocks)) if not (done_dir / str(i)).exists()]
    from kgcm._progress import progress_bar

    show = progress if progress is not None else sys.stderr.isatty()
    done = len(blocks) - len(todo)
    with progress_bar(show, "effects by block", len(blocks), completed=done) as advance:
        if client is None:
            for i in todo:
                _block_effects(str(model_path), source, scenario, alpha, str(out_path), i)
                advance()
        else:
            import uuid

            from dask.distributed import as_completed

            token = uuid.uuid4().hex[:8]  # a fresh task name per call: no stale futures
            futures = [
                client.submit(
                    _block_effects, str(model_path), source, scenario, alpha, str(out_path), i,
                    key=f"kgcm-effects-{key}-{i}-{token}", pure=False,
                )
                for i in todo
            ]  # fmt: skip
            for future in as_completed(futures):
                future.result()  # a failed block raises here, with its error
                advance()
    return out_path


def _key(model: Path, source: Any, scenario: Scenario, alpha: float) -> str:
    h = hashlib.sha256()
    h.update(model.read_bytes())
    h.update(repr((source.fingerprint(), scenario.describe(), alpha)).encode())
    return h.hexdigest()[:16]


def _open_output(out: Path, units: StreamedUnits, key: str, intervals: bool, restart: bool) -> None:
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
                f"{out} holds effects of another model, store, scenario or level; pass "
                "restart=True (kgcm: --restart) to start over, or choose another output."
            )
        shutil.rmtree(out)
    ds = units.ds
    shape = tuple(ds.sizes[d] for d in ("time", "y", "x"))
    chunks = (units.starts_per_block * units.stride, *units.tile)
    import dask.array as da

    names = ["effect", "effect_lower", "effect_upper"] if intervals else ["effect"]
    fields = {n: (("time", "y", "x"), da.full(shape, np.nan, dtype="float32", chunks=chunks))
              for n in names}  # fmt: skip
    template = xr.Dataset(
        fields,
        coords={c: ds[c] for c in ds.coords if set(ds[c].dims) <= {"time", "y", "x"}},
        attrs={
            "kgcm_effects_key": key,
            "title": "kgcm effects of a scenario, per cell and day",
            "scenario_stride": units.stride,
        },
    )
    outcome = units.options["outcome"]
    units_attr = ds[outcome].attrs.get("units", "")
    for n in names:
        long_name = f"{n.replace('_', ' ')} of {outcome}"
        template[n].attrs = {"units": units_attr, "long_name": long_name}
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
    model: str, source: Any, scenario: Scenario, alpha: float, out: str, index: int
) -> int:
    """Effects of block ``index`` written into its region of ``out``; runs in a worker."""
    block: Block = source.units.blocks()[index]
    est = _model(model)
    names = ["effect", "effect_lower", "effect_upper"] if est.gives_intervals() else ["effect"]
    grids = source.block_grids(est, block, scenario, alpha, names)
    part = xr.Dataset({n: (("time", "y", "x"), g) for n, g in grids.items()})
    part.to_zarr(out, region={"time": block.steps, "y": block.y, "x": block.x})
    marker = Path(out) / _DONE / str(index)
    marker.write_text(
        json.dumps({"cells_with_effects": int(np.isfinite(grids["effect"]).any(0).sum())})
    )
    return index
