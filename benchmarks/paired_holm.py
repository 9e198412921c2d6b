"""A benchmark's results as a docs table: PEHE beside zero-effect and coverage, and the paired
differences to the reference with t-intervals and Holm-adjusted p-values.

The paired differences, p-values and Holm adjustment are ``kgcm benchmark``'s own
(``kgcm.experiments.benchmark.paired_differences``, also in ``paired.md``/``paired.csv``): the
p-values of all comparisons in the file (every dataset, every other estimator with finished
runs) are adjusted together. This script lays them out beside PEHE, the zero-effect PEHE and
coverage, as the docs tables show them. Usage:

    python benchmarks/paired_holm.py runs/benchmark-seaice/results.csv [reference]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from kgcm.experiments.benchmark import paired_differences


def main(argv: list[str]) -> None:
    results = pd.read_csv(argv[0])
    reference = argv[1] if len(argv) > 1 else "kgcm-vae"
    ok = results[results["status"] == "ok"]
    paired = paired_differences(results, reference).rename(
        columns={"mean_diff": "diff", "lower": "lo", "upper": "hi", "p_value": "p"}
    )
    family = int(paired["family"].iloc[0]) if len(paired) else 0
    print(f"Holm family: {family} comparisons (all datasets together)\n")
    for dataset, group in ok.groupby("dataset", sort=False):
        zero = group.loc[group["estimator"] == "zero-effect", "pehe"].mean()
        stats_ = group.groupby("estimator").agg(
            n=("pehe", "count"),
            pehe=("pehe", "mean"),
            pehe_sd=("pehe", "std"),
            ate=("ate_error", "mean"),
            cov=("coverage", "mean"),
            width=("width", "mean"),
            fit=("fit_s", "mean"),
        )
        stats_ = stats_.sort_values("pehe")
        print(f"**{dataset}** (zero-effect PEHE {zero:.4g} m)\n")
        print(
            "| estimator | n | PEHE (m) | PEHE / zero-effect | ATE error (m) | coverage | "
            "width (m) | fit (s) | kgcm-vae − this [95% CI, uncorrected] | p | p (Holm) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        part = paired[paired["dataset"] == dataset].set_index("other")
        for est, r in stats_.iterrows():
            cov = "" if np.isnan(r["cov"]) else f"{r['cov']:.3f}"
            width = "" if np.isnan(r["width"]) else f"{r['width']:.3g}"
            if est == reference:
                diff, p, ph = "(reference)", "", ""
            else:
                q = part.loc[est]
                diff = f"{q['diff']:+.4f} [{q['lo']:+.4f}, {q['hi']:+.4f}]"
                p = f"{q['p']:.3f}" if np.isfinite(q["p"]) else ""
                ph = f"{q['p_holm']:.3f}" if np.isfinite(q["p_holm"]) else ""
            print(
                f"| {est} | {int(r['n'])} | {r['pehe']:.4f} ± {r['pehe_sd']:.2g} | "
                f"{r['pehe'] / zero:.3f} | {r['ate']:.4f} | {cov} | {width} | {r['fit']:.0f} | "
                f"{diff} | {p} | {ph} |"
            )
        print()
    skipped = results[results["status"] != "ok"]
    for (dataset, est), g in skipped.groupby(["dataset", "estimator"]):
        print(f"- {dataset} / {est}: {len(g)} runs not ok: {g['status'].iloc[0][:120]}")


if __name__ == "__main__":
    main(sys.argv[1:])
