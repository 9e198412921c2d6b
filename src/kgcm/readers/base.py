"""The reader plugin base class and the helpers every reader shares.

A reader is a small class with a ``name``, a one-line ``product`` description, a content check
``guess_can_open(path)`` and ``open(paths, ...)`` returning the canonical schema
(:mod:`kgcm.readers.schema`), lazily (dask-backed). Readers never load a product into memory:
only coordinates and, for curvilinear grids, the lat/lon arrays are read eagerly.

Every ``open`` goes through :meth:`Reader.finish`, which selects variables, time range and region,
checks the time axis, sets CF attributes and records provenance.
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from kgcm.errors import DataError
from kgcm.readers.geometry import Region, select_region
from kgcm.readers.schema import CANONICAL, apply_attrs, check_canonical

__all__ = [
    "OpenOptions",
    "Reader",
    "assign_time_bounds",
    "canonical_variable",
    "check_time_axis",
    "collect_open_files",
    "expand_paths",
    "fill_to_nan",
    "mask_from",
    "netcdf_header",
    "open_netcdf",
]

PathLike = str | os.PathLike[str]
Paths = PathLike | Sequence[PathLike]

#: Time-step kinds a reader declares in ``attrs["time_step"]``.
TIME_STEPS = ("sub-daily", "daily", "7-day", "monthly")


@dataclass(frozen=True)
class OpenOptions:
    """Selections applied before anything is loaded.

    Attributes
    ----------
    variables : canonical names to keep (None: all the product has).
    time : ``(start, end)`` inclusive, anything pandas parses, either end may be None.
    region : lat/lon box ``(lat_min, lat_max, lon_min, lon_max)`` or ``(lon, lat)`` polygon.
    chunks : dask chunks per canonical dim (``{"time": 31, "y": 256, "x": 256}``), or "auto".
    units : override a variable's ``units`` attribute, by the product's variable name.
    """

    variables: tuple[str, ...] | None = None
    time: tuple[Any, Any] | None = None
    region: Region | None = None
    chunks: Mapping[str, int] | str | None = "auto"
    units: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time is not None:
            if len(self.time) != 2:
                raise DataError(f"time must be (start, end); got {self.time!r}.")
            for t in self.time:
                if t is None:
                    continue
                try:
                    pd.Timestamp(t)
                except (ValueError, TypeError) as exc:
                    raise DataError(
                        f"time bound {t!r} is not a date; give YYYY-MM-DD (or None for an open "
                        f"end), e.g. time=('2020-01-01', None)."
                    ) from exc
        if self.variables is not None:
            unknown = [v for v in self.variables if v not in CANONICAL]
            if unknown:
                raise DataError(
                    f"unknown variables {unknown}; canonical names are {sorted(CANONICAL)}."
                )


class Reader:
    """Base of every product reader. Subclasses set the class attributes and implement
    :meth:`guess_can_open` and :meth:`_open`."""

    #: registry name, e.g. ``"cmems-glorys12"``
    name: ClassVar[str] = ""
    #: one line: the product, its identifier and its grid
    product: ClassVar[str] = ""
    #: ``"sub-daily"`` (hourly data), ``"daily"``, ``"7-day"`` or ``"monthly"``
    time_step: ClassVar[str] = "daily"
    #: canonical variables this product can provide
    provides: ClassVar[tuple[str, ...]] = ()

    def guess_can_open(self, path: Path) -> bool:
        """True when the file's content (not just its name) looks like this product."""
        raise NotImplementedError

    def open(self, paths: Paths, **options: Any) -> xr.Dataset:
        """Open ``paths`` (one file, a glob or a list) as a lazy canonical dataset.

        Options are those of :class:`OpenOptions` plus reader-specific ones.
        """
        files = expand_paths(paths)
        common = {k: options.pop(k) for k in list(options) if k in OpenOptions.__dataclass_fields__}
        opts = OpenOptions(**_normalise_options(common))
        if opts.variables is not None:
            unknown = [v for v in opts.variables if v not in self.provides and v != "mask"]
            if unknown:
                raise DataError(
                    f"{_describe(files)}: {self.name} data has no {unknown}; it provides "
                    f"{list(self.provides)}. Read those variables from another product (kgcm "
                    f"prepare can combine several)."
                )
        ds = self._open(files, opts, **options)
        return self.finish(ds, files, opts)

    def _open(self, files: list[Path], opts: OpenOptions, **options: Any) -> xr.Dataset:
        raise NotImplementedError

    # ---- shared finishing ----------------------------------------------------------------
    def finish(self, ds: xr.Dataset, files: list[Path], opts: OpenOptions) -> xr.Dataset:
        source = _describe(files)
        if opts.variables is not None:
            missing = [v for v in opts.variables if v not in ds]
            if missing:
                raise DataError(
                    f"{source}: {self.name} data has no {missing}; it provides "
                    f"{sorted(str(v) for v in ds.data_vars)}. Read those variables from another "
                    f"product (kgcm prepare can combine several)."
                )
            keep = list(opts.variables) + (
                ["mask"] if "mask" in ds and "mask" not in opts.variables else []
            )
            ds = ds[keep]
        ds = check_time_axis(ds, source=source)
        if opts.time is not None:
            start, end = (pd.Timestamp(t) if t is not None else None for t in opts.time)
            ds = ds.sel(time=slice(start, end))
            if ds.sizes["time"] == 0:
                raise DataError(f"{source}: no time step within {opts.time}.")
        if opts.region is not None:
            if "y" not in ds.dims:
                raise DataError(f"{source}: region selection needs a gridded (time, y, x) product.")
            ds = select_region(ds, opts.region, source=source)
        ds = apply_attrs(ds)
        ds.attrs.update(
            product=self.product,
            reader=self.name,
            time_step=self.time_step,
            source_files=[str(f) for f in files][:50] + (["..."] if len(files) > 50 else []),
            n_source_files=len(files),
            kgcm_version=_version(),
            Conventions="CF-1.8",
        )
        check_canonical(ds, source=source)
        return ds


# --------------------------------------------------------------------------------------------
# Helpers


def expand_paths(paths: Paths) -> list[Path]:
    """One path, a glob pattern or a list of them → sorted existing files (error if none)."""
    items: Iterable[PathLike] = [paths] if isinstance(paths, str | os.PathLike) else paths
    files: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if any(ch in text for ch in "*?["):
            matched = sorted(glob.glob(text))
            if not matched:
                raise DataError(f"no file matches {text!r}; check the pattern and directory.")
            files.extend(Path(m) for m in matched)
        else:
            p = Path(text)
            if not p.exists():
                raise DataError(f"{text!r} does not exist.")
            files.append(p)
    for f in files:
        # a pipe or a device would block the reader forever (or read garbage): refuse it
        # before anything opens it; folders are Zarr stores
        if not (f.is_file() or f.is_dir()):
            raise DataError(
                f"{f} is not a regular file (a pipe, socket or device); give product files."
            )
    if not files:
        raise DataError("no input files given.")
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    if len(unique) != len(files):
        raise DataError(
            f"the same file is given more than once in {[str(f) for f in files]}; give each once."
        )
    return files


def netcdf_header(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]] | None:
    """``({variable: attrs}, global attrs)`` of a NetCDF file, or None if it is not NetCDF.

    Reads the header only; used by ``guess_can_open``.
    """
    try:
        import netCDF4

        with netCDF4.Dataset(path) as nc:
            variables = {
                name: {k: var.getncattr(k) for k in var.ncattrs()} | {"_dims": var.dimensions}
                for name, var in nc.variables.items()
            }
            return variables, {k: nc.getncattr(k) for k in nc.ncattrs()}
    except Exception:
        return None


#: the files opened by :func:`open_netcdf` while :func:`collect_open_files` is active
_OPENED: contextvars.ContextVar[list[xr.Dataset] | None] = contextvars.ContextVar(
    "kgcm_opened_files", default=None
)


@contextlib.contextmanager
def collect_open_files() -> Iterator[list[xr.Dataset]]:
    """Collect every file :func:`open_netcdf` opens inside the block, to close them later.

    A reader's renames and selections drop xarray's close hook, so closing the returned dataset
    alone would leave the files open (and locked by HDF5) until garbage collection.
    """
    opened: list[xr.Dataset] = []
    token = _OPENED.set(opened)
    try:
        yield opened
    finally:
        _OPENED.reset(token)


def open_netcdf(
    files: list[Path],
    *,
    chunks: Mapping[str, int] | str | None,
    concat_dim: str,
    drop_variables: Sequence[str] = (),
    decode_times: bool = True,
) -> xr.Dataset:
    """Open one or many NetCDF files lazily, with mask-and-scale decoding.

    Each file is opened on its own first, so a truncated or corrupt one is named in the error.
    """
    parts = []
    for f in files:
        try:
            ds = xr.open_dataset(
                f,
                engine="netcdf4",
                chunks=chunks,
                mask_and_scale=True,
                decode_times=decode_times,
                drop_variables=list(drop_variables) or None,
            )
        except Exception as exc:
            raise DataError(
                f"{f}: cannot be read as NetCDF ({exc.__class__.__name__}: {exc}). The file may "
                f"be truncated or corrupt: download it again."
            ) from exc
        parts.append(ds)
        collector = _OPENED.get()
        if collector is not None:
            collector.append(ds)
    if len(parts) == 1:
        return parts[0]
    try:
        return xr.concat(
            parts,
            dim=concat_dim,
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="override",
        )
    except Exception as exc:
        raise DataError(
            f"{_describe(files)}: the files do not form one time series ({exc}). They must share "
            f"the grid and variables."
        ) from exc


def check_time_axis(ds: xr.Dataset, *, source: str) -> xr.Dataset:
    """Refuse duplicated times; sort times that are merely out of order (several files)."""
    if "time" not in ds.dims:
        raise DataError(f"{source}: no time dimension after reading; expected (time, ...).")
    times = pd.DatetimeIndex(ds["time"].values)
    if times.has_duplicates:
        dups = times[times.duplicated()].unique()
        raise DataError(
            f"{source}: time steps {[str(t.date()) for t in dups[:5]]} appear more than once "
            f"({len(dups)} duplicated). Files overlap in time: give each period once."
        )
    if not times.is_monotonic_increasing:
        ds = ds.sortby("time")
    return ds


def _describe(files: Sequence[Path]) -> str:
    if len(files) == 1:
        return str(files[0])
    return f"{files[0]} (+{len(files) - 1} more files)"


def _normalise_options(options: dict[str, Any]) -> dict[str, Any]:
    if options.get("variables") is not None:
        options["variables"] = tuple(options["variables"])
    if options.get("time") is not None:
        options["time"] = tuple(options["time"])
    return options


def fill_to_nan(da: xr.DataArray, fills: Sequence[float]) -> xr.DataArray:
    """Mask values equal to any of ``fills`` (for fills not declared as ``_FillValue``)."""
    bad = xr.zeros_like(da, dtype=bool)
    for v in fills:
        bad = bad | (da == v)
    return da.where(~bad)


def mask_from(da: xr.DataArray) -> xr.DataArray:
    """Ocean/valid mask (1/0, int8) from where a field has data at its first time step (lazy;
    reads one step only). Use for fields that are defined over all ocean (SSH, ocean velocity,
    sea-ice thickness where open water is stored as 0)."""
    return da.isel(time=0, drop=True).notnull().astype(np.int8)


def canonical_variable(
    da: xr.DataArray, name: str, *, source: str, units: Mapping[str, str]
) -> xr.DataArray:
    """``da`` converted to the canonical units of ``name`` (override by product variable name)."""
    from kgcm.readers.units import to_canonical_units

    product_name = str(da.name)
    out = to_canonical_units(
        da,
        CANONICAL[name].units,
        variable=product_name,
        source=source,
        units=units.get(product_name),
    )
    return out.rename(name)


def assign_time_bounds(ds: xr.Dataset, start: Any, end: Any) -> xr.Dataset:
    """``ds`` with the averaging period of each step as coordinates ``time_start``/``time_end``.

    For products whose steps are means over a period (7-day windows, months): ``time`` stays the
    stamp the product gives, and ``[time_start, time_end)`` (end exclusive) is the period it
    averages. Kept as two 1-D ``time`` coordinates rather than a CF ``time_bnds(time, nv)``
    variable so the dataset keeps the canonical dims; they follow every ``time`` selection.

    Parameters
    ----------
    ds : dataset with a ``time`` dimension ``(n_steps,)``.
    start, end : ``(n_steps,)`` datetimes, the inclusive start and exclusive end of each step.
    """
    start = pd.DatetimeIndex(start).as_unit("ns")
    end = pd.DatetimeIndex(end).as_unit("ns")
    n = ds.sizes["time"]
    if len(start) != n or len(end) != n:
        raise DataError(
            f"time bounds need one start and end per step ({n}); got {len(start)} and {len(end)}."
        )
    if not (end > start).all():
        raise DataError("time bounds must end after they start; a step has end <= start.")
    ds = ds.assign_coords(time_start=("time", start), time_end=("time", end))
    ds["time_start"].attrs.update(long_name="start of the averaging period (inclusive)")
    ds["time_end"].attrs.update(long_name="end of the averaging period (exclusive)")
    return ds


def _version() -> str:
    from kgcm import __version__

    return __version__
