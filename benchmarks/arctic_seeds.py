"""KGCM-VAE on the default `arctic` world over several seeds, beside the zero-effect reference.

Each seed s runs the demo job with `seed = s` and `arctic.seed = s` (a new world, a new split,
a new model) and keeps its outputs in runs/bench-arctic/seed-s/.

    .venv/bin/python benchmarks/arctic_seeds.py [--seeds 5] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import machine, mean_sd

from kgcm.config import load_config
from kgcm.experiments.demo import DemoConfig, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--out", default="runs/bench-arctic")
    args = parser.parse_args()
    rows = []
    started = time.perf_counter()
    for s in range(args.seeds):
        cfg = load_config(DemoConfig, None, [f"seed={s}", f"arctic.seed={s}", *args.overrides])
        result = run_demo(cfg, f"{args.out}/seed-{s}", log=lambda _msg: None)
        m = result.metrics
        name = cfg.estimator.name
        rows.append({
            "seed": s,
            "pehe": m[name]["pehe"],
            "zero_pehe": m["zero-effect"]["pehe"],
            "ate_error": m[name]["ate_error"],
            "coverage": m[name].get("coverage", float("nan")),
            "fit_s": result.seconds["fit"],
        })  # fmt: skip
        r = rows[-1]
        print(
            f"seed {s}: PEHE {r['pehe']:.4f}  zero-effect {r['zero_pehe']:.4f}  "
            f"ratio {r['pehe'] / r['zero_pehe']:.3f}  ATE error {r['ate_error']:.4f}  "
            f"coverage {r['coverage']:.3f}  fit {r['fit_s']:.0f} s",
            flush=True,
        )
    ratios = [r["pehe"] / r["zero_pehe"] for r in rows]
    print()
    print(f"machine: {machine()}")
    print(f"overrides: {args.overrides or 'none'}; seeds 0..{args.seeds - 1}")
    print("| estimator | PEHE (m) | ATE error (m) | 95% coverage | PEHE / zero-effect |")
    print("|---|---|---|---|---|")
    print(
        f"| {name} | {mean_sd([r['pehe'] for r in rows])} | "
        f"{mean_sd([r['ate_error'] for r in rows])} | "
        f"{mean_sd([r['coverage'] for r in rows], 3)} | "
        f"{mean_sd(ratios, 3)} (max {max(ratios):.3f}) |"
    )
    print(f"| zero-effect | {mean_sd([r['zero_pehe'] for r in rows])} | | | 1 |")
    print(f"total {time.perf_counter() - started:.0f} s")
    with open(f"{args.out}/summary.json", "w", encoding="utf-8") as fh:
        json.dump({"rows": rows, "ratio_mean": float(np.mean(ratios))}, fh, indent=2)


if __name__ == "__main__":
    main()
