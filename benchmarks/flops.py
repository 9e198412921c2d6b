"""Achieved FLOP/s of a KGCM-VAE training step against this machine's fp32 matmul FLOP/s.

    .venv/bin/python benchmarks/flops.py [--size 24] [--steps 30] [--threads 1]

The training step (loss, backward, gradient clipping, Adam) of the default KGCM-VAE on the
default `arctic` world, at the batch size the shared loop picks for it. Its FLOPs are counted
by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` from the operations' shapes
(matrix products: GRU gates, linear layers, attention-free heads), once; the step is timed as
the median of ``--steps`` steps. The machine's fp32 matmul FLOP/s are measured in the same run:
square products n = 256 ... 2048, and the product shapes that dominate the step (a GRU's
recurrent product, batch x hidden by hidden x 3 hidden). Then the profile of one step by
operator (``torch.profiler``), to show what bounds it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import machine


def _matmul_rate(m: int, k: int, n: int, repeat: int = 20) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * m * k * n / statistics.median(times)


def main() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    import kgcm
    from kgcm.estimators.training import to_tensor
    from kgcm.sequences import to_sequences
    from kgcm.synthetic.arctic import simulate_arctic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    seqs = to_sequences(simulate_arctic(ny=args.size, nx=args.size, seed=0).dataset, window=30)
    training = {"max_epochs": 1, "progress": False}
    est = kgcm.KGCMVAE(seed=0, training=training).fit(seqs.Y, seqs.T, X=seqs.X_xarray())
    batch_size = min(256, max(16, int(seqs.n_units * 0.85) // 16))
    tensors = {
        "x": to_tensor(est._covariates(seqs.X[:batch_size])),
        "t": to_tensor(est.t_scaler_.transform(seqs.T[:batch_size])),
        "y": to_tensor(est.y_scaler_.transform(seqs.Y[:batch_size])),
    }
    net = est._build()
    step = est._loss_fn(net)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)

    def train_step() -> None:
        loss, _ = step(tensors, 5)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimiser.step()

    net.train()
    with FlopCounterMode(display=False) as counter:
        train_step()
    flops = counter.get_total_flops()
    for _ in range(3):
        train_step()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    achieved = flops / seconds
    hidden = est.hidden
    shapes = {
        "square 256": (256, 256, 256),
        "square 512": (512, 512, 512),
        "square 1024": (1024, 1024, 1024),
        "square 2048": (2048, 2048, 2048),
        f"GRU recurrent {batch_size}x{hidden} @ {hidden}x{3 * hidden}": (
            batch_size, hidden, 3 * hidden
        ),
        f"GRU input (all steps) {batch_size * 30}x{hidden} @ {hidden}x{3 * hidden}": (
            batch_size * 30, hidden, 3 * hidden
        ),
    }  # fmt: skip
    rates = {name: _matmul_rate(*shape) for name, shape in shapes.items()}
    print(
        f"{args.size} x {args.size} world, batch {batch_size} units x 30 steps, "
        f"hidden {hidden}, latent {est.latent_dim_}, {torch.get_num_threads()} threads"
    )
    print(f"FLOPs per training step (FlopCounterMode): {flops / 1e9:.3f} GFLOP")
    by_op = counter.get_flop_counts()["Global"]
    print("  by operator: " + ", ".join(f"{op}: {n / 1e9:.3f}" for op, n in by_op.items()))
    print(f"step time (median of {args.steps}): {seconds * 1e3:.1f} ms")
    print(f"achieved: {achieved / 1e9:.2f} GFLOP/s")
    print("| matmul | GFLOP/s | achieved / this |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate / 1e9:.1f} | {achieved / rate:.1%} |")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            train_step()
    print("profile of 5 steps, by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
