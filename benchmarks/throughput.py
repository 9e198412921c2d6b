"""Fit time and throughput of KGCM-VAE on the default `arctic` world (sequence-steps per second).

    .venv/bin/python benchmarks/throughput.py [--epochs 10] [--sizes 12 24 32]

Training throughput counts (training units × steps × epochs) / fit seconds; inference counts
(units × steps) / seconds for effects with intervals (posterior draws included). Every size
is fitted in this one process, side by side.
"""

from __future__ import annotations

import argparse
import time

from _common import machine

import kgcm
from kgcm.sequences import to_sequences
from kgcm.synthetic.arctic import simulate_arctic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sizes", nargs="+", type=int, default=[12, 24, 32])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print("| grid | units | fit s | s/epoch | train steps/s | effect s | effect steps/s |")
    print("|---|---|---|---|---|---|---|")
    for n in args.sizes:
        seqs = to_sequences(simulate_arctic(ny=n, nx=n, seed=0).dataset, window=30)
        X = seqs.X_xarray()
        est = kgcm.KGCMVAE(
            seed=0,
            training={"max_epochs": args.epochs, "min_epochs": args.epochs, "progress": False},
        )
        t = time.perf_counter()
        est.fit(seqs.Y, seqs.T, X=X)
        fit_s = time.perf_counter() - t
        epochs = len(est.history_)
        n_train = seqs.n_units * (1 - kgcm.TrainingConfig.coerce(est.training).val_fraction)
        train_rate = n_train * seqs.window * epochs / fit_s
        t = time.perf_counter()
        est.effect_with_interval(seqs.X, T0=seqs.T, T1=1.5 * seqs.T)
        eff_s = time.perf_counter() - t
        print(
            f"| {n}x{n}x365 d | {seqs.n_units} | {fit_s:.1f} | {fit_s / epochs:.2f} | "
            f"{train_rate:,.0f} | {eff_s:.1f} | {seqs.n_units * seqs.window / eff_s:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
