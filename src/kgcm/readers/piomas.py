r"""PIOMAS v2.1 (Zhang & Rothrock 2003): headerless binary fields on the 120 x 360 model grid.

Data files, as distributed (optionally gzipped, ``.gz``):

==================  ==========================  =======  =====================  =======
file                content                     step     canonical              units
==================  ==========================  =======  =====================  =======
``heff.HYYYY``      effective ice thickness     monthly  ``sithick_effective``  m
``hiday.HYYYY``     effective ice thickness     daily    ``sithick_effective``  m
``ssh.HYYYY``       sea-surface height          monthly  ``zos``                cm -> m
==================  ==========================  =======  =====================  =======

Each file is ``k`` records of ``120 x 360`` little-endian float32 (``<f4``) and nothing else: in a
record x (360) runs fastest, then y (120), so one record is C-order ``(y, x)``. Records are
months from January (``k = 12`` for a complete year, fewer for the year in progress) or days from
1 January (``hiday``). The file NAME says which field and year a file holds (the bytes cannot), so
the name must keep the product's pattern ``<field>.H<year>[.gz]``. ``heff``/``hiday`` follow the
v2.1 distribution; for ``ssh`` the name and the monthly step are taken to follow ``heff``'s
convention (check a downloaded file's size: 12 records a year).

``heff``/``hiday`` are EFFECTIVE thickness (ice volume per cell area, open water counted as 0),
returned as ``sithick_effective``, never as ``sithick``: ``kgcm prepare`` converts with a
concentration only when asked (:mod:`kgcm.readers.schema`).

Required option ``grid``: the model's scalar-grid file ``grid.dat`` (PIOMAS utilities). Layout
read: text, ``2 x 120 x 360`` numbers separated by white space (the model writes Fortran
``(10f8.2)``), longitudes first, then latitudes, each block in record order (x fastest). The
vector-grid file ``grid.dat.pop`` (seven blocks, latitude first) is refused by its size.

Land: PIOMAS writes 0 on land, the same value as open water, so a 0 says nothing by itself.
Option ``kmt``: the model's land mask file ``io.dat_360_120.output`` (Fortran ``(360i2)``: one
text line per y row, 360 integers two characters wide with no separator, the number of ocean
levels; 0 = land; a blank field reads 0, as in Fortran). Any file in that layout with 0 on land
and a positive value on ocean works. With it, land becomes NaN and ``mask = 0`` there, and ocean
zeros stay 0 (open water). ``kmt=False`` says on purpose that there is no mask: zeros are kept
(land and open water alike), no ``mask`` is returned and ``attrs["land_mask"]`` records it.
Leaving ``kmt`` out is an error, since silently counting land as ice-free ocean would bias every
area mean.

Detection: by name and size, since a headerless file has no content to recognise: the name
matches ``(heff|hiday|ssh).HYYYY[.gz]`` and the (uncompressed) size is exactly
``120 * 360 * 4 * k`` bytes with ``1 <= k <= 12`` (monthly) or ``k <=`` the days of the year
(``hiday``). For a gzipped file the uncompressed size is the gzip trailer's ``ISIZE`` field, read
without decompressing. A renamed file is not detected; open it with ``product="piomas"`` after
giving it back its product name.

Time: monthly steps are stamped at the middle of the month, with ``time_start``/``time_end`` (the
month, :func:`kgcm.readers.base.assign_time_bounds`); daily steps at 00:00 of the day.

Laziness: nothing but the grid and mask files is read in ``open``. Each uncompressed file is read
by tasks of ``chunks["time"]`` records (default: the whole file) with ``numpy.fromfile`` at the
record's byte offset; a gzipped file has no random access, so one task decompresses the whole file
(12 records: 2 MB; a year of ``hiday``: 63 MB) and the result is rechunked if chunks are given.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from kgcm.errors import DataError
from kgcm.readers.base import (
    OpenOptions,
    Reader,
    _describe,
    assign_time_bounds,
    canonical_variable,
)

NY, NX = 120, 360
RECORD_VALUES = NY * NX
RECORD_BYTES = RECORD_VALUES * 4
FILE_NAME = re.compile(r"^(?P<field>heff|hiday|ssh)\.H(?P<year>\d{4})(?P<gz>\.gz)?$")
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Field:
    """One PIOMAS data-file kind."""

    canonical: str
    units: str
    step: str  # "monthly" or "daily"


FIELDS: dict[str, Field] = {
    "heff": Field("sithick_effective", "m", "monthly"),
    "hiday": Field("sithick_effective", "m", "daily"),
    "ssh": Field("zos", "cm", "monthly"),
}


@dataclass(frozen=True)
class DataFile:
    """A PIOMAS data file, its field, year and number of records."""

    path: Path
    field: str
    year: int
    compressed: bool
    records: int


class PiomasReader(Reader):
    """Reader of PIOMAS v2.1 binary files (``heff``, ``hiday``, ``ssh``).

    Options: ``grid`` (required): path of ``grid.dat``; ``kmt`` (required, or ``False``): path of
    the land-mask file ``io.dat_360_120.output``.
    """

    name: ClassVar[str] = "piomas"
    product: ClassVar[str] = (
        "PIOMAS v2.1 binary heff/ssh (monthly), hiday (daily), 120x360 curvilinear grid "
        "(options grid=grid.dat, kmt=io.dat_360_120.output)"
    )
    #: heff and ssh; hiday files are daily (the dataset's attrs say which)
    time_step: ClassVar[str] = "monthly"
    provides: ClassVar[tuple[str, ...]] = ("sithick_effective", "zos")

    def guess_can_open(self, path: Path) -> bool:
        try:
            return _inspect(Path(path)) is not None
        except (OSError, DataError):
            return False

    def _open(
        self,
        files: list[Path],
        opts: OpenOptions,
        *,
        grid: str | Path | None = None,
        kmt: str | Path | bool | None = None,
        **options: Any,
    ) -> xr.Dataset:
        if options:
            raise DataError(
                f"{self.name} has no options {sorted(options)}; its own options are grid and kmt."
            )
        source = _describe(files)
        if grid is None:
            raise DataError(
                f"{source}: PIOMAS files are headerless binary, so the coordinates come from the "
                f"model grid file. Pass grid='.../grid.dat' (PIOMAS utilities: the scalar grid, "
                f"longitudes then latitudes, 120 x 360 each); in a prepare config: "
                f"options = {{ grid = 'grid.dat', kmt = 'io.dat_360_120.output' }}."
            )
        if kmt is None:
            raise DataError(
                f"{source}: PIOMAS stores land as 0, the same as open water, so the land mask "
                f"must come from the model's kmt file. Pass kmt='.../io.dat_360_120.output' "
                f"(PIOMAS utilities), or kmt=False to keep land as 0 on purpose (no mask)."
            )
        if kmt is True:
            raise DataError(f"{source}: kmt must be a path or False; got True.")
        lon, lat = read_grid(Path(grid))
        ocean = None if kmt is False else read_kmt(Path(kmt)) > 0

        data_files = [_parse(f) for f in files]
        by_variable: dict[str, list[DataFile]] = {}
        for f in data_files:
            name = FIELDS[f.field].canonical
            if opts.variables is None or name in opts.variables:
                by_variable.setdefault(name, []).append(f)
        if not by_variable:
            fields = sorted({f.field for f in data_files})
            gives = sorted({FIELDS[f].canonical for f in fields})
            raise DataError(
                f"{source}: these are PIOMAS {fields} files, which give {gives}, not "
                f"{list(opts.variables or [])}."
            )
        time_chunk = opts.chunks.get("time") if isinstance(opts.chunks, Mapping) else None

        arrays: dict[str, xr.DataArray] = {}
        axes: dict[str, tuple[pd.DatetimeIndex, str]] = {}
        for name, group in by_variable.items():
            steps = sorted({FIELDS[f.field].step for f in group})
            kinds = sorted({f.field for f in group})
            if len(kinds) > 1:
                raise DataError(
                    f"{source}: {kinds} files both give {name} ({' and '.join(steps)}); open "
                    f"them in separate calls (one time step per dataset)."
                )
            group = sorted(group, key=lambda f: f.year)
            times = pd.DatetimeIndex(np.concatenate([_times(f).values for f in group]))
            data = dsa.concatenate([_lazy(f, time_chunk) for f in group], axis=0)
            da = xr.DataArray(data, dims=("time", "y", "x"), coords={"time": times}, name=kinds[0])
            da.attrs["units"] = FIELDS[kinds[0]].units
            if ocean is not None:
                da = da.where(xr.DataArray(ocean, dims=("y", "x")))
            arrays[name] = canonical_variable(da, name, source=source, units=opts.units)
            axes[name] = (times, steps[0])
        names = list(axes)
        first_times, step = axes[names[0]]
        for other in names[1:]:
            if not axes[other][0].equals(first_times):
                raise DataError(
                    f"{source}: {names[0]} and {other} cover different months; give the same "
                    f"years (and months) of each field, or open them in separate calls."
                )
        ds = xr.Dataset(arrays)
        if isinstance(opts.chunks, Mapping) and ({"y", "x"} & set(opts.chunks)):
            ds = ds.chunk({k: v for k, v in opts.chunks.items() if k in ("time", "y", "x")})
        ds = ds.assign_coords(lat=(("y", "x"), lat), lon=(("y", "x"), lon))
        if ocean is not None:
            ds["mask"] = xr.DataArray(ocean.astype(np.int8), dims=("y", "x"))
            ds.attrs["land_mask"] = f"kmt file {kmt}: land is NaN, open water keeps 0"
        else:
            ds.attrs["land_mask"] = "none (kmt=False): land cells hold 0, like open water"
        if step == "monthly":
            month = first_times.to_period("M")
            ds = assign_time_bounds(ds, month.start_time, (month + 1).start_time)
        ds.attrs["time_step"] = step
        return ds

    def finish(self, ds: xr.Dataset, files: list[Path], opts: OpenOptions) -> xr.Dataset:
        """As :meth:`Reader.finish`, but ``attrs["time_step"]`` is that of the files (``hiday``
        is daily)."""
        step = ds.attrs.get("time_step", self.time_step)
        out = super().finish(ds, files, opts)
        out.attrs["time_step"] = step
        return out


# --------------------------------------------------------------------------------------------
# Grid and land mask


def read_grid(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude ``(120, 360)`` from PIOMAS ``grid.dat`` (lon block, then lat)."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot be read as the PIOMAS text grid file ({exc}); give grid.dat."
        ) from exc
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError as exc:
        raise DataError(
            f"{path}: not a PIOMAS grid.dat (a token is not a number: {exc}). Expected "
            f"2 x {NY} x {NX} numbers, longitudes then latitudes."
        ) from exc
    if values.size == 7 * RECORD_VALUES:
        raise DataError(
            f"{path}: holds 7 blocks of {NY} x {NX} numbers, like grid.dat.pop (the velocity "
            f"grid). The scalar fields (heff, hiday, ssh) need grid.dat: pass grid='.../grid.dat'."
        )
    if values.size != 2 * RECORD_VALUES:
        raise DataError(
            f"{path}: holds {values.size} numbers; PIOMAS grid.dat holds 2 x {NY} x {NX} = "
            f"{2 * RECORD_VALUES} (longitudes, then latitudes). Give the v2.1 grid.dat."
        )
    lon = values[:RECORD_VALUES].reshape(NY, NX)
    lat = values[RECORD_VALUES:].reshape(NY, NX)
    if np.abs(lat).max() > 90.0:
        raise DataError(
            f"{path}: the second block (latitude) has values up to {np.abs(lat).max():.2f}, "
            f"beyond 90; the file is not lon-then-lat grid.dat."
        )
    return lon, lat


def read_kmt(path: Path) -> np.ndarray:
    """Ocean levels ``(120, 360)`` (0 = land) from PIOMAS ``io.dat_360_120.output`` ``(360i2)``."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot be read as the PIOMAS text kmt file ({exc}); give "
            f"io.dat_360_120.output."
        ) from exc
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    too_long = [i for i, line in enumerate(lines) if len(line) > 2 * NX]
    if len(lines) != NY or too_long:
        raise DataError(
            f"{path}: not a PIOMAS kmt file in (360i2) layout: expected {NY} lines of {NX} "
            f"two-character integers, got {len(lines)} lines"
            + (f", line {too_long[0] + 1} longer than {2 * NX} characters" if too_long else "")
            + ". Give io.dat_360_120.output."
        )
    fields = np.array([line.ljust(2 * NX) for line in lines]).view("<U2").reshape(NY, NX)
    fields = np.char.strip(fields)
    fields = np.where(fields == "", "0", fields)  # Fortran reads a blank field as 0
    try:
        levels = fields.astype(np.int64)
    except ValueError as exc:
        raise DataError(
            f"{path}: a (360i2) field is not an integer ({exc}); give io.dat_360_120.output."
        ) from exc
    if (levels < 0).any() or not (levels > 0).any():
        raise DataError(
            f"{path}: kmt must be 0 on land and positive on ocean; got values "
            f"{levels.min()}..{levels.max()}."
        )
    return levels


# --------------------------------------------------------------------------------------------
# Data files


def _inspect(path: Path) -> DataFile | None:
    """The file's field, year and record count if its name and size are PIOMAS's, else None."""
    match = FILE_NAME.match(path.name)
    if match is None or not path.is_file():
        return None
    compressed = match["gz"] is not None
    size = _uncompressed_size(path) if compressed else path.stat().st_size
    if size is None or size == 0 or size % RECORD_BYTES:
        return None
    records = size // RECORD_BYTES
    field, year = match["field"], int(match["year"])
    if records > _max_records(field, year):
        return None
    return DataFile(path, field, year, compressed, records)


def _uncompressed_size(path: Path) -> int | None:
    """The gzip trailer's ISIZE (uncompressed size mod 2**32), or None if not gzip."""
    with path.open("rb") as fh:
        if fh.read(2) != GZIP_MAGIC:
            return None
        fh.seek(0, 2)
        if fh.tell() < 18:  # header (10) + trailer (8)
            return None
        fh.seek(-4, 2)
        return int.from_bytes(fh.read(4), "little")


def _max_records(field: str, year: int) -> int:
    return 12 if FIELDS[field].step == "monthly" else pd.Timestamp(year, 12, 31).day_of_year


def _parse(path: Path) -> DataFile:
    """:func:`_inspect`, with an error naming what is wrong."""
    match = FILE_NAME.match(path.name)
    if match is None:
        raise DataError(
            f"{path}: a PIOMAS data file is known by its name, <field>.H<year>[.gz] with field "
            f"heff, hiday or ssh (e.g. heff.H2020.gz); the bytes alone do not say which field "
            f"or year they hold. Give the file its product name."
        )
    info = _inspect(path)
    if info is None:
        field = match["field"]
        size = _uncompressed_size(path) if match["gz"] else path.stat().st_size
        what = "uncompressed size (gzip ISIZE)" if match["gz"] else "size"
        raise DataError(
            f"{path}: {what} {size} bytes is not k whole records of {NY} x {NX} float32 "
            f"({RECORD_BYTES} bytes each) with 1 <= k <= {_max_records(field, int(match['year']))}"
            f". The file is truncated or corrupt (or not PIOMAS v2.1): download it again."
        )
    return info


def _times(f: DataFile) -> pd.DatetimeIndex:
    """Stamps of the file's records: mid-month (monthly) or 00:00 of each day (daily)."""
    if FIELDS[f.field].step == "daily":
        return pd.date_range(f"{f.year}-01-01", periods=f.records, freq="D").as_unit("ns")
    months = pd.period_range(f"{f.year}-01", periods=f.records, freq="M")
    start, end = months.start_time, (months + 1).start_time
    return pd.DatetimeIndex(start + (end - start) / 2).as_unit("ns")


def _lazy(f: DataFile, time_chunk: int | None) -> dsa.Array:
    """The file's records ``(k, 120, 360)`` float32 as a dask array (nothing read yet)."""
    token = dask.base.tokenize(str(f.path), f.path.stat().st_mtime_ns, f.records)
    if f.compressed:
        blocks = [(0, f.records)]
    else:
        step = f.records if not time_chunk or time_chunk <= 0 else int(time_chunk)
        blocks = [(i, min(step, f.records - i)) for i in range(0, f.records, step)]
    parts = [
        dsa.from_delayed(
            dask.delayed(_read_records, pure=True)(f, first, count),
            shape=(count, NY, NX),
            dtype=np.float32,
            name=f"piomas-{f.field}-{f.year}-{first}-{token}",
        )
        for first, count in blocks
    ]
    return parts[0] if len(parts) == 1 else dsa.concatenate(parts, axis=0)


def _read_records(f: DataFile, first: int, count: int) -> np.ndarray:
    """Records ``first .. first + count - 1`` of ``f`` as native float32 ``(count, 120, 360)``."""
    try:
        if f.compressed:
            with gzip.open(f.path, "rb") as fh:
                raw = fh.read()
            if len(raw) != f.records * RECORD_BYTES:
                raise DataError(
                    f"{f.path}: decompressed to {len(raw)} bytes, not the {f.records} records "
                    f"its gzip trailer announced. Download the file again."
                )
            values = np.frombuffer(
                raw, dtype="<f4", count=count * RECORD_VALUES, offset=first * RECORD_BYTES
            )
        else:
            values = np.fromfile(
                f.path, dtype="<f4", count=count * RECORD_VALUES, offset=first * RECORD_BYTES
            )
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{f.path}: cannot be read as PIOMAS {f.field} ({exc.__class__.__name__}: {exc}). "
            f"The file is truncated or corrupt: download it again."
        ) from exc
    if values.size != count * RECORD_VALUES:
        raise DataError(
            f"{f.path}: {values.size} values where records {first}..{first + count - 1} need "
            f"{count * RECORD_VALUES}; the file changed or is truncated. Download it again."
        )
    return values.reshape(count, NY, NX).astype(np.float32)
