"""KGCM-VAE fitted on 1 process and on N processes (PyTorch DDP, gloo), side by side.

    .venv/bin/python benchmarks/ddp.py [--size 24] [--epochs 10] [--nproc 2]

The same world, split, seed and epochs (early stopping off): one process with as many torch
threads as processes in the other run, then N processes of one thread each (as ``torchrun``
starts them). Prints fit seconds, training throughput (units x steps x epochs / s), its ratio to
the one-process run, and PEHE on held-out cells against the exact effects of T1 = 1.5 T0 beside
the zero-effect PEHE.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
from _common import machine


def _units(size: int):
    from kgcm.sequences import split_units, to_sequences
    from kgcm.synthetic.arctic import simulate_arctic

    sim = simulate_arctic(ny=size, nx=size, seed=0)
    seqs = to_sequences(sim.dataset, window=30)
    train_idx, test_idx = split_units(seqs, test_fraction=0.25, seed=0, by="cell")
    return sim, seqs, seqs.subset(train_idx), seqs.subset(test_idx)


def _fit(train, epochs: int):
    import kgcm

    training = {"max_epochs": epochs, "min_epochs": epochs, "progress": False, "device": "cpu"}
    est = kgcm.KGCMVAE(seed=0, training=training)
    started = time.perf_counter()
    est.fit(train.Y, train.T, X=train.X)
    return est, time.perf_counter() - started


def _rank(rank: int, size: int, port: int, grid: int, epochs: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        est, seconds = _fit(_units(grid)[2], epochs)
        if rank == 0:
            est.save(out)
            Path(out + ".seconds").write_text(str(seconds))
    finally:
        dist.destroy_process_group()


def main() -> None:
    import torch.multiprocessing as mp

    import kgcm
    from kgcm.metrics import pehe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.nproc)
    print(f"machine: {machine()}")
    sim, seqs, train, test = _units(args.size)
    truth = sim.window_effects(1.5 * test.T, test.cells, test.starts, seqs.window)
    zero = pehe(truth, 0 * truth)
    rows = []
    one, seconds = _fit(train, args.epochs)
    rows.append((f"1 process, {args.nproc} threads", one, seconds))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ddp.kgcm")
        mp.spawn(_rank, args=(args.nproc, port, args.size, args.epochs, out), nprocs=args.nproc)
        rows.append((f"{args.nproc} processes (DDP, gloo)", kgcm.load(out),
                     float(Path(out + ".seconds").read_text())))  # fmt: skip
    n_train = train.n_units * (1 - kgcm.TrainingConfig().val_fraction)
    print(f"{args.size} x {args.size} world, {train.n_units} training units, {args.epochs} epochs")
    print("| run | fit s | train steps/s | ratio to 1 process | PEHE | zero-effect PEHE |")
    print("|---|---|---|---|---|---|")
    base = None
    for name, est, fit_s in rows:
        rate = n_train * seqs.window * args.epochs / fit_s
        base = base or rate
        score = pehe(truth, est.effect(test.X, T0=test.T, T1=1.5 * test.T))
        print(f"| {name} | {fit_s:.1f} | {rate:,.0f} | {rate / base:.2f} | {score:.4f} | "
              f"{zero:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
