"""Size of the exact effects a ``seaice`` benchmark scores against, per world.

For every (dataset, seed) of a benchmark config: the RMS and mean of the true effect over the
test units, and its RMS on chosen days of the window. Worlds come from the harness's cache (run
with the same environment as the benchmark, e.g. ``VEROS_BACKEND=jax``). Usage:

    python benchmarks/seaice_effect_sizes.py configs/benchmark-seaice.toml
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

DAYS = (1, 2, 5, 10, 15, 20, 30)


def main(argv: list[str]) -> None:
    from kgcm.config import load_config
    from kgcm.experiments.benchmark import BenchmarkConfig, make_task

    warnings.simplefilter("ignore")
    config = load_config(BenchmarkConfig, argv[0])
    print("| dataset | seed | RMS (m) | mean (m) | " + " | ".join(f"day {d}" for d in DAYS) + " |")
    print("|---|---|---|---|" + "---|" * len(DAYS))
    for dataset in config.datasets:
        for seed in config.seeds:
            effect = make_task(dataset, seed, base_dir=Path.cwd()).true_effect  # (unit, day)
            by_day = np.sqrt(np.mean(effect**2, axis=0))
            days = " | ".join(f"{by_day[d - 1]:.3f}" for d in DAYS if d <= len(by_day))
            print(
                f"| {dataset.name} | {seed} | {np.sqrt(np.mean(effect**2)):.3f} | "
                f"{effect.mean():.3f} | {days} |",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
