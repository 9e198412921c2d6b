"""How to turn a refitting strategy's refits into an effect interval: measured on tuning worlds.

One KGCM-VAE fit with ``inference="bootstrap"`` (or ``"parametric"``) per world gives, for
every test unit and step, the full fit's posterior draws and each refit's. From the same fits
this script scores several ways of making a 95% and a 90% interval out of them against the
exact effects, so the choice costs no extra training and is made on tuning worlds only (seeds
100-101 by default; the evaluation seeds of configs/benchmark-coverage.toml, 1000-1004, are
never passed here):

``pooled-quantile``
    equal-tailed quantiles of all draws pooled (the first bootstrap construction).
``normal-total``
    full fit's mean ± z · sqrt(W + V): W the full fit's posterior variance, V the variance of
    the refits' means (the bootstrap's estimation variance), z the normal quantile.
``t-total``
    the same with the t quantile on ``n_bootstrap − 1`` degrees of freedom (few refits).

With ``--method parametric`` the refits are the parametric strategy's (outcomes simulated from
the full fit, :mod:`kgcm.inference`), and the one construction scored is the shipped one:

``parametric-t``
    full fit's mean ± t_R · sqrt(W + E), E the refits' mean squared error against the full
    fit's effect (:func:`kgcm.inference.parametric_interval`).

It also prints where the error comes from, per world: the slope of the estimated on the true
effect over the scored units and steps (1 = no attenuation), the same slope of the refits on
the full fit's effect (the simulated world), and the correlation of the refits' mean error
with the full fit's real error (how much of the real error the simulated world shows).

Usage (about 6 fits per world and confounding; 40 epochs each, 12 x 12 cells)::

    OMP_NUM_THREADS=1 python benchmarks/interval_constructions.py [--seeds 100 101] \
        [--method bootstrap|parametric] [--n-bootstrap 5] [--block 3] [--epochs 40]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

import kgcm
from kgcm.experiments.benchmark import DatasetSpec, _grid_cells, make_task
from kgcm.inference import bootstrap_interval, fit_arguments, parametric_interval
from kgcm.metrics import interval_coverage, interval_width, pehe

EVALUATION_SEEDS = set(range(1000, 1010)) | set(range(10))


def constructions(fits: list[np.ndarray], alpha: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Intervals ``(lower, upper)`` from per-fit draws ``(S, n, t)``; ``fits[0]`` the full fit.
    ``t-total`` is the interval kgcm ships (:func:`kgcm.inference.bootstrap_interval`);
    ``normal-total`` the same centre and sd with the normal quantile."""
    t_lo, t_up = bootstrap_interval(fits[0], fits[1:], alpha)
    centre, half = (t_lo + t_up) / 2, (t_up - t_lo) / 2
    z_over_t = stats.norm.ppf(1 - alpha / 2) / stats.t.ppf(1 - alpha / 2, len(fits) - 2)
    lo, up = np.quantile(np.concatenate(fits, axis=0), [alpha / 2, 1 - alpha / 2], axis=0)
    return {
        "pooled-quantile": (lo, up),
        "normal-total": (centre - z_over_t * half, centre + z_over_t * half),
        "t-total": (t_lo, t_up),
    }


def slope(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Least-squares slope of ``estimate`` on ``truth`` over every unit and step."""
    t = truth.ravel() - truth.mean()
    return float(np.dot(t, estimate.ravel() - estimate.mean()) / np.dot(t, t))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--confounding", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--n-bootstrap", type=int, default=5)
    parser.add_argument("--block", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--method", choices=["bootstrap", "parametric"], default="bootstrap")
    args = parser.parse_args()
    if EVALUATION_SEEDS & set(args.seeds):
        parser.error("evaluation seeds (0-9, 1000-1009) are not for choosing a construction")
    inference = {"method": args.method, "n_bootstrap": args.n_bootstrap, "block": args.block}
    print(
        "| confounding | seed | construction | PEHE (m) | coverage 95% | width 95% (m) "
        "| coverage 90% | width 90% (m) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for confounding in args.confounding:
        for seed in args.seeds:
            spec = DatasetSpec("tuning", "arctic", {"ny": 12, "nx": 12, "confounding": confounding})
            task = make_task(spec, seed)
            est = kgcm.make_estimator(
                "kgcm-vae", seed=seed, training={"max_epochs": args.epochs, "progress": False}
            )
            started = time.perf_counter()
            est.fit(
                task.Y_train,
                task.T_train,
                X=task.X_train,
                **fit_arguments(inference, _grid_cells(task.X_train)),
            )
            fit_s = time.perf_counter() - started
            X, T0, T1 = task.X_test, task.T0_test, task.T1_test
            fits = []
            for member in [est, *est.bootstrap_]:
                with member._input_context(X):
                    x = member._validate_paths(X, T0, T1)
                    fits.append(member._effect_and_draws(*x)[1])
            s = slice(task.score_from, None)
            fits = [f[:, :, s] for f in fits]
            truth = task.true_effect[:, s]
            score = pehe(truth, fits[0].mean(axis=0))
            if args.method == "parametric":
                by_level = {
                    a: {"parametric-t": parametric_interval(fits[0], fits[1:], a)}
                    for a in (0.05, 0.10)
                }
            else:
                by_level = {a: constructions(fits, a) for a in (0.05, 0.10)}
            for name in by_level[0.05]:
                cells = []
                for a in (0.05, 0.10):
                    lo, up = by_level[a][name]
                    cells += [
                        f"{interval_coverage(truth, lo, up):.3f}",
                        f"{np.median(up - lo):.4f}",
                    ]
                print(
                    f"| {confounding:g} | {seed} | {name} | {score:.4f} | "
                    + " | ".join(cells)
                    + " |",
                    flush=True,
                )
            full = fits[0].mean(axis=0)
            refit_means = [f.mean(axis=0) for f in fits[1:]]
            shipped = "parametric-t" if args.method == "parametric" else "t-total"
            note = (
                f"confounding {confounding:g} seed {seed}: {args.method}, fit with "
                f"{args.n_bootstrap} refits {fit_s:.0f} s; mean 95% width ({shipped}) "
                f"{interval_width(*by_level[0.05][shipped]):.4f}; slope of the estimate on the "
                f"truth {slope(full, truth):.3f}"
            )
            if args.method == "parametric":  # the refits' errors in the simulated world
                errors = np.stack(refit_means) - full
                real = (full - truth).ravel()
                note += (
                    f"; of the refits on the full fit "
                    f"{np.mean([slope(m, full) for m in refit_means]):.3f}; refits' RMS error "
                    f"{np.sqrt(np.mean(errors**2)):.4f} against the real {score:.4f}; "
                    f"correlation of their mean error with the real error "
                    f"{np.corrcoef(errors.mean(axis=0).ravel(), real)[0, 1]:.3f}"
                )
            print(
                f"<!-- {note} -->",
                flush=True,
            )


if __name__ == "__main__":
    main()
