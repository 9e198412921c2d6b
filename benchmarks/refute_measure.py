"""Measure dose-response error against the truth and refutation ratios on tiny arctic worlds.

Run: OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/refute_measure.py [seeds...]
(the settings below are those of tests/test_refute.py and tests/test_dose_response.py).
"""

from __future__ import annotations

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

FAST = {"hidden": 8, "latent_dim": 4, "n_draws": 5, "training": {"max_epochs": 3, "progress": False}}


def world(root: Path, seed: int, *, confounding: float, covariates: list[str]) -> Path:
    ds = simulate_arctic(ny=4, nx=4, days=150, seed=seed, confounding=confounding).dataset
    ds.attrs["kgcm_prepare_config"] = "{}"
    ds.to_zarr(root / "store.zarr", consolidated=True)
    config = from_dict(FitConfig, {
        "data": str(root / "store.zarr"), "window": 20, "stride": 5, "split": "cell",
        "covariates": covariates, "test_fraction": 0.25, "seed": seed,
        "estimator": {"name": "kgcm-vae", "params": FAST},
    })  # fmt: skip
    run_fit(config, root / "run", log=lambda m: None, allow_weak_overlap=True)
    return root / "run"


def main() -> None:
    seeds = [int(s) for s in sys.argv[1:]] or [0]
    for seed in seeds:
        for label, conf, cov in (("identified", 1.0, ["zos", "uo", "vo"]),
                                 ("confounded", 3.0, [])):  # fmt: skip
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                run = world(Path(tmp), seed, confounding=conf, covariates=cov)
                dr = run_dose_response(run, log=lambda m: None, allow_weak_overlap=True)
                curve = [r for r in dr["curve"] if r["period"] == "all"]
                est = np.array([r["effect"] for r in curve])
                true = np.array([r["true_effect"] for r in curve])
                rel = np.max(np.abs(est - true)) / np.max(np.abs(true))
                results = run_refute(run, log=lambda m: None)
                print(f"seed {seed} {label}: dose-response max|est-true|/max|true| = {rel:.3f}; "
                      f"est {np.round(est, 4).tolist()} true {np.round(true, 4).tolist()}")
                for r in results:
                    print(f"   {r.name:<20} ratio {r.ratio:.3f} new {r.new_effect} "
                          f"orig {r.original_effect} {'pass' if r.passed else 'FAIL'}")
                print(f"   {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
