"""A benchmark's results as a docs table: PEHE beside zero-effect and coverage, and the paired
differences to the reference with t-intervals and Holm-adjusted p-values.

``kgcm benchmark`` writes uncorrected 95% t-intervals (``paired.md``). Here each paired
difference also gets a two-sided paired t-test p-value, and the p-values of all comparisons in
the file (every dataset, every other estimator with finished runs) are adjusted together with
Holm's step-down method. Usage:

    python benchmarks/paired_holm.py runs/benchmark-seaice/results.csv [reference]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from scipy import stats


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values, shape of ``p`` (NaN kept out of the family)."""
    out = np.full_like(p, np.nan, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def main(argv: list[str]) -> None:
    results = pd.read_csv(argv[0])
    reference = argv[1] if len(argv) > 1 else "kgcm-vae"
    ok = results[results["status"] == "ok"]
    rows = []
    for dataset, group in ok.groupby("dataset", sort=False):
        wide = group.pivot_table(index="seed", columns="estimator", values="pehe")
        for other in wide.columns:
            if other == reference:
                continue
            d = (wide[reference] - wide[other]).dropna()
            n = len(d)
            mean, sd = d.mean(), d.std(ddof=1)
            half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) if n > 1 else np.nan
            p = stats.ttest_1samp(d, 0.0).pvalue if n > 1 and sd > 0 else np.nan
            rows.append((dataset, other, n, mean, mean - half, mean + half, p))
    paired = pd.DataFrame(rows, columns=["dataset", "other", "n", "diff", "lo", "hi", "p"])
    paired["p_holm"] = holm(paired["p"].to_numpy())
    family = int(np.isfinite(paired["p"]).sum())
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
