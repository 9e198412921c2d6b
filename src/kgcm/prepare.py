"""``kgcm prepare``: product files → one analysis-ready Zarr store.

Steps, all lazy (dask) until the final write:

1. open every source with its reader (:func:`kgcm.readers.open_dataset`), selecting variables,
   time range and region before anything is read;
2. put every source on the target grid (:mod:`kgcm.regrid`, nearest neighbour);
3. put every source on the target time step, explicitly: a source whose step differs from the
   target's needs ``resample`` set (``"nearest"`` / ``"linear"`` to go finer, ``"mean"`` to go
   coarser), otherwise it is an error; the time axis is the span all sources cover;
4. merge, combine masks, optionally convert effective thickness and remove SSH means;
5. optionally average over the area (the paper's single series);
6. build the knowledge-guided treatment (:mod:`kgcm.treatments`) or take a column;
7. write a Zarr store chunked for training, atomically (a temporary store renamed into place), with
   the resolved config, sources and kgcm version in its attributes, and the path, size and
   SHA-256 of every input file in ``kgcm_inputs.json`` inside it (:mod:`kgcm.provenance`).

Tables (``product = "table"``, ``"paper-csv"``) give ``(time,)`` series and go through the same
steps without the grid ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from kgcm import treatments
from kgcm._progress import progress_bar
from kgcm.config import dump_toml, to_dict
from kgcm.errors import ConfigError, DataError
from kgcm.provenance import INPUTS, INPUTS_ATTR, InputFile, record_inputs
from kgcm.readers.schema import VECTOR_PAIRS
from kgcm.regrid import (
    GridSpec,
    NearestRegridder,
    polar_stereographic_grid,
    regrid_vector,
    same_grid,
    spacing_m,
)
from kgcm.treatments import TreatmentSpec

__all__ = [
    "PrepareConfig",
    "PrepareResult",
    "SourceConfig",
    "TreatmentSpec",
    "area_mean",
    "build_treatment",
    "run_prepare",
    "treatment_sources",
]

RESAMPLE = ("none", "nearest", "linear", "mean")
TIME_STEPS = ("daily", "monthly")
_STEP_ORDER = {"sub-daily": -1, "daily": 0, "7-day": 1, "monthly": 2}
_OPEN_FILES = 16
#: reader options that name a file (grid, mask): inputs like the product files
_FILE_OPTIONS = ("grid", "mask", "kmt", "mesh_mask")
#: rough size of one streamed block of output (float32), in bytes
_BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SourceConfig:
    """One product to read.

    Attributes
    ----------
    name : a short name for messages and for ``grid.source``.
    paths : files, globs or a list of them.
    product : reader name (``kgcm readers``); detected from content when empty.
    variables : canonical variables to take from this source (empty: all it has). A variable may
        come from one source only.
    options : reader options (e.g. ``grid`` for PIOMAS, ``units`` overrides, a table's
        ``date_column``).
    resample : how to bring this source to the target time step when its own differs:
        ``"nearest"`` or ``"linear"`` (to a finer step), ``"mean"`` (to a coarser one).
    """

    name: str
    paths: str | tuple[str, ...]
    product: str = ""
    variables: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    resample: str = "none"

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE:
            raise ConfigError(
                f"source {self.name!r}: resample must be one of {RESAMPLE}; got {self.resample!r}."
            )


def _default_chunks() -> dict[str, int]:
    # one Zarr chunk along time is also the unit of streamed writing: memory holds about
    # time x (whole grid) x variables of it
    return {"time": 32, "y": 128, "x": 128}


@dataclass(frozen=True)
class PrepareConfig:
    """Everything ``kgcm prepare`` needs (see ``configs/prepare-*.toml``).

    Attributes
    ----------
    sources : the products to read.
    output : path of the Zarr store to write.
    start, end : time range (inclusive; empty: what the sources cover together).
    region : lat/lon box ``[lat_min, lat_max, lon_min, lon_max]`` (empty: everything).
    polygon : or a polygon of ``[lon, lat]`` vertices.
    time_step : ``"daily"`` or ``"monthly"``.
    grid : the target grid (default: the first gridded source's).
    area_mean : write the cos(lat)-weighted area mean as one ``(time,)`` series instead of the grid.
    thickness : ``"as-is"`` or ``"from-effective"`` (``sithick = sithick_effective / siconc`` where
        ``siconc >= min_concentration``, else NaN).
    ssh_reference : ``"product"`` (keep each product's datum) or ``"anomaly"`` (remove each cell's
        time mean, so SSH from different products can be compared).
    chunks : Zarr chunks of the output, by dim.
    overwrite : replace an existing store (otherwise an existing output is an error).
    """

    sources: tuple[SourceConfig, ...] = ()
    output: str = "data/prepared.zarr"
    start: str = ""
    end: str = ""
    region: tuple[float, ...] = ()
    polygon: tuple[tuple[float, ...], ...] = ()
    time_step: str = "daily"
    grid: GridSpec = field(default_factory=GridSpec)
    area_mean: bool = False
    thickness: str = "as-is"
    min_concentration: float = 0.15
    ssh_reference: str = "product"
    treatment: TreatmentSpec = field(default_factory=TreatmentSpec)
    chunks: dict[str, int] = field(default_factory=_default_chunks)
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError(
                "prepare needs at least one [[sources]] entry with name, paths and product."
            )
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"source names must be unique; got {names}.")
        if self.time_step not in TIME_STEPS:
            raise ConfigError(f"time_step must be one of {TIME_STEPS}; got {self.time_step!r}.")
        if self.region and len(self.region) != 4:
            raise ConfigError(
                f"region must be [lat_min, lat_max, lon_min, lon_max]; got {list(self.region)}."
            )
        if self.region and self.polygon:
            raise ConfigError("give region or polygon, not both.")
        if self.thickness not in ("as-is", "from-effective"):
            raise ConfigError(
                f"thickness must be 'as-is' or 'from-effective'; got {self.thickness!r}."
            )
        if self.ssh_reference not in ("product", "anomaly"):
            raise ConfigError(
                f"ssh_reference must be 'product' or 'anomaly'; got {self.ssh_reference!r}."
            )
        if self.grid.kind == "source" and self.grid.source and self.grid.source not in names:
            raise ConfigError(f"grid.source {self.grid.source!r} is not a source; have {names}.")
        for which in ("start", "end"):
            value = getattr(self, which)
            if value:
                try:
                    pd.Timestamp(value)
                except (ValueError, TypeError) as exc:
                    raise ConfigError(
                        f"{which} must be a date YYYY-MM-DD (or empty for what the sources "
                        f"cover); got {value!r}."
                    ) from exc
        bad = {d: c for d, c in self.chunks.items() if not isinstance(c, int) or c < 0}
        if bad:
            raise ConfigError(
                f"chunks must be whole numbers of steps/cells (0: the whole dim); got {bad}."
            )
        unknown = set(self.chunks) - {"time", "y", "x"}
        if unknown:
            raise ConfigError(f"chunks has unknown dims {sorted(unknown)}; use time, y, x.")


@dataclass(frozen=True)
class PrepareResult:
    path: Path
    sizes: dict[str, int]
    variables: tuple[str, ...]
    seconds: float
    cell_days: int


# --------------------------------------------------------------------------------------------


def run_prepare(
    config: PrepareConfig,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> PrepareResult:
    """Run the whole preparation; returns where the store is and what it holds."""
    from kgcm._io import OutputLock, check_replaceable, clean_leftovers

    base = Path(base_dir) if base_dir is not None else Path.cwd()
    output = _resolve(base, config.output)
    # the lock keeps a second prepare off this output for the whole run; only an absent path,
    # an empty folder or a store kgcm prepare wrote is ever replaced
    with OutputLock(output):
        check_replaceable(output, "prepare", overwrite=config.overwrite)
        clean_leftovers(output)  # old stores a killed swap left behind
        return _run_prepare(config, base, output, log=log, progress=progress)


def _run_prepare(
    config: PrepareConfig,
    base: Path,
    output: Path,
    *,
    log: Callable[[str], None],
    progress: bool,
) -> PrepareResult:
    # every input file is closed when the run ends, written or failed: an open NetCDF file
    # stays locked by HDF5, so rewriting an input after a prepare would fail
    with contextlib.ExitStack() as files_open:
        return _prepare_opened(config, base, output, files_open, log=log, progress=progress)


def _prepare_opened(
    config: PrepareConfig,
    base: Path,
    output: Path,
    files_open: contextlib.ExitStack,
    *,
    log: Callable[[str], None],
    progress: bool,
) -> PrepareResult:
    started = _time.perf_counter()
    opened = {s.name: _open_source(s, config, base, log, files_open) for s in config.sources}
    gridded = {n: "y" in ds.dims for n, ds in opened.items()}
    if len(set(gridded.values())) > 1:
        raise DataError(
            f"sources mix gridded products {[n for n, g in gridded.items() if g]} with series "
            f"{[n for n, g in gridded.items() if not g]}; prepare them separately (or use "
            f"area_mean on the gridded ones first)."
        )
    _check_unique_variables(opened)
    if all(gridded.values()):
        target = _target_grid(config, opened, log)
        opened = {n: _to_grid(n, ds, target, config, log) for n, ds in opened.items()}
    opened = _align_time(opened, config, log)
    ds = _merge(opened, config)
    ds = _physics(ds, config, log)
    if config.area_mean and "y" in ds.dims:
        ds = area_mean(ds)
    if config.treatment.kind != "none":
        ds["treatment"] = build_treatment(ds, config.treatment)
    _check_not_empty(ds)
    ds = _finalize(ds, config)
    cell_days = int(ds.sizes["time"] * ds.sizes.get("y", 1) * ds.sizes.get("x", 1))
    log(
        f"writing {output} ({', '.join(f'{k} {v}' for k, v in ds.sizes.items())}; "
        f"{cell_days:,} cell-days)"
    )
    # Each open NetCDF file keeps its last-read chunk per variable in the netCDF-C chunk cache,
    # and xarray keeps up to 128 files open: with one file a day that is 128 days of data held
    # for nothing. Streaming needs only the files of the block being written.
    files = _input_files(config, base)
    fingerprints = [_file_fingerprint(f.resolved) for f in files]
    inputs = _fingerprint_key(files, fingerprints)
    # every input's full SHA-256, each file hashed once (a resumed run reuses the hashes of
    # files whose cheap fingerprint is unchanged); the store carries the document and its digest
    document = record_inputs(files, fingerprints, _hash_cache(output), progress=progress, log=log)
    ds.attrs[INPUTS_ATTR] = hashlib.sha256(document).hexdigest()
    with xr.set_options(file_cache_maxsize=_OPEN_FILES):
        _write_zarr(
            ds,
            output,
            config,
            progress=progress,
            inputs=inputs + ds.attrs[INPUTS_ATTR],
            document=document,
        )
    seconds = _time.perf_counter() - started
    return PrepareResult(
        path=output,
        sizes=dict(ds.sizes),
        variables=tuple(str(v) for v in ds.data_vars),
        seconds=seconds,
        cell_days=cell_days,
    )


def _resolve(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _open_source(
    source: SourceConfig,
    config: PrepareConfig,
    base: Path,
    log: Callable[[str], None],
    files_open: contextlib.ExitStack,
) -> xr.Dataset:
    from kgcm.readers import open_dataset

    paths = [source.paths] if isinstance(source.paths, str) else list(source.paths)
    paths = [str(_resolve(base, p)) for p in paths]
    options: dict[str, Any] = dict(source.options)
    for key in _FILE_OPTIONS:
        if isinstance(options.get(key), str):
            options[key] = str(_resolve(base, options[key]))
    if config.start or config.end:
        end: Any = config.end or None
        if end is not None and pd.Timestamp(end) == pd.Timestamp(end).normalize():
            # a date as end means the whole day: hourly sources keep its hours after 00:00
            end = pd.Timestamp(end) + pd.Timedelta(days=1) - pd.Timedelta(nanoseconds=1)
        options["time"] = (config.start or None, end)
    if source.variables:
        options["variables"] = list(source.variables)
    region = list(config.polygon) or list(config.region) or None
    ds = open_dataset(paths, product=source.product or None, **options)
    files_open.callback(ds.close)  # before the selections below drop the close hook
    if region is not None and "y" in ds.dims:
        from kgcm.readers.geometry import select_region

        ds = select_region(ds, config.polygon or tuple(config.region), source=source.name)
    log(
        f"source {source.name}: {ds.attrs.get('reader', source.product)} "
        f"{dict(ds.sizes)} {sorted(str(v) for v in ds.data_vars)} "
        f"({ds.attrs.get('time_step', '?')})"
    )
    return ds


def _check_unique_variables(opened: dict[str, xr.Dataset]) -> None:
    owner: dict[str, str] = {}
    for name, ds in opened.items():
        for var in ds.data_vars:
            if var == "mask":
                continue
            if var in owner:
                raise DataError(
                    f"variable {var!r} comes from both source {owner[var]!r} and {name!r}; pick "
                    f"one with variables = [...] on each source."
                )
            owner[str(var)] = name


def _target_grid(
    config: PrepareConfig, opened: dict[str, xr.Dataset], log: Callable[[str], None]
) -> xr.Dataset:
    spec = config.grid
    if spec.kind == "polar-stereographic":
        grid = polar_stereographic_grid(spec.resolution_km, spec.lat_min, spec.central_meridian)
        if config.region or config.polygon:
            from kgcm.readers.geometry import region_mask

            inside = region_mask(
                grid["lat"].values, grid["lon"].values, config.polygon or tuple(config.region)
            )
            rows = np.flatnonzero(inside.any(axis=1))
            cols = np.flatnonzero(inside.any(axis=0))
            grid = grid.isel(y=slice(rows[0], rows[-1] + 1), x=slice(cols[0], cols[-1] + 1))
        log(f"target grid: polar stereographic {spec.resolution_km} km, {dict(grid.sizes)}")
        return grid
    name = spec.source or next(iter(opened))
    ds = opened[name]
    log(f"target grid: source {name} {ds.sizes['y']} x {ds.sizes['x']}")
    return xr.Dataset(coords={"lat": ds["lat"], "lon": ds["lon"]})


def _to_grid(
    name: str,
    ds: xr.Dataset,
    target: xr.Dataset,
    config: PrepareConfig,
    log: Callable[[str], None],
) -> xr.Dataset:
    if same_grid(ds, target):
        return ds.drop_vars([c for c in ("y", "x") if c in ds.coords])
    src_lat, src_lon = ds["lat"].values, ds["lon"].values
    tgt_lat, tgt_lon = target["lat"].values, target["lon"].values
    if config.grid.radius_km is not None:
        radius = config.grid.radius_km * 1000.0
    else:
        radius = 1.5 * max(spacing_m(src_lat, src_lon), spacing_m(tgt_lat, tgt_lon))
    regrid = NearestRegridder(src_lat, src_lon, tgt_lat, tgt_lon, radius_m=radius)
    if regrid.coverage == 0.0:
        raise DataError(
            f"source {name}: no cell lies within {radius / 1000:.0f} km of the target grid; the "
            f"grids do not overlap (check region and the product's coordinates)."
        )
    log(
        f"source {name}: nearest-neighbour regrid, radius {radius / 1000:.1f} km, "
        f"{regrid.coverage:.0%} of target cells covered"
    )
    out = {}
    for east, north in VECTOR_PAIRS:
        if east in ds and north in ds:
            out[east], out[north] = regrid_vector(ds[east], ds[north], regrid, target)
    for var in ds.data_vars:
        if var in out:
            continue
        moved = regrid(ds[var], target)
        if var == "mask":
            moved = (moved == 1).astype(np.int8)
        out[var] = moved
    return xr.Dataset(out, attrs=ds.attrs)


def _align_time(
    opened: dict[str, xr.Dataset], config: PrepareConfig, log: Callable[[str], None]
) -> dict[str, xr.Dataset]:
    step = config.time_step
    # each source on its own axis first; then the common span
    staged = {}
    for name, ds in opened.items():
        own = ds.attrs.get("time_step", "daily")
        source = next(s for s in config.sources if s.name == name)
        if own == "daily":
            # a daily mean stands for its day, whether stamped at 00:00 or 12:00
            ds = ds.assign_coords(time=pd.DatetimeIndex(ds["time"].values).floor("D"))
        if own == "monthly":
            ds = ds.assign_coords(
                time=pd.DatetimeIndex(ds["time"].values).to_period("M").start_time
                if step == "monthly"
                else ds["time"].values
            )
        if own != step:
            finer = _STEP_ORDER.get(own, 0) > _STEP_ORDER[step]
            allowed = ("nearest", "linear") if finer else ("mean",)
            if source.resample not in allowed:
                raise DataError(
                    f"source {name}: its time step is {own} but the target is {step}; set "
                    f"resample = {' or '.join(repr(a) for a in allowed)} on this source to say "
                    f"how to convert (nothing is resampled silently)."
                )
        # per-step bounds (7-day windows, months) describe the source's own axis only
        bounds = [c for c in ds.coords if c != "time" and ds[c].dims == ("time",)]
        staged[name] = (ds.drop_vars(bounds), own, source.resample)
    target = _time_axis(staged, config)
    out = {}
    for name, (ds, own, how) in staged.items():
        if own == step:
            have = pd.DatetimeIndex(ds["time"].values)
            missing = target.difference(have)
            if len(missing):
                raise DataError(
                    f"source {name}: {len(missing)} of {len(target)} {step} steps are missing "
                    f"(first: {[str(t.date()) for t in missing[:5]]}). Give the missing files, "
                    f"or narrow start/end."
                )
            out[name] = ds.sel(time=target)
        elif how == "mean":
            rule = "MS" if step == "monthly" else "D"
            if own == "sub-daily":
                _check_whole_periods(name, ds, rule, target)
            res = ds.drop_vars("mask", errors="ignore").resample(time=rule).mean()
            if "mask" in ds:
                res["mask"] = ds["mask"]
            out[name] = res.sel(time=target)
        elif how == "nearest":
            out[name] = ds.reindex(time=target, method="nearest")
        else:  # linear
            dyn = ds.drop_vars("mask", errors="ignore").chunk({"time": -1})
            res = dyn.interp(time=target)
            if "mask" in ds:
                res["mask"] = ds["mask"]
            out[name] = res
        if how != "none" and own != step:
            log(f"source {name}: {own} -> {step} by {how}")
    return out


def _check_whole_periods(name: str, ds: xr.Dataset, rule: str, target: pd.DatetimeIndex) -> None:
    """Refuse target days (months) that a sub-daily source does not cover with every step.

    A mean over the hours that happen to be there (a day cut by the download, a missing file)
    would be biased by the daily cycle, so it is an error, not a silent partial mean."""
    times = pd.DatetimeIndex(ds["time"].values)
    hours = ds.attrs.get("time_interval_hours")
    if not hours:
        hours = float(pd.Series(times[1:] - times[:-1]).mode().iloc[0] / pd.Timedelta(hours=1))
    counts = pd.Series(1, index=times).resample(rule).count().reindex(target, fill_value=0)
    period_hours = 24.0 if rule == "D" else target.days_in_month.to_numpy() * 24.0
    expected = np.round(period_hours / float(hours)).astype(int)
    short = counts.index[counts.to_numpy() < expected]
    if len(short):
        what = "days" if rule == "D" else "months"
        raise DataError(
            f"source {name}: {len(short)} of {len(target)} {what} are not covered by every "
            f"{hours:g}-hourly step (first: {[str(t.date()) for t in short[:5]]}), so their "
            f"mean would be partial. Give the missing hours, or narrow start/end to whole "
            f"{what}."
        )


def _time_axis(
    staged: dict[str, tuple[xr.Dataset, str, str]], config: PrepareConfig
) -> pd.DatetimeIndex:
    starts, ends = [], []
    for ds, _, _ in staged.values():
        t = pd.DatetimeIndex(ds["time"].values)
        starts.append(t[0])
        ends.append(t[-1])
    start, end = max(starts), min(ends)
    if config.start:
        start = max(start, pd.Timestamp(config.start))
    if config.end:
        end = min(end, pd.Timestamp(config.end))
    freq = "D" if config.time_step == "daily" else "MS"
    axis = pd.date_range(start.normalize(), end, freq=freq)
    if config.time_step == "daily":
        axis = axis[axis >= start]
    if len(axis) == 0:
        spans = {
            n: (str(s.date()), str(e.date())) for n, s, e in zip(staged, starts, ends, strict=True)
        }
        raise DataError(
            f"the sources share no {config.time_step} step within the requested range; their "
            f"spans are {spans}."
        )
    return axis


def _merge(opened: dict[str, xr.Dataset], config: PrepareConfig) -> xr.Dataset:
    parts = []
    masks = []
    for ds in opened.values():
        if "mask" in ds:
            masks.append(ds["mask"])
        parts.append(ds.drop_vars("mask", errors="ignore"))
    merged = xr.merge(parts, compat="override", join="exact", combine_attrs="drop")
    for part in parts:  # variable attrs (units, standard_name) survive; dataset attrs do not
        for name in part.data_vars:
            merged[name].attrs = dict(part[name].attrs)
    if masks:
        mask = masks[0]
        for m in masks[1:]:
            mask = mask * m
        merged["mask"] = mask.astype(np.int8)
    merged.attrs["sources"] = json.dumps(
        {
            n: {k: ds.attrs.get(k) for k in ("reader", "product", "time_step", "n_source_files")}
            for n, ds in opened.items()
        }
    )
    return merged


def _physics(ds: xr.Dataset, config: PrepareConfig, log: Callable[[str], None]) -> xr.Dataset:
    if config.thickness == "from-effective":
        if "sithick_effective" not in ds or "siconc" not in ds:
            raise DataError(
                "thickness = 'from-effective' needs sithick_effective and siconc from the sources; "
                f"have {sorted(str(v) for v in ds.data_vars)}."
            )
        if "sithick" in ds:
            raise DataError("sithick is given already; do not also convert sithick_effective.")
        conc = ds["siconc"]
        ds["sithick"] = (ds["sithick_effective"] / conc).where(conc >= config.min_concentration)
        ds = ds.drop_vars("sithick_effective")
        log(f"sithick = sithick_effective / siconc where siconc >= {config.min_concentration}")
    elif "sithick_effective" in ds and "sithick" not in ds:
        log(
            "note: thickness is effective (volume per cell area); set thickness = "
            "'from-effective' to convert with siconc"
        )
    if config.ssh_reference == "anomaly" and "zos" in ds:
        ds["zos"] = ds["zos"] - ds["zos"].mean("time")
        log("zos: each cell's time mean removed (ssh_reference = 'anomaly')")
    return ds


def area_mean(ds: xr.Dataset) -> xr.Dataset:
    """cos(lat)-weighted mean over valid cells: ``(time, y, x)`` → ``(time,)`` (lazy).

    Each variable is averaged over the cells where it is finite (and ``mask`` is 1).
    """
    weights = np.cos(np.deg2rad(ds["lat"]))
    if "mask" in ds:
        weights = weights * ds["mask"]
    out = {}
    for name in ds.data_vars:
        if name == "mask" or "y" not in ds[name].dims:
            continue
        da = ds[name]
        w = weights.where(da.notnull(), 0.0)
        out[name] = (da.fillna(0.0) * w).sum(("y", "x")) / w.sum(("y", "x"))
        out[name].attrs = da.attrs
    series = xr.Dataset(out, attrs=ds.attrs)
    series.attrs["area_mean"] = "cos(lat)-weighted mean over valid cells"
    return series.drop_vars(["lat", "lon"], errors="ignore")


def treatment_sources(spec: TreatmentSpec) -> tuple[str, ...]:
    """The variables the treatment of ``spec`` is computed from (empty for ``kind = "none"``).

    ``velocity-modulation``: the velocity pair and the SSH; ``column``/``moving-average``: the
    column. Written into the treatment's ``computed_from`` attribute."""
    if spec.kind == "velocity-modulation":
        pair = ("uo", "vo") if spec.velocity == "ocean" else ("usi", "vsi")
        return (*pair, spec.ssh)
    if spec.kind in ("column", "moving-average"):
        return (spec.column,)
    return ()


def build_treatment(ds: xr.Dataset, spec: TreatmentSpec) -> xr.DataArray:
    """The treatment variable from ``ds`` according to ``spec`` (lazy)."""

    def need(name: str) -> xr.DataArray:
        if name not in ds:
            raise DataError(
                f"the treatment needs {name!r}, which no source provides; have "
                f"{sorted(str(v) for v in ds.data_vars)}."
            )
        return ds[name]

    if spec.kind == "velocity-modulation":
        east, north = ("uo", "vo") if spec.velocity == "ocean" else ("usi", "vsi")
        spd = treatments.speed(need(east), need(north))
        out = treatments.velocity_modulation(spd, need(spec.ssh), spec.modulation)
    else:
        base = need(spec.column)
        out = (
            treatments.moving_average(base, spec.window) if spec.kind == "moving-average" else base
        )
        if spec.lag:
            out = treatments.lag(out, spec.lag)
        out = out.copy().assign_attrs(units=base.attrs.get("units", ""))
    attrs = {
        f"kgcm_{k}": (json.dumps(v) if isinstance(v, str) else v) for k, v in to_dict(spec).items()
    }
    # the fields the treatment is a function of: to_sequences refuses them as covariates
    attrs["computed_from"] = " ".join(treatment_sources(spec))
    attrs["long_name"] = {
        "velocity-modulation": "knowledge-guided velocity modulation",
        "column": f"treatment: {spec.column}",
        "moving-average": f"treatment: {spec.window}-step moving average of {spec.column}",
    }[spec.kind]
    return out.rename("treatment").assign_attrs(attrs)


def _check_not_empty(ds: xr.Dataset) -> None:
    """Refuse variables with no valid value at the first step (reads one step only)."""
    import dask

    names = [str(v) for v in ds.data_vars if v != "mask" and "time" in ds[v].dims]
    first = dask.compute(*(ds[v].isel(time=0).notnull().any() for v in names))
    empty = [n for n, ok in zip(names, first, strict=True) if not bool(ok)]
    if empty:
        raise DataError(
            f"{empty} hold no valid value in the selected region at the first time step "
            f"({str(ds['time'].values[0])[:10]}): the region may lie on land or outside the "
            f"product's coverage. Check region/polygon and the sources."
        )


def _finalize(ds: xr.Dataset, config: PrepareConfig) -> xr.Dataset:
    if ds.sizes.get("time", 0) == 0:
        raise DataError("the prepared dataset has no time step.")
    for name in list(ds.data_vars):
        if name != "mask" and np.issubdtype(ds[name].dtype, np.floating):
            ds[name] = ds[name].astype(np.float32)
    ds.attrs.update(
        kgcm_prepare_config=dump_toml(config),
        kgcm_version=_version(),
        time_step=config.time_step,
        Conventions="CF-1.8",
        history=f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%dT%H:%M:%SZ} kgcm prepare",
    )
    chunks = {d: min(int(c), ds.sizes[d]) for d, c in config.chunks.items() if d in ds.dims}
    chunks = {d: (ds.sizes[d] if c <= 0 else c) for d, c in chunks.items()}
    if "y" not in ds.dims:
        chunks["time"] = ds.sizes["time"]  # a series is small: one chunk
    return ds.chunk(chunks)


def _file_fingerprint(path: Path) -> list[Any]:
    """Size, mtime and a hash of the first and last MiB of a file (or of every file of a
    folder such as a Zarr store): cheap, yet it changes when a file is replaced or rewritten."""
    if path.is_dir():
        return [
            [p.relative_to(path).as_posix(), *_file_fingerprint(p)]
            for p in sorted(path.rglob("*"))
            if p.is_file()
        ]
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
        h.update(f.read(1 << 20))
    return [st.st_size, st.st_mtime_ns, h.hexdigest()]


def _input_files(config: PrepareConfig, base: Path) -> list[InputFile]:
    """Every input of ``config``: each source's files (globs expanded), then the files its
    options name (grid, mask, ...), in config order."""
    from kgcm.readers.base import expand_paths

    out: list[InputFile] = []
    for source in config.sources:
        entries = [source.paths] if isinstance(source.paths, str) else list(source.paths)
        for entry in entries:
            relative = not Path(entry).expanduser().is_absolute()
            for f in expand_paths([str(_resolve(base, entry))]):
                shown = os.path.relpath(f, base) if relative else str(f)
                out.append(InputFile(source.name, "data", entry, shown, f.resolve()))
        for key, value in sorted(source.options.items()):
            if key in _FILE_OPTIONS and isinstance(value, str):
                f = _resolve(base, value)
                if f.exists():
                    out.append(InputFile(source.name, key, value, value, f.resolve()))
    return out


def _fingerprint_key(files: list[InputFile], fingerprints: list[Any]) -> str:
    entries: list[Any] = [_version()]
    entries += [[f.source, str(f.resolved), fp] for f, fp in zip(files, fingerprints, strict=True)]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _hash_cache(output: Path) -> Path:
    """Where the input files' full hashes wait between an interrupted run and its resumption."""
    return output.with_name(f".{output.name}.partial.inputs.json")


def _write_zarr(
    ds: xr.Dataset,
    output: Path,
    config: PrepareConfig,
    *,
    progress: bool,
    inputs: str = "",
    document: bytes = b"",
) -> None:
    """Write ``ds`` block by block along time into a partial store, then rename it into place.

    Each block is one Zarr chunk along time, computed and written on its own
    (``to_zarr(region=...)``), so memory holds one block of the grid whatever the record length.
    The partial store remembers finished blocks under a key of the config, the sizes and the
    inputs (``inputs``: :func:`_fingerprint_key`): rerunning the same config on the same files
    after an interruption continues where it stopped; another config, or an input file changed
    in between, starts over. ``document`` (:func:`kgcm.provenance.record_inputs`) is written
    into the store as ``kgcm_inputs.json`` before its manifest, which lists it with its hash.
    The caller holds the output's lock.
    """
    from kgcm._io import atomic_write_bytes, replace_folder, write_marker

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    done_file = output.with_name(f".{output.name}.partial.json")
    key = hashlib.sha256(
        (ds.attrs["kgcm_prepare_config"] + repr(dict(ds.sizes)) + inputs).encode()
    ).hexdigest()
    done: list[int] = []
    if partial.exists():
        state = json.loads(done_file.read_text()) if done_file.exists() else {}
        if state.get("key") == key:
            done = list(state.get("done", []))
        else:
            shutil.rmtree(partial)
            done_file.unlink(missing_ok=True)
    for var in ds.variables.values():
        var.encoding = {}
    timeless = [str(v) for v in ds.data_vars if "time" not in ds[v].dims]
    if not partial.exists() or not done_file.exists():
        # metadata, coordinates and the variables without time; data blocks follow
        ds.to_zarr(partial, mode="w", compute=False, consolidated=True, zarr_format=2)
        if timeless:
            ds[timeless].to_zarr(partial, mode="r+", consolidated=False, zarr_format=2)
        _save_state(done_file, key, done)
    chunk = ds.chunks["time"][0] if ds.chunks and "time" in ds.chunks else ds.sizes["time"]
    # blocks of whole time chunks, as many as fit in the memory budget (at least one)
    step_bytes = sum(
        int(np.prod([ds.sizes[d] for d in ds[v].dims if d != "time"])) * 4
        for v in ds.data_vars
        if "time" in ds[v].dims
    )
    step = chunk * max(1, _BLOCK_BYTES // max(1, chunk * step_bytes))
    n_time = ds.sizes["time"]
    blocks = [(i, slice(a, min(a + step, n_time))) for i, a in enumerate(range(0, n_time, step))]
    todo = [(i, sl) for i, sl in blocks if i not in done]
    dynamic = ds.drop_vars(timeless + [c for c in ds.coords if "time" not in ds[c].dims])
    with progress_bar(
        progress, "writing time blocks", len(blocks), completed=len(blocks) - len(todo)
    ) as advance:
        for i, sl in todo:
            dynamic.isel(time=sl).to_zarr(
                partial, region={"time": sl}, consolidated=False, zarr_format=2
            )
            done.append(i)
            _save_state(done_file, key, done)
            advance()
    # the store is complete with its input record or without it, never with half of it
    if document:
        atomic_write_bytes(partial / INPUTS, document)
    # the marker says the store is kgcm's (so overwrite may replace it later); a store's chunks
    # are too many to hash, so it lists only the input record
    write_marker(partial, "prepare", files=[INPUTS] if document else False)
    # forget the progress before the swap: a run killed after it finds no state and starts over
    # rather than trusting a folder that may no longer be this one (the input hashes stay
    # valid: they are keyed by each file's fingerprint)
    done_file.unlink()
    replace_folder(partial, output)
    _hash_cache(output).unlink(missing_ok=True)


def _save_state(path: Path, key: str, done: list[int]) -> None:
    from kgcm._io import atomic_write_text

    atomic_write_text(path, json.dumps({"key": key, "done": sorted(done)}))


def _version() -> str:
    from kgcm import __version__

    return __version__


def open_prepared(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a store written by ``kgcm prepare`` (lazily), with a clear error otherwise."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p} does not exist; run kgcm prepare first.")
    try:
        ds = xr.open_zarr(p, consolidated=True)
    except Exception as exc:
        raise DataError(
            f"{p} is not a readable Zarr store ({exc.__class__.__name__}: {exc}); it may be "
            f"incomplete. Run kgcm prepare again."
        ) from exc
    if "kgcm_prepare_config" not in ds.attrs:
        raise DataError(f"{p} was not written by kgcm prepare (no kgcm_prepare_config attr).")
    return ds
