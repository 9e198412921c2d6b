"""Generated files in the exact layout of real products, with known true fields.

No machine here reaches the real services, so tests and benchmarks use files that copy each
product's layout (variable names, dims, attributes, integer packing, fill values, land storage,
grid-relative vectors) while holding fields whose east/north truth is known in closed form
(:func:`truth`). A reader is correct when it gives :func:`truth` back on the product's grid.

``write_product(name, directory, ...)`` writes one product's files and returns their paths.
Writers stream one time block at a time, so files far larger than memory can be made.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kgcm.errors import ConfigError, did_you_mean

__all__ = ["FLOWS", "land", "list_writers", "truth", "write_product"]

#: product (reader name) -> "module:function"
_WRITERS: dict[str, str] = {
    "cmems-glorys12": "kgcm.synthetic.products.glorys:write",
    "cmems-topaz": "kgcm.synthetic.products.topaz:write",
    "oras5": "kgcm.synthetic.products.oras5:write",
    "nsidc-0116": "kgcm.synthetic.products.nsidc0116:write",
    "cs2smos": "kgcm.synthetic.products.cs2smos:write",
    "piomas": "kgcm.synthetic.products.piomas:write",
    "era5": "kgcm.synthetic.products.era5:write",
}

FLOWS = ("default", "rigid")


def list_writers() -> list[str]:
    """Products that have a file writer."""
    return sorted(_WRITERS)


def write_product(name: str, directory: str | os.PathLike[str], **options: Any) -> list[Path]:
    """Write generated files of product ``name`` into ``directory``; returns the paths."""
    if name not in _WRITERS:
        raise ConfigError(
            f"no file writer for product {name!r}; known: {list_writers()}."
            f"{did_you_mean(name, _WRITERS)}"
        )
    module, func = _WRITERS[name].split(":")
    writer: Callable[..., list[Path]] = getattr(importlib.import_module(module), func)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return writer(directory, **options)


def land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """True on 'land': three wedges south of 80°N (any grid of the Arctic gets some)."""
    return (np.sin(3.0 * np.deg2rad(lon)) > 0.6) & (lat < 80.0)


def truth(
    lat: np.ndarray, lon: np.ndarray, time: pd.DatetimeIndex | np.ndarray, *, flow: str = "default"
) -> dict[str, np.ndarray]:
    """True canonical fields on a grid ``(y, x)`` at ``time``: arrays ``(time, y, x)``.

    Keys: ``sithick`` (m, > 0), ``zos`` (m), ``uo``/``vo`` and ``usi``/``vsi`` (EAST/NORTH, m/s),
    ``siconc`` (0-1), and the atmosphere: ``tas`` (K), ``uas``/``vas`` (EAST/NORTH, m/s), ``psl``
    (Pa), ``rsds``/``rlds`` (W m-2, >= 0). The ocean and ice fields change once a day (they
    depend on the date only); the atmospheric ones also have a daily cycle (they depend on the
    time of day), so a daily mean of hourly values differs from the value at 00:00.
    ``flow="rigid"`` makes the ocean and ice velocities a rigid rotation about
    the pole (``u_e = 0.2 cos(lat)``, ``v_n = 0``), the standard check of vector rotation.
    Values are defined everywhere; writers apply :func:`land` and the product's fill.
    """
    if flow not in FLOWS:
        raise ConfigError(f"flow must be one of {FLOWS}; got {flow!r}.")
    lat = np.asarray(lat, dtype=np.float64)[None]
    lon = np.asarray(lon, dtype=np.float64)[None]
    days = (pd.DatetimeIndex(time) - pd.Timestamp("2000-01-01")).days.to_numpy(np.float64)
    phase = (2.0 * np.pi * days / 365.25)[:, None, None]
    lam, phi = np.deg2rad(lon), np.deg2rad(lat)
    sithick = (
        1.6 + 0.6 * np.cos(phase - 0.4) + 0.3 * np.sin(lam) * np.cos(phi) + 0.2 * np.sin(4.0 * phi)
    )
    siconc = np.clip(0.75 + 0.2 * np.cos(phase) + 0.1 * np.cos(2.0 * lam), 0.0, 1.0)
    zos = -0.3 + 0.2 * np.sin(lam) * np.cos(phi) + 0.05 * np.cos(phase + lam)
    if flow == "rigid":
        uo = np.broadcast_to(0.2 * np.cos(phi), sithick.shape)
        vo = np.zeros_like(sithick)
    else:
        uo = 0.05 + 0.1 * np.sin(2.0 * lam) * np.cos(phi) + 0.02 * np.cos(phase)
        vo = 0.08 * np.cos(lam) + 0.03 * np.sin(phase - lam)
    shape = sithick.shape
    # the atmosphere: a seasonal cycle on the exact time (hours count) plus a daily cycle
    t = pd.DatetimeIndex(time)
    exact = ((t - pd.Timestamp("2000-01-01")) / pd.Timedelta(days=1)).to_numpy(np.float64)
    season = (2.0 * np.pi * exact / 365.25)[:, None, None]
    day = (2.0 * np.pi * (exact % 1.0))[:, None, None]
    summer = 0.5 - 0.5 * np.cos(season - 0.3)  # 0 in winter, 1 in summer
    tas = 255.0 + 18.0 * summer + 3.0 * np.sin(lam) * np.cos(phi) + 1.5 * np.cos(day - np.pi)
    uas = 3.0 + 4.0 * np.sin(2.0 * lam) * np.cos(phi) + 2.0 * np.cos(season) + np.sin(day)
    vas = 2.0 * np.cos(lam) + 1.5 * np.sin(season - lam) + 0.5 * np.cos(day)
    psl = 101300.0 + 800.0 * np.sin(lam) * np.cos(phi) + 300.0 * np.cos(season + lam)
    rsds = 220.0 * summer * (1.0 + 0.8 * np.cos(day - np.pi)) * (1.0 + 0.2 * np.cos(lam))
    rlds = 200.0 + 90.0 * summer + 10.0 * np.cos(lam) * np.cos(phi) + 5.0 * np.cos(day)
    atmosphere = {"tas": tas, "uas": uas, "vas": vas, "psl": psl, "rsds": rsds, "rlds": rlds}
    return {
        **{k: np.broadcast_to(v, (len(t), *shape[1:])) for k, v in atmosphere.items()},
        "sithick": sithick,
        "siconc": np.broadcast_to(siconc, shape),
        "zos": np.broadcast_to(zos, shape),
        "uo": np.broadcast_to(uo, shape),
        "vo": np.broadcast_to(vo, shape),
        "usi": np.broadcast_to(1.5 * uo, shape),
        "vsi": np.broadcast_to(1.5 * vo, shape),
    }


def pack_int(
    values: np.ndarray, *, scale: float, offset: float, fill: int, dtype: Any
) -> np.ndarray:
    """Integer packing as products do it: ``round((v - offset) / scale)``, NaN -> ``fill``.

    Values are clipped to the integer range (excluding ``fill``), as a product's packer does."""
    info = np.iinfo(dtype)
    packed = np.clip(np.round((values - offset) / scale), info.min + 1, info.max)
    packed = np.where(np.isfinite(values), packed, fill)
    return packed.astype(dtype)


def time_blocks(times: pd.DatetimeIndex, size: int) -> list[pd.DatetimeIndex]:
    """``times`` cut into consecutive blocks of at most ``size`` steps (streamed writing)."""
    return [times[i : i + size] for i in range(0, len(times), size)]
