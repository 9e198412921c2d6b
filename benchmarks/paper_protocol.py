"""The paper's protocol (notebook recipes) on the stand-in series, beside the zero-effect line.

    .venv/bin/python benchmarks/paper_protocol.py [--csv arctic_s2s_multivar_2020_2024.csv]
        [--recipes v2] [--lags 3 9] [--seeds 3]

Without --csv it uses the deterministic stand-in series (the paper's CSV is not public here).
"""

from __future__ import annotations

import argparse
import time

from _common import machine, mean_sd

from kgcm.experiments.paper import run_paper
from kgcm.synthetic.paper import load_series, paper_protocol, standin_series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=None)
    parser.add_argument("--recipes", nargs="+", default=["v2"])
    parser.add_argument("--lags", nargs="+", type=int, default=[3, 9])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    series = load_series(args.csv) if args.csv else standin_series()
    print(f"series: {series.attrs['source']} ({len(series)} days)")
    print(f"machine: {machine()}")
    print(
        "| recipe | lag | KGCM-VAE PEHE (m) | zero-effect PEHE (m) | KGCM-VAE ATE error | fit s |"
    )
    print("|---|---|---|---|---|---|")
    for recipe in args.recipes:
        for lag in args.lags:
            data = paper_protocol(series, recipe=recipe, lag=lag)
            pehes, zeros, ates, secs = [], [], [], []
            for seed in range(args.seeds):
                t = time.perf_counter()
                m = run_paper(data, seed=seed, training={"progress": False})
                secs.append(time.perf_counter() - t)
                pehes.append(m["kgcm-vae"]["pehe"])
                zeros.append(m["zero-effect"]["pehe"])
                ates.append(m["kgcm-vae"]["ate_error"])
            print(
                f"| {recipe} | {lag} | {mean_sd(pehes)} | {zeros[0]:.4f} | {mean_sd(ates)} | "
                f"{sum(secs) / len(secs):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
