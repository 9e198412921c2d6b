"""Does the ``seaice`` pack stay mobile over a run? Ice speed, concentration and thickness.

Generates one world (cached as Zarr, so the benchmark can reuse the same settings' code path)
and prints, per block of days, the mean over ocean cells of the ice speed (cm/s), the share of
ocean cells drifting slower than 1 cm/s, the concentration and the mean thickness. Usage:

    VEROS_BACKEND=jax OMP_NUM_THREADS=1 python benchmarks/seaice_mobility.py \
        nx=16 ny=12 n_evp=30 days=60 seed=100 confounding=1.0

Any ``SeaIceConfig`` field may be given as ``name=value`` (Python literal).
"""

from __future__ import annotations

import ast
import sys
import time
import warnings

import numpy as np


def neighbour_correlation(field: np.ndarray) -> tuple[float, float]:
    """Lag-1 correlation between neighbouring ocean cells of a (y, x) field (NaN/0 on land),
    between rows and between columns: near 1 for smooth fields, below 0 for a checkerboard."""
    ocean = np.isfinite(field) & (field > 0)
    x = np.where(ocean, field - field[ocean].mean(), 0.0)
    var = np.sum(x[ocean] ** 2) / ocean.sum()
    rows = ocean[1:] & ocean[:-1]
    cols = ocean[:, 1:] & ocean[:, :-1]
    return (
        float(np.sum((x[1:] * x[:-1])[rows]) / rows.sum() / var),
        float(np.sum((x[:, 1:] * x[:, :-1])[cols]) / cols.sum() / var),
    )


def main(argv: list[str]) -> None:
    from kgcm.synthetic.seaice import SeaIceConfig, simulate_seaice

    warnings.simplefilter("ignore")
    overrides = {k: ast.literal_eval(v) for k, v in (a.split("=", 1) for a in argv)}
    cfg = SeaIceConfig(**overrides)
    started = time.perf_counter()
    world = simulate_seaice(cfg, cache_dir="runs/worlds-tuning", progress=False)
    wall = time.perf_counter() - started
    ds = world.dataset
    speed = np.hypot(ds["siu"].values, ds["siv"].values) * 100.0  # (day, y, x), cm/s
    conc, thick = ds["siconc"].values, ds["sithick"].values
    block = 10
    print(f"{cfg.ny} x {cfg.nx}, {cfg.days} days, seed {cfg.seed}, confounding {cfg.confounding}")
    print(
        "| days | speed cm/s (mean) | share < 1 cm/s | concentration | thickness m "
        "| median thickness/concentration m | neighbour corr. of concentration |"
    )
    print("|---|---|---|---|---|---|---|")
    for d0 in range(0, cfg.days, block):
        sl = slice(d0, min(d0 + block, cfg.days))
        print(
            f"| {d0 + 1}-{sl.stop} | {np.nanmean(speed[sl]):.1f} | "
            f"{(speed[sl] < 1.0).sum() / np.isfinite(speed[sl]).sum():.2f} | "
            f"{np.nanmean(conc[sl]):.3f} | {np.nanmean(thick[sl]):.3f} | "
            f"{np.nanmedian(thick[sl] / np.where(conc[sl] > 0.01, conc[sl], np.nan)):.2f} | "
            "%.2f, %.2f |" % neighbour_correlation(np.nanmean(conc[sl], axis=0))
        )
    print(f"wall {wall:.1f} s (world generation or cache load)")


if __name__ == "__main__":
    main(sys.argv[1:])
