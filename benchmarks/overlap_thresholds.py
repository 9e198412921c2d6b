"""Measurements behind the overlap check's limits (``kgcm.check_overlap``).

On `arctic` tuning worlds (seeds 100-104 by default, never the evaluation seeds 0-9), for each
treatment-noise level η it simulates a world, cuts 30-day sequences, and measures the check's
held-out R² of T given the covariates' history. With ``--fit`` it also fits KGCM-VAE (small
budget) on 75% of the cells and, for each scenario size, prints the check's ``shift_sd`` beside
the effect error on the held-out cells: PEHE / zero-effect PEHE and the 95% interval coverage.

    .venv/bin/python benchmarks/overlap_thresholds.py                  # R² and shift only
    .venv/bin/python benchmarks/overlap_thresholds.py --fit --seeds 2  # with KGCM-VAE fits

Every row is printed as it is measured; the summary (mean over seeds per η and scenario)
comes last, as a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from _common import machine

from kgcm.estimators import make_estimator
from kgcm.metrics import interval_coverage, pehe
from kgcm.overlap import check_overlap, shift_in_sd
from kgcm.sequences import split_units, to_sequences
from kgcm.synthetic.arctic import simulate_arctic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="worlds 100, 101, ...")
    parser.add_argument("--noise", default="0,0.1,0.2,0.3,0.5,1", help="treatment_noise values")
    parser.add_argument("--scales", default="1.1,1.25,1.5,2,3", help="scenarios T1 = s x T0")
    parser.add_argument("--grid", type=int, default=16, help="cells per side")
    parser.add_argument("--confounding", type=float, default=1.0)
    parser.add_argument("--fit", action="store_true", help="fit KGCM-VAE and score effects")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    noises = [float(v) for v in args.noise.split(",")]
    scales = [float(v) for v in args.scales.split(",")]
    print(f"machine: {machine()}")
    print(
        f"worlds: {args.grid}x{args.grid} cells, 365 days, confounding {args.confounding}, "
        f"seeds {100}..{100 + args.seeds - 1}; KGCM-VAE {args.epochs} epochs"
        if args.fit
        else "no fits"
    )
    table: dict[tuple[float, float], list[dict[str, float]]] = defaultdict(list)
    started = time.perf_counter()
    for seed in range(100, 100 + args.seeds):
        for eta in noises:
            sim = simulate_arctic(
                seed=seed,
                ny=args.grid,
                nx=args.grid,
                treatment_noise=eta,
                confounding=args.confounding,
            )
            seqs = to_sequences(sim.dataset, window=30)
            est = test_idx = None
            if args.fit:
                train_idx, test_idx = split_units(seqs, test_fraction=0.25, seed=seed, by="cell")
                train = seqs.subset(train_idx)
                est = make_estimator(
                    "kgcm-vae",
                    seed=seed,
                    training={"max_epochs": args.epochs, "progress": False},
                )
                est.fit(train.Y, train.T, X=train.X_xarray())
            rep = check_overlap(seqs.T, seqs.X, seed=seed)
            for scale in scales:
                t1 = scale * seqs.T
                shift = shift_in_sd(seqs.T, t1, rep.residual_sd)  # as check_overlap(T, X, t1)
                row = {"r2": rep.r2, "shift_sd": shift}
                if est is not None:
                    test = seqs.subset(test_idx)
                    truth = sim.window_effects(t1[test_idx], test.cells, test.starts, 30)
                    eff, lo, hi = est.effect_with_interval(test.X, T0=test.T, T1=t1[test_idx])
                    row["ratio"] = pehe(truth, eff) / pehe(truth, np.zeros_like(truth))
                    row["coverage"] = interval_coverage(truth, lo, hi)
                table[(eta, scale)].append(row)
                extra = (
                    f"  PEHE/zero {row['ratio']:.3f}  coverage {row['coverage']:.3f}"
                    if "ratio" in row
                    else ""
                )
                print(
                    f"seed {seed} eta {eta:g} scale {scale:g}: r2 {rep.r2:.3f}  "
                    f"shift_sd {shift:.2f}{extra}",
                    flush=True,
                )
    print()
    head = "| treatment noise η | scenario | R² | shift_sd |"
    if args.fit:
        head += " PEHE / zero-effect | 95% coverage |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for (eta, scale), rows in sorted(table.items()):
        cells = [f"{eta:g}", f"{scale:g} x T0"]
        for key in ("r2", "shift_sd", *(("ratio", "coverage") if args.fit else ())):
            values = np.array([r[key] for r in rows])
            sd = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
            cells.append(f"{values.mean():.3f}{sd}")
        print("| " + " | ".join(cells) + " |")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
