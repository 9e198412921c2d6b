"""Fit cost per epoch and peak memory as the data grow: streamed from a store against in memory.

    .venv/bin/python benchmarks/scaling.py [--sizes 24 48 120 240] [--out runs/scaling] \
        [--modes streamed "in memory" effects:kgcm-vae effects:crn]

For each n, an n x n `arctic` world of a year is written once as a Zarr store (chunks of 90
days and 12 x 12 cells, as `kgcm prepare` would chunk it). Then, each in a fresh process with
one torch thread, one epoch of KGCM-VAE (every batch of the epoch: no step cap) is fitted

- **streamed**: ``fit_stream(StreamedUnits(store))``, the store never loaded whole;
- **in memory**: ``to_sequences`` on the whole store, then ``fit``.

Printed per size and mode: units, seconds for the epoch (scalers and validation included),
seconds per 1,000 units, the process's peak resident memory (``ru_maxrss``) and what it held
after its imports, before any data.

- **effects:NAME**: ``kgcm.tiles.tiled_effects`` of the scenario "treatment x 1.5" over every
  unit of the store, in process (no dask), with the estimator NAME fitted for one epoch on the
  smallest size's store (in its own process, once) and loaded from its file; the "epoch s"
  column is then the seconds for the effects of every unit, intervals included where the
  estimator gives them.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

from _common import machine

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
import kgcm
from kgcm.sequences import to_sequences
from kgcm.streaming import StreamedUnits
import xarray as xr
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
store, mode = sys.argv[1], sys.argv[2]
training = {"max_epochs": 1, "min_epochs": 1, "max_steps_per_epoch": 10**9, "progress": False}
est = kgcm.KGCMVAE(seed=0, training=training)
started = time.perf_counter()
if mode == "streamed":
    units = StreamedUnits(store, window=30)
    est.fit_stream(units)
else:
    seqs = to_sequences(xr.open_zarr(store), window=30, drop_incomplete=True)
    est.fit(seqs.Y, seqs.T, X=seqs.X)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "streamed":  # counted after the clock and the memory peak
    n = sum(len(u.T) for b in units.blocks() if (u := units.units(b)) is not None)
else:
    n = seqs.n_units
print(json.dumps({"units": n, "seconds": seconds, "peak_mib": peak / 1024,
                  "base_mib": base / 1024}))
"""

FIT_MODEL = r"""
import sys, torch
torch.set_num_threads(1)
import kgcm, xarray as xr
from kgcm.sequences import to_sequences
store, name, path = sys.argv[1:4]
seqs = to_sequences(xr.open_zarr(store), window=30, drop_incomplete=True)
training = {"max_epochs": 1, "min_epochs": 1, "progress": False}
kgcm.make_estimator(name, seed=0, training=training).fit(seqs.Y, seqs.T, X=seqs.X).save(path)
"""

EFFECTS = r"""
import json, resource, shutil, sys, time
import torch
torch.set_num_threads(1)
from kgcm.streaming import StreamedUnits
from kgcm.tiles import tiled_effects
from kgcm.treatments import Scenario
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
store, model, out = sys.argv[1:4]
units = StreamedUnits(store, window=30)
started = time.perf_counter()
tiled_effects(model, units, Scenario("scale", 1.5), out, progress=False, restart=True)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = sum(len(u.T) for b in units.blocks() if (u := units.units(b)) is not None)
shutil.rmtree(out)
print(json.dumps({"units": n, "seconds": seconds, "peak_mib": peak / 1024,
                  "base_mib": base / 1024}))
"""


def _child(code: str, *args: str, what: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode:
        sys.exit(f"{what} failed:\n{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def _store(n: int, out: Path) -> Path:
    from kgcm.synthetic.arctic import simulate_arctic

    path = out / f"arctic-{n}x{n}.zarr"
    if not path.exists():  # written beside and renamed: a killed run leaves no half store
        ds = simulate_arctic(ny=n, nx=n, seed=0).dataset
        ds.attrs["kgcm_prepare_config"] = "{}"
        partial = out / f".arctic-{n}x{n}.zarr.partial"
        shutil.rmtree(partial, ignore_errors=True)
        ds.chunk({"time": 90, "y": 12, "x": 12}).to_zarr(partial, consolidated=True)
        partial.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[24, 48, 120, 240])
    parser.add_argument("--out", type=Path, default=Path("runs/scaling"))
    modes = ["streamed", "in memory", "effects:kgcm-vae", "effects:crn"]
    parser.add_argument("--modes", nargs="+", default=modes[:2], choices=modes)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = {}
    for mode in args.modes:
        if mode.startswith("effects:"):
            name = mode.split(":", 1)[1]
            models[mode] = args.out / f"model-{name}.kgcm"
            if not models[mode].exists():
                _child(FIT_MODEL, str(_store(min(args.sizes), args.out)), name,
                       str(models[mode]), what=f"fitting {name}")  # fmt: skip
    print(f"machine: {machine()}")
    print("| grid | store (MB) | mode | units | epoch s | s per 1,000 units | peak memory (MiB) "
          "| after imports (MiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        store = _store(n, args.out)
        size_mb = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e6
        for mode in args.modes:
            what = f"{n} x {n} {mode}"
            if mode in models:
                r = _child(EFFECTS, str(store), str(models[mode]),
                           str(args.out / f"effects-{n}.zarr"), what=what)  # fmt: skip
            else:
                r = _child(CHILD, str(store), mode.replace(" ", "-"), what=what)
            print(
                f"| {n} x {n} | {size_mb:.0f} | {mode} | {r['units']:,} | {r['seconds']:.1f} | "
                f"{1000 * r['seconds'] / r['units']:.2f} | {r['peak_mib']:.0f} | "
                f"{r['base_mib']:.0f} |",
                flush=True,
            )
    print(f"(parent peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
