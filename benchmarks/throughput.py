"""Fit time, throughput and PEHE of KGCM-VAE on the default `arctic` world, per device.

    .venv/bin/python benchmarks/throughput.py [--epochs 10] [--sizes 12 24 32] \
        [--devices cpu cuda]

Training throughput counts (training units × steps × epochs) / fit seconds; inference counts
(held-out units × steps) / seconds for effects with intervals (posterior draws included).
Every (size, device) is fitted in this one process, side by side, on the same world and split
(75% of the cells train, 25% are held out), and scored on the held-out cells against the exact
effects of T1 = 1.5 T0: PEHE and its ratio to the zero-effect PEHE. With a GPU at hand,
``--devices cpu cuda`` prints the CPU and GPU rows of the same fits beside each other.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import machine

import kgcm
from kgcm.metrics import pehe
from kgcm.sequences import split_units, to_sequences
from kgcm.synthetic.arctic import simulate_arctic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sizes", nargs="+", type=int, default=[12, 24, 32])
    parser.add_argument("--devices", nargs="+", default=["cpu"])
    args = parser.parse_args()
    import torch

    if "cuda" in args.devices and not torch.cuda.is_available():
        sys.exit("--devices cuda: no CUDA device is visible to torch here; leave it out.")
    print(f"machine: {machine()}")
    print("| grid | device | units | fit s | s/epoch | train steps/s | effect s | "
          "effect steps/s | PEHE | PEHE / zero |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        sim = simulate_arctic(ny=n, nx=n, seed=0)
        seqs = to_sequences(sim.dataset, window=30)
        train_idx, test_idx = split_units(seqs, test_fraction=0.25, seed=0, by="cell")
        train, test = seqs.subset(train_idx), seqs.subset(test_idx)
        truth = sim.window_effects(1.5 * test.T, test.cells, test.starts, seqs.window)
        zero = pehe(truth, np.zeros_like(truth))
        for device in args.devices:
            training = {"max_epochs": args.epochs, "min_epochs": args.epochs,
                        "progress": False, "device": device}  # fmt: skip
            est = kgcm.KGCMVAE(seed=0, training=training)
            t = time.perf_counter()
            est.fit(train.Y, train.T, X=train.X_xarray())
            fit_s = time.perf_counter() - t
            epochs = len(est.history_)
            n_train = train.n_units * (1 - kgcm.TrainingConfig.coerce(training).val_fraction)
            train_rate = n_train * seqs.window * epochs / fit_s
            t = time.perf_counter()
            effect, _, _ = est.effect_with_interval(test.X, T0=test.T, T1=1.5 * test.T)
            eff_s = time.perf_counter() - t
            error = pehe(truth, effect)
            print(
                f"| {n}x{n}x365 d | {device} | {train.n_units} | {fit_s:.1f} | "
                f"{fit_s / epochs:.2f} | {train_rate:,.0f} | {eff_s:.1f} | "
                f"{test.n_units * seqs.window / eff_s:,.0f} | {error:.4f} | {error / zero:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
