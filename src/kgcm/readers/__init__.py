"""Product readers: one small plugin per product, one canonical schema out.

``open_dataset(paths, product=None, **options)`` detects the product from the first file's
content (or uses ``product=``) and returns a lazy canonical dataset (:mod:`kgcm.readers.schema`).
``list_readers()`` names the registered readers. Modules are imported on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import xarray as xr

from kgcm.errors import DataError, did_you_mean
from kgcm.readers.base import Paths, Reader, collect_open_files, expand_paths

__all__ = ["detect", "get_reader", "list_readers", "open_dataset", "reader_table"]

#: name -> "module:Class". Order matters for detection only when two readers claim a file,
#: which the detection refuses (ambiguity is an error, not a guess).
_REGISTRY: dict[str, str] = {
    "cmems-glorys12": "kgcm.readers.cmems:Glorys12Reader",
    "cmems-topaz": "kgcm.readers.topaz:TopazReader",
    "oras5": "kgcm.readers.oras5:Oras5Reader",
    "table": "kgcm.readers.table:TableReader",
    "paper-csv": "kgcm.readers.paper_csv:PaperCsvReader",
    "nsidc-0116": "kgcm.readers.nsidc0116:Nsidc0116Reader",
    "cs2smos": "kgcm.readers.cs2smos:Cs2SmosReader",
    "piomas": "kgcm.readers.piomas:PiomasReader",
    "era5": "kgcm.readers.era5:Era5Reader",
}


def list_readers() -> list[str]:
    """Registered reader names."""
    return sorted(_REGISTRY)


def get_reader(name: str) -> Reader:
    """An instance of the reader registered as ``name``."""
    if name not in _REGISTRY:
        raise DataError(
            f"unknown product reader {name!r}; known: {list_readers()}."
            f"{did_you_mean(name, _REGISTRY)}"
        )
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def reader_table() -> list[tuple[str, str, str, str]]:
    """``(name, time step, variables, product)`` for every reader, for ``kgcm readers``."""
    rows = []
    for name in list_readers():
        r = get_reader(name)
        rows.append((name, r.time_step, ", ".join(r.provides), r.product))
    return rows


def detect(path: str | Path) -> str:
    """The name of the one reader whose content check accepts ``path``."""
    path = Path(path)
    claims = [name for name in list_readers() if get_reader(name).guess_can_open(path)]
    if len(claims) == 1:
        return claims[0]
    listing = "\n".join(f"  {n:16s} {get_reader(n).product}" for n in list_readers())
    if not claims:
        _refuse_damaged(path)
        raise DataError(
            f"{path}: no reader recognises this file. Known readers:\n{listing}\n"
            f"Choose one with product='<name>' (CLI: --product <name>); for a CSV or Parquet "
            f"table with a date column use product='table'."
        )
    raise DataError(
        f"{path}: several readers recognise this file ({claims}); choose one with "
        f"product='<name>' (CLI: --product <name>)."
    )


_MAGIC = {
    b"\x89HDF\r\n\x1a\n": "NetCDF-4/HDF5",
    b"CDF\x01": "NetCDF classic",
    b"CDF\x02": "NetCDF 64-bit offset",
    b"PAR1": "Parquet",
}


def _refuse_damaged(path: Path) -> None:
    """A file that starts like NetCDF or Parquet but that no reader can open is damaged (most
    often truncated by an interrupted download): say so rather than "not recognised"."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            raise DataError(
                f"{path}: starts like a {kind} file but cannot be read: it is damaged or "
                f"truncated ({path.stat().st_size:,} bytes), e.g. by an interrupted download. "
                f"Download it again."
            )


def open_dataset(paths: Paths, product: str | None = None, **options: Any) -> xr.Dataset:
    """Open product files as a lazy dataset in the canonical schema.

    Parameters
    ----------
    paths : one file, a glob pattern, or a list of them (a multi-file time series).
    product : reader name (``kgcm.readers.list_readers()``); detected from content when None.
    **options : ``variables``, ``time=(start, end)``, ``region`` (lat/lon box or polygon),
        ``chunks``, ``units`` overrides, and reader-specific options (see each reader).

    Returns
    -------
    xarray.Dataset with dims ``(time, y, x)`` (or ``(time,)``), 2-D ``lat``/``lon``, canonical
    variables with CF ``standard_name``/``units``, and provenance in ``attrs``.
    ``close()`` on the result closes every file it opened (it is also a context manager).
    """
    files = expand_paths(paths)
    name = product if product is not None else detect(files[0])
    reader = get_reader(name)
    if product is None:
        others = [f for f in files[1:] if not reader.guess_can_open(f)]
        if others:
            raise DataError(
                f"{others[0]}: does not look like {name} data like {files[0]}; give files of one "
                f"product per call, or choose the reader with product='<name>'."
            )
    with collect_open_files() as opened:
        try:
            ds = reader.open(files, **options)
        except BaseException:
            for part in opened:
                part.close()
            raise

    def close() -> None:
        for part in opened:
            part.close()

    ds.set_close(close)
    return ds
