"""Time-varying baselines on the default `arctic` demo world, beside the zero-effect reference.

The world, the sequences, the held-out cells and the scenario are the demo's
(`configs/demo.toml`: 24 x 24 cells, 365 days, 30-day windows, a quarter of the cells held out,
T1 = 1.5 x T0); every model is fitted with its defaults and the demo's epoch budget on the
training cells and scored on the held-out cells against the exact potential outcomes. One seed.

    .venv/bin/python benchmarks/baselines_arctic.py [--models r-crn,crn] [--max-epochs 40]
        [--threads 1] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine

from kgcm.config import load_config
from kgcm.estimators import make_estimator
from kgcm.experiments.demo import DemoConfig
from kgcm.metrics import ate_error, factual_rmse, pehe
from kgcm.sequences import split_units, to_sequences
from kgcm.synthetic.arctic import Scenario, simulate_arctic

BASELINES = ("r-crn", "cf-rnn", "ts-tarnet", "crn", "rmsn", "causal-transformer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BASELINES))
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="default: the demo config's budget"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--out", default="runs/bench-baselines/summary.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(DemoConfig, None, args.overrides)
    training = dict(cfg.estimator.params.get("training", {}))
    if args.max_epochs is not None:
        training["max_epochs"] = args.max_epochs
    training["progress"] = False

    started = time.perf_counter()
    sim = simulate_arctic(cfg.arctic)
    seqs = to_sequences(
        sim.dataset,
        covariates=cfg.covariates,
        static=cfg.static,
        calendar=cfg.calendar,
        window=cfg.window,
    )
    train_idx, test_idx = split_units(
        seqs, test_fraction=cfg.test_fraction, seed=cfg.seed, by="cell"
    )
    train, test = seqs.subset(train_idx), seqs.subset(test_idx)
    scenario = Scenario(kind=cfg.scenario.kind, value=cfg.scenario.value)  # type: ignore[arg-type]
    t1 = scenario.apply(test.T)
    truth = sim.window_effects(t1, test.cells, test.starts, seqs.window)
    zero = pehe(truth, np.zeros_like(truth))
    print(
        f"world: {cfg.arctic.ny}x{cfg.arctic.nx} cells, {cfg.arctic.days} days, seed "
        f"{cfg.arctic.seed}; {train.n_units} training / {test.n_units} held-out sequences; "
        f"scenario {scenario.describe()}; training {training}",
        flush=True,
    )
    rows = []
    for name in args.models.split(","):
        est = make_estimator(name, seed=cfg.seed, training=training)
        clock = time.perf_counter()
        est.fit(train.Y, train.T, X=train.X_xarray())
        fit_s = time.perf_counter() - clock
        clock = time.perf_counter()
        effect = est.effect(test.X, T0=test.T, T1=t1)
        effect_s = time.perf_counter() - clock
        row = {
            "model": name,
            "pehe": pehe(truth, effect),
            "ate_error": ate_error(truth, effect),
            "factual_rmse": factual_rmse(test.Y, est.predict(test.X, test.T)),
            "fit_s": fit_s,
            "effect_s": effect_s,
            "epochs": len(est.history_),
        }
        rows.append(row)
        print(
            f"{name}: PEHE {row['pehe']:.4f} (zero-effect {zero:.4f}, ratio "
            f"{row['pehe'] / zero:.3f})  ATE error {row['ate_error']:.4f}  factual RMSE "
            f"{row['factual_rmse']:.4f}  fit {fit_s:.0f} s ({row['epochs']} epochs)  "
            f"effect {effect_s:.1f} s",
            flush=True,
        )
    print()
    print(f"machine: {machine()}")
    print(f"overrides: {args.overrides or 'none'}; seed {cfg.seed}")
    print(
        "| estimator | PEHE (m) | PEHE / zero-effect | ATE error (m) | factual RMSE (m) | fit (s) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['pehe']:.4f} | {r['pehe'] / zero:.3f} | {r['ate_error']:.4f} | "
            f"{r['factual_rmse']:.4f} | {r['fit_s']:.0f} |"
        )
    print(f"| zero-effect | {zero:.4f} | 1 | {float(np.abs(truth.mean())):.4f} | | |")
    print(f"total {time.perf_counter() - started:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"rows": rows, "zero_effect_pehe": zero, "training": training}
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
