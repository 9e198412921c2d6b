"""A streamed fit with DataLoader workers against none: wall time and the weights' checksum.

    .venv/bin/python benchmarks/loader_workers.py [--workers 0 1 2] [--size 16] [--epochs 5]

An ``arctic`` world of ``size`` x ``size`` cells and 200 days is written as a Zarr store in
chunks of 60 days and 8 x 8 cells; CRN (hidden 8) is fitted from it with ``fit_stream`` for
``epochs`` epochs, once per worker count, each in this process one after the other. Printed:
seconds per fit, the ratio to the first, and a checksum of the weights (equal: the workers read
exactly what this process would).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    import torch

    import kgcm
    from kgcm.streaming import StreamedUnits
    from kgcm.synthetic.arctic import simulate_arctic

    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    training = {"max_epochs": args.epochs, "min_epochs": args.epochs, "progress": False}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store.zarr"
        ds = simulate_arctic(ny=args.size, nx=args.size, days=200, seed=3).dataset
        ds.attrs["kgcm_prepare_config"] = "{}"
        ds.chunk({"time": 60, "y": 8, "x": 8}).to_zarr(store, consolidated=True)
        print("| workers | fit s | ratio | weights checksum |")
        print("|---|---|---|---|")
        first = None
        for workers in args.workers:
            units = StreamedUnits(store, covariates=("zos", "uo", "vo"), window=20)
            est = kgcm.make_estimator("crn", seed=0, hidden=8, training=training)
            started = time.perf_counter()
            est.fit_stream(units, num_workers=workers)
            seconds = time.perf_counter() - started
            first = first or seconds
            with torch.no_grad():
                checksum = float(sum(p.double().sum() for p in est.models_[0].parameters()))
            print(f"| {workers} | {seconds:.1f} | {seconds / first:.2f} | {checksum:.10f} |",
                  flush=True)  # fmt: skip


if __name__ == "__main__":  # loader workers are spawned: they import this module
    main()
