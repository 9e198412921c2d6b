"""Generate (and cache) every world of a benchmark config before the estimators run.

``kgcm benchmark`` builds each dataset inside every (dataset, estimator, seed) cell; for the
``seaice`` kind the physics is cached as Zarr, so generating each (dataset, seed) once here, in
parallel, lets the benchmark's cells only load. Usage (from the repository root, the same
environment variables as the benchmark, e.g. ``VEROS_BACKEND=jax``):

    python benchmarks/generate_worlds.py configs/benchmark-seaice.toml [n_jobs]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def _one(spec, seed: int) -> str:
    import warnings

    from kgcm.experiments.benchmark import make_task

    warnings.simplefilter("ignore")
    started = time.perf_counter()
    task = make_task(spec, seed, base_dir=Path.cwd())
    return (
        f"{spec.name} seed {seed}: {len(task.Y_train)} train / {len(task.Y_test)} test units, "
        f"{time.perf_counter() - started:.0f} s"
    )


def main(argv: list[str]) -> None:
    from joblib import Parallel, delayed

    from kgcm.config import load_config
    from kgcm.experiments.benchmark import BenchmarkConfig

    config = load_config(BenchmarkConfig, argv[0])
    n_jobs = int(argv[1]) if len(argv) > 1 else config.n_jobs
    jobs = [delayed(_one)(d, s) for s in config.seeds for d in config.datasets]
    for line in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
