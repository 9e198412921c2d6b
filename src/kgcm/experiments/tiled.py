"""``kgcm effect RUN --tiles``: a fit run's effects over its whole store, block by block.

The run's store is cut into the blocks of :class:`kgcm.streaming.StreamedUnits` (its chunks:
one spatial tile over a run of window starts) with the run's own options (outcome, treatment,
covariates, static fields, calendar, window); each block's units get the run's outcome
design (the pre-window state as a covariate, the bounded outcome transform, both read from the
run's ``design.json``), their effects are mapped back to the outcome as ``kgcm effect`` maps
them (the factual outcome moved by the effect in the unbounded coordinate, so the
counterfactual stays within the physical bounds), and :func:`kgcm.tiles.tiled_effects` writes
them to Zarr, here or on ``dask.distributed``.

Limits, refused with a message: runs whose design has a day-of-year climatology baseline (it
spans every cell of the store; a split by cell, the grid default, has none), overlapping
windows (``stride`` below ``window``), and single series (no grid to tile).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from kgcm.bounds import OutcomeTransform
from kgcm.errors import ConfigError, DataError
from kgcm.experiments.outcome import OutcomeDesign
from kgcm.streaming import Block, StreamedUnits
from kgcm.tiles import UnitTiles, tiled_effects, to_netcdf
from kgcm.treatments import Scenario

__all__ = ["RunTiles", "run_tiled_effect"]

DESIGN_FILE = "design.json"
#: units the overlap check reads, from blocks drawn across the grid (the store is never loaded)
OVERLAP_SAMPLE = 20_000


def design_record(design: OutcomeDesign) -> dict[str, Any]:
    """What ``kgcm fit`` writes as ``design.json``: the outcome design without its arrays."""
    return {
        "outcome": design.outcome,
        "transform": asdict(design.transform),
        "prewindow_state": design.prewindow_state,
        "climatology": design.climatology is not None,
    }


class RunTiles(UnitTiles):
    """The blocks of a fit run's store, cut and presented as the run's units were."""

    def __init__(self, units: StreamedUnits, design: OutcomeDesign) -> None:
        super().__init__(units)
        self.design = design

    def fingerprint(self) -> str:
        return repr((self.units.fingerprint(), design_record(self.design)))

    def block_units(self, block: Block) -> Any:
        """The block's units as the run cut them, with the pre-window state where the run's
        design reads it."""
        return self.units.units(block, before=self.design.prewindow_state)

    def covariates(self, seqs: Any) -> np.ndarray:
        return self.design.covariates(seqs, np.zeros(0, dtype=np.int64)).values

    def outcome_changes(self, seqs: Any, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The counterfactual outcome minus the factual, moved in the bounded coordinate."""
        return {n: self.design.transform.counterfactual(seqs.Y, d) - seqs.Y
                for n, d in values.items()}  # fmt: skip


def run_tiled_effect(
    run_dir: str | os.PathLike[str],
    *,
    scenario: Scenario | None = None,
    out: str | os.PathLike[str] | None = None,
    alpha: float | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    restart: bool = False,
    allow_weak_overlap: bool = False,
    progress: bool | None = None,
    netcdf: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Effects of a scenario for every unit of a fit run's store, written to Zarr tile by
    tile (module docstring). ``workers``: 0 runs the blocks in this process; otherwise a
    ``LocalCluster`` of that many one-thread worker processes (default: one per core), unless
    ``scheduler`` names a running dask scheduler to use instead. The store holds the overlap
    diagnostic per cell and day (``treatment_shift_sd``) and the sample's report; ``netcdf``
    names a NetCDF file to copy the finished store into as well. Returns a summary."""
    from kgcm._io import verify_folder
    from kgcm.experiments.fit import load_run_config

    run = Path(run_dir).resolve()
    config = load_run_config(run)
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0: no dask); got {workers}.")
    if workers is not None and scheduler is not None:
        raise ConfigError("give --workers (a local cluster) or --scheduler, not both.")
    if alpha is not None and not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1); got {alpha!r}.")
    path = run / DESIGN_FILE
    if path.is_file():
        verify_folder(run, "fit", ("config.toml", "model.kgcm", DESIGN_FILE))
    else:
        raise DataError(
            f"{run} has no {DESIGN_FILE} (it was fitted by an older kgcm); fit it again to "
            "compute its effects tile by tile, or run kgcm effect without --tiles."
        )
    record = json.loads(path.read_text())
    if record["climatology"]:
        raise ConfigError(
            f"{run} learns the outcome's anomaly from a day-of-year climatology of every cell "
            "(climatology on): tiled effects need a design without it. Fit with climatology = "
            "'off' (the default for split = 'cell'), or run kgcm effect without --tiles."
        )
    stride = config.stride or config.window
    if stride < config.window:
        raise ConfigError(
            f"{run} cut overlapping windows (stride {stride} < window {config.window}): tiled "
            "effects need stride >= window. Fit with stride = 0, or run kgcm effect without "
            "--tiles."
        )
    design = OutcomeDesign(
        OutcomeTransform(**record["transform"]), None, record["prewindow_state"], config.outcome
    )
    units = StreamedUnits(
        config.data, outcome=config.outcome, treatment=config.treatment,
        covariates=config.covariates, static=config.static, calendar=config.calendar,
        window=config.window, stride=stride,
    )  # fmt: skip
    source = RunTiles(units, design)
    if scenario is None:
        scenario = config.scenario
    elif not scenario.expected_sign:  # --scale/--shift keep the sign the config expects
        scenario = replace(scenario, expected_sign=config.scenario.expected_sign)
    alpha = config.alpha if alpha is None else alpha
    out_path = Path(out) if out is not None else run.parent / f"{run.name}-effects.zarr"
    overlap = _sample_overlap(source, scenario, allow_weak_overlap, log, config.seed)
    per_cell: dict[str, Any] | None = overlap
    if not overlap["residual_sd"] > 0:  # a treatment without spread at given covariates
        log("no per-cell treatment_shift_sd: the sample's residual sd of T given X is 0")
        per_cell = None
    blocks = len(units.blocks())
    started = time.perf_counter()
    with _client(scheduler, workers) as (client, where):
        log(f"effects of {scenario.describe()} on {blocks} blocks of {units.tile[0]} x "
            f"{units.tile[1]} cells; {where}")  # fmt: skip
        tiled_effects(
            run / "model.kgcm", source, scenario, out_path, alpha=alpha, client=client,
            progress=progress, restart=restart, overlap=per_cell,
        )  # fmt: skip
    if netcdf is not None:
        log(f"copying {out_path} into {netcdf}")
        to_netcdf(out_path, netcdf)
    summary = {
        "effects_store": str(out_path),
        "scenario": scenario.describe(),
        "alpha": alpha,
        "blocks": blocks,
        "tile": list(units.tile),
        "seconds": round(time.perf_counter() - started, 3),
        "overlap": overlap,
        **({"netcdf": str(netcdf)} if netcdf is not None else {}),
    }
    log(f"wrote {out_path}" + (f" and {netcdf}" if netcdf is not None else ""))
    return summary


def _sample_overlap(
    source: RunTiles, scenario: Scenario, allow: bool, log: Callable[[str], None], seed: int
) -> dict[str, Any]:
    """:func:`kgcm.check_overlap` of the scenario on the units of blocks drawn at random (up
    to ``OVERLAP_SAMPLE`` units): the store is never loaded whole."""
    from kgcm.experiments.streamed import sample_units
    from kgcm.overlap import require_overlap

    parts = sample_units(source.units, seed, limit=OVERLAP_SAMPLE, read=source.block_units)
    if not parts:
        raise DataError("every unit of the store holds NaN: there is nothing to compute.")
    T = np.concatenate([p.T for p in parts])[:OVERLAP_SAMPLE]
    X = np.concatenate([p.X for p in parts])[:OVERLAP_SAMPLE]  # as kgcm effect checks it
    log(f"overlap on a sample of {len(T):,} units of blocks drawn across the grid:")
    return require_overlap(T, X, scenario.apply(T), allow_weak=allow, log=log, seed=seed)


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[tuple[Any, str]]:
    if scheduler is None and workers == 0:
        yield None, "in this process"
        return
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client, f"on the dask scheduler at {scheduler}"
        return
    affinity = getattr(os, "sched_getaffinity", None)  # not on macOS
    n = workers or (len(affinity(0)) if affinity else os.cpu_count() or 1)
    with (
        LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client, f"on a local dask cluster of {n} worker processes"
