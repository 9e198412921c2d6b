"""Static baselines on IHDP (10 replications): out-of-sample sqrt(PEHE) beside the papers.

Per replication: a 90/10 train/test split of the 747 units (kgcm.synthetic.ihdp.load_ihdp);
the neural models hold out 30% of the training units for early stopping, so the protocol is
the usual 63/27/10 train/validation/test. Each estimator is fitted on the training units with
its defaults (the papers' settings) and one seed, then scored on the training units
("within-sample") and on the held-out 10% ("out-of-sample"):
sqrt(PEHE) = sqrt(mean(((y1_hat - y0_hat) - (mu1 - mu0))^2)).

The published figures (Shalit et al. 2017; Louizos et al. 2017) average 1000 (CFRNet/TARNet)
or 100/1000 (CEVAE) replications of the same simulation; here there are the 10 replications
distributed with the CEVAE code, so expect noisier but comparable figures. Replication 9 has a
very heterogeneous effect (sd about 27) and dominates the spread.

    .venv/bin/python benchmarks/ihdp.py --data /path/to/ihdp [--replications 10]
        [--estimators tarnet,cfrnet,cevae,t-learner,s-learner,zero-effect] [--seed 0]

The data folder holds ihdp_npci_1.csv ... ihdp_npci_10.csv (CEVAE repository,
datasets/IHDP/csv); without --data it is KGCM_IHDP_DIR, else benchmarks/data/ihdp. Results go
to runs/bench-ihdp/summary.json (per replication and estimator, plus the table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from _common import machine

import kgcm
from kgcm.metrics import ate_error, pehe
from kgcm.synthetic.ihdp import PUBLISHED_SQRT_PEHE, load_ihdp

DEFAULT_ESTIMATORS = "tarnet,cfrnet,cevae,t-learner,s-learner,zero-effect"


def _mean_sd_se(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=float)
    sd = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return float(a.mean()), sd, sd / np.sqrt(a.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ihdp")
    parser.add_argument("--data", default=os.environ.get("KGCM_IHDP_DIR", bundled))
    parser.add_argument("--replications", type=int, default=10)
    parser.add_argument("--estimators", default=DEFAULT_ESTIMATORS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="runs/bench-ihdp")
    args = parser.parse_args()
    if not args.data or not os.path.isdir(args.data):
        parser.error(
            "give the IHDP folder with --data (or KGCM_IHDP_DIR): it holds ihdp_npci_1.csv ... "
            "ihdp_npci_10.csv from the CEVAE repository (datasets/IHDP/csv)."
        )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    os.makedirs(args.out, exist_ok=True)
    rows: list[dict] = []
    started = time.perf_counter()
    for r in range(1, args.replications + 1):
        data = load_ihdp(args.data, r)
        for name in names:
            t0 = time.perf_counter()
            est = kgcm.make_estimator(name, seed=args.seed)
            tr, te = data.train, data.test
            est.fit(data.Y[tr], data.T[tr], X=data.X[tr])
            row: dict = {"replication": r, "estimator": name}
            for split, idx in (("within", tr), ("out", te)):
                zeros = np.zeros_like(data.T[idx])
                effect = est.effect(data.X[idx], T0=zeros, T1=zeros + 1.0)
                row[f"pehe_{split}"] = pehe(data.ite[idx], effect)
                row[f"ate_error_{split}"] = ate_error(data.ite[idx], effect)
            row["epochs"] = len(getattr(est, "history_", []))
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(
                f"rep {r:2d} {name:12s} sqrt(PEHE) within {row['pehe_within']:.3f}  out "
                f"{row['pehe_out']:.3f}  ATE error out {row['ate_error_out']:.3f}  "
                f"({row['epochs']} epochs, {row['seconds']:.1f} s)",
                flush=True,
            )
    table = []
    for name in names:
        mine = [x for x in rows if x["estimator"] == name]
        within = _mean_sd_se([x["pehe_within"] for x in mine])
        out = _mean_sd_se([x["pehe_out"] for x in mine])
        ate = _mean_sd_se([x["ate_error_out"] for x in mine])
        table.append({
            "estimator": name,
            "pehe_within": within,
            "pehe_out": out,
            "ate_error_out": ate,
            "published": PUBLISHED_SQRT_PEHE.get(name),
        })  # fmt: skip
    n = args.replications
    print()
    print(f"machine: {machine()}")
    print(f"IHDP, {n} replications, 90/10 split (63/27/10 with early stopping), seed {args.seed}")
    print(
        "| estimator | sqrt(PEHE) within, mean ± sd (se) | sqrt(PEHE) out-of-sample, mean ± sd "
        "(se) | ATE error out | published within / out (100-1000 reps) |"
    )
    print("|---|---|---|---|---|")
    for t in table:
        w, o, a = t["pehe_within"], t["pehe_out"], t["ate_error_out"]
        pub = t["published"]
        pub_s = f"{pub[0]} / {pub[1]}" if pub else "–"
        print(
            f"| {t['estimator']} | {w[0]:.3f} ± {w[1]:.3f} ({w[2]:.3f}) | {o[0]:.3f} ± "
            f"{o[1]:.3f} ({o[2]:.3f}) | {a[0]:.3f} ± {a[1]:.3f} | {pub_s} |"
        )
    total = time.perf_counter() - started
    print(f"total {total:.0f} s")
    summary = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "replications": n,
        "seed": args.seed,
        "split": "90/10 train/test per replication; 30% of train held out for early stopping",
        "machine": machine(),
        "kgcm_version": kgcm.__version__,
        "seconds": total,
        "table": table,
        "rows": rows,
    }
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)


if __name__ == "__main__":
    main()
