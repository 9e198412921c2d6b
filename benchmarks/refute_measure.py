"""Measure the dose-response error against the truth and the refutation ratios on the small
``arctic`` worlds of tests/test_dose_response_refute.py.

Run (from the repository root):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/refute_measure.py refute 0 1 2
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/refute_measure.py dose 0
    # the figure in docs/pipeline.md: the identified world's dose_response.png, copied
    OMP_NUM_THREADS=1 PYTHONPATH=src FIGURES=docs/results python benchmarks/refute_measure.py dose 0

``refute``: the tiny world (4x4 cells, 150 days, 20-day windows with stride 5, KGCM-VAE with 3
epochs) with a real effect and the confounder's proxies (zos, uo, vo) in X, world and fit seed
each given; prints every check's ratio. ``dose``: the small world (6x6 cells, 365 days, 30-day
windows, KGCM-VAE with 6 epochs), identified (confounding 1, proxies in X) and deliberately
confounded (confounding 3, no covariates); prints the estimated and the true curve and the
largest error relative to the largest true effect, and the random-common-cause check of the
confounded fit.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kgcm.config import from_dict
from kgcm.experiments.dose_response import run_dose_response
from kgcm.experiments.fit import FitConfig, run_fit
from kgcm.experiments.refute import run_refute
from kgcm.synthetic.arctic import simulate_arctic

TINY = {
    "hidden": 8,
    "latent_dim": 4,
    "n_draws": 5,
    "mmd_weight": 0.1,  # the default when the bounds were measured
    "training": {"max_epochs": 3, "progress": False},
}
SMALL = {"hidden": 16, "latent_dim": 4, "n_draws": 10, "mmd_weight": 0.1,
         "training": {"max_epochs": 6, "progress": False}}  # fmt: skip
QUIET = {"log": lambda m: None}


def fit(root: Path, seed: int, *, confounding: float, covariates: list[str], params: dict,
        window: int, stride: int, **world: int) -> Path:  # fmt: skip
    ds = simulate_arctic(seed=seed, confounding=confounding, **world).dataset
    ds.attrs["kgcm_prepare_config"] = "{}"
    ds.to_zarr(root / "store.zarr", consolidated=True)
    config = from_dict(FitConfig, {
        "data": str(root / "store.zarr"), "window": window, "stride": stride, "split": "cell",
        "covariates": covariates, "test_fraction": 0.25, "seed": seed, "bounds": "none",
        "estimator": {"name": "kgcm-vae", "params": params},
    })  # fmt: skip
    run_fit(config, root / "run", allow_weak_overlap=True, **QUIET)
    return root / "run"


def refute(seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run = fit(Path(tmp), seed, confounding=1.0, covariates=["zos", "uo", "vo"],
                  params=TINY, window=20, stride=5, ny=4, nx=4, days=150)  # fmt: skip
        for r in run_refute(run, **QUIET):
            print(f"seed {seed} {r.name:<20} ratio {r.ratio:.3f} new {r.new_effect} "
                  f"original {r.original_effect} {'pass' if r.passed else 'FAIL'}")  # fmt: skip
        print(f"seed {seed}: {time.perf_counter() - t:.1f} s")


def dose(seed: int) -> None:
    for label, confounding, covariates in (("identified", 1.0, ["zos", "uo", "vo"]),
                                           ("confounded", 3.0, [])):  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            run = fit(Path(tmp), seed, confounding=confounding, covariates=covariates,
                      params=SMALL, window=30, stride=0, ny=6, nx=6, days=365)  # fmt: skip
            summary = run_dose_response(run, allow_weak_overlap=True, **QUIET)
            for period in ("all", "DJF", "MAM", "JJA", "SON"):
                rows = [r for r in summary["curve"] if r["period"] == period]
                est = np.array([r["effect"] for r in rows])
                true = np.array([r["true_effect"] for r in rows])
                rel = np.max(np.abs(est - true)) / np.max(np.abs(true))
                print(
                    f"seed {seed} {label} {period}: max|est - true| / max|true| = {rel:.3f}; "
                    f"est {np.round(est, 3).tolist()} true {np.round(true, 3).tolist()}"
                )
            figures = os.environ.get("FIGURES")
            if figures:
                target = Path(figures) / f"dose_response_arctic_{label}.png"
                shutil.copyfile(run / "dose_response.png", target)
                print(f"wrote {target}")
            if label == "confounded":
                (rcc,) = run_refute(run, checks=("random_common_cause",), **QUIET)
                print(
                    f"seed {seed} confounded random_common_cause ratio {rcc.ratio:.3f} "
                    f"new {rcc.new_effect} original {rcc.original_effect}"
                )
            print(f"seed {seed} {label}: {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    mode, *seeds = sys.argv[1:]
    for s in seeds or ["0"]:
        {"refute": refute, "dose": dose}[mode](int(s))
