"""``kgcm refute``: refutation checks of a fitted run, adapted to unit sequences.

In the spirit of DoWhy's refuters (placebo treatment, random common cause, data subset, dummy
outcome). Each check changes the data in one way, refits the run's own estimator (its config
and seed; ``epochs`` may override the training length for a quick check) on the run's training
units, and estimates the run's scenario (``T1`` from the run config) on every unit with
:func:`kgcm.experiments.fit.scenario_effects`. The number compared is the mean effect on the
outcome over every step with an estimate (outcome units).

- ``placebo_time``: each cell's windows get the treatment path of another window of the same
  cell (a random permutation in time within the cell: the path's own dynamics are kept, its
  timing against the outcome is broken), moved by the difference between the overall mean
  treatment and the cell's: a cell's treatment level carries the real between-cell effect
  (cells with a persistently stronger forcing have thinner ice), which a permutation within
  the cell would keep and a good estimator would rightly find.
- ``placebo_units``: every unit gets the treatment path of a random other unit (cell and time).
- ``dummy_outcome``: the estimator's target is replaced by Gaussian noise with its mean and sd,
  independent of everything.

  These three pass when ``|placebo effect| <= PLACEBO_MAX · |original effect|``.
- ``random_common_cause``: an independent N(0, 1) covariate is added at every step.
- ``data_subset``: refit on a random 80% of the training units.

  These two pass when ``|refit effect − original effect| <= STABLE_MAX · |original effect|``.
- ``overlap``: :func:`kgcm.check_overlap` with the scenario's ``T1`` (its own limits).

Without ``epochs`` the original effect is the saved model's; with ``epochs`` it is a refit on
the unchanged data with the same override, so that the comparison holds the training length
fixed. Thresholds: see :data:`PLACEBO_MAX`, :data:`STABLE_MAX` and docs/pipeline.md.

What a pass does not show: none of these checks can detect a confounder that is missing from
the covariates. The random common cause is independent of the treatment and the outcome by
construction, so an estimator biased by an omitted confounder stays just as biased, and stable,
when it is added (tests/test_refute.py shows it on a confounded ``arctic`` world).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from kgcm._io import atomic_write_text
from kgcm._progress import progress_bar
from kgcm.errors import ConfigError

__all__ = [
    "PLACEBO_MAX",
    "REFUTERS",
    "STABLE_MAX",
    "RefutationResult",
    "judge",
    "refutation_table",
    "run_refute",
]

Log = Callable[[str], None]

#: Largest |placebo or dummy-outcome effect| as a share of |original effect| that passes.
PLACEBO_MAX = 0.3
#: Largest |refit effect − original effect| as a share of |original effect| that passes.
STABLE_MAX = 0.3
#: Share of the training units kept by ``data_subset``.
SUBSET_FRACTION = 0.8

REFUTERS = (
    "placebo_time",
    "placebo_units",
    "dummy_outcome",
    "random_common_cause",
    "data_subset",
    "overlap",
)
_NULL = ("placebo_time", "placebo_units", "dummy_outcome")


@dataclass(frozen=True)
class RefutationResult:
    """One check: the refit's mean effect beside the original, the ratio compared and the
    verdict.

    ``ratio`` is ``|new| / |original|`` for the null checks (placebo, dummy outcome) and
    ``|new − original| / |original|`` for the stability checks; for ``overlap`` it is the
    held-out R² of T given X and ``threshold`` its limit.
    """

    name: str
    description: str
    original_effect: float | None
    new_effect: float | None
    ratio: float | None
    threshold: float
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(name: str, original: float, new: float) -> tuple[float, float, bool]:
    """Ratio, threshold and verdict of a null (``placebo_*``, ``dummy_outcome``) or stability
    (``random_common_cause``, ``data_subset``) check from the two mean effects."""
    scale = abs(original)
    if scale == 0 or not np.isfinite(scale):
        raise ConfigError(
            f"the original mean effect is {original!r}: refutations compare against it and "
            f"need a finite, non-zero effect. Use a scenario that changes the treatment."
        )
    if name in _NULL:
        ratio, threshold = abs(new) / scale, PLACEBO_MAX
    else:
        ratio, threshold = abs(new - original) / scale, STABLE_MAX
    return float(ratio), threshold, bool(ratio <= threshold)


def _placebo_time(T: np.ndarray, cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Placebo paths (n_units, window): every unit gets the path of a random unit of the same
    cell, shifted so that every cell has the overall mean treatment.

    ``cells``: the flat cell index of each unit (n_units,).
    """
    by_cell = np.argsort(cells, kind="stable")
    shuffled = np.lexsort((rng.random(len(cells)), cells))
    perm = np.empty(len(cells), dtype=np.int64)
    perm[by_cell] = shuffled
    unit_sum = T.sum(axis=1)
    cell_mean = np.bincount(cells, unit_sum) / (np.bincount(cells) * T.shape[1])
    return T[perm] - cell_mean[cells][:, None] + T.mean()


def run_refute(
    run_dir: str | os.PathLike[str],
    *,
    epochs: int | None = None,
    checks: tuple[str, ...] = REFUTERS,
    log: Log = print,
    progress: bool = True,
) -> list[RefutationResult]:
    """Run the refutation checks on a fitted run; write ``refute.json`` and ``refute.md``.

    Parameters
    ----------
    run_dir : a ``kgcm fit`` run folder.
    epochs : override of ``training.max_epochs`` for every refit (and then a refit of the
        original data as the reference); None: the run's own.
    checks : a subset of :data:`REFUTERS`.
    progress : a progress bar over the refits (in a terminal); each refit's epoch bar nests
        below it.
    """
    from kgcm.estimators import make_estimator
    from kgcm.experiments.evaluation import fit_estimator
    from kgcm.experiments.fit import load_run, scenario_effects, scenario_path
    from kgcm.overlap import check_overlap

    unknown = [c for c in checks if c not in REFUTERS]
    if unknown or not checks:
        raise ConfigError(f"checks must be among {list(REFUTERS)}; got {list(checks)}.")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"epochs must be an integer >= 1; got {epochs!r}.")
    loaded = load_run(run_dir, log=log)
    config, prep = loaded.config, loaded.prep
    seqs, design, doy, train_idx = prep.seqs, prep.design, prep.doy, prep.train_idx
    params = copy.deepcopy(dict(config.estimator.params))
    if epochs is not None:
        params["training"] = {**dict(params.get("training", {})), "max_epochs": epochs}
    t1, describe = scenario_path(seqs.T, config.scenario)
    if epochs is not None:
        try:
            make_estimator(config.estimator.name, seed=config.seed, **params)
        except ConfigError as exc:
            raise ConfigError(
                f"--epochs sets training.max_epochs, which {config.estimator.name} does not "
                f"have ({exc}); run without --epochs."
            ) from exc

    def refit(variant: Any, target: np.ndarray, index: np.ndarray = train_idx) -> Any:
        # the model's own intervals: a refutation compares point effects
        train = variant.subset(index)
        return fit_estimator(
            config.estimator.name, params, None, seed=config.seed,
            Y=target[index], T=train.T, X=design.covariates(train, doy),
        )  # fmt: skip

    def mean_effect(est: Any, variant: Any, t1_variant: np.ndarray) -> float:
        effect = scenario_effects(est, config, prep, variant, t1_variant, config.alpha)["effect"]
        return float(np.nanmean(effect))

    target = design.target(seqs, doy)
    # every check but the overlap diagnostic refits the estimator, and so does the original
    # with --epochs: each may take as long as the run's own fit
    n_refits = sum(c != "overlap" for c in checks) + (epochs is not None)
    with progress_bar(progress, "refits", n_refits) as advance:
        if epochs is None:
            reference = loaded.estimator
            log(f"original: the saved model, scenario {describe}")
        else:
            log(f"original: refit with {epochs} epochs, scenario {describe}")
            reference = refit(seqs, target)
            advance()
        original = mean_effect(reference, seqs, t1)
        log(f"original mean effect on {config.outcome}: {original:.4g} {prep.units}".rstrip())

        results: list[RefutationResult] = []
        for k, name in enumerate(REFUTERS):
            if name not in checks:
                continue
            rng = np.random.default_rng([config.seed, k])
            if name == "overlap":
                report = check_overlap(seqs.T, seqs.X, t1, seed=config.seed)
                results.append(RefutationResult(
                    name, "kgcm.check_overlap: T varies at given X; the scenario stays in support",
                    None, None, report.r2, report.r2_max, report.ok, report.message,
                ))  # fmt: skip
                continue
            log(f"refuting: {name}")
            if name in ("placebo_time", "placebo_units"):
                placebo = (
                    _placebo_time(seqs.T, seqs.cell_index(), rng)
                    if name == "placebo_time"
                    else seqs.T[rng.permutation(seqs.n_units)]
                )
                variant = replace(seqs, T=placebo)
                new = mean_effect(refit(variant, target), variant, scenario_path(variant.T,
                                  config.scenario)[0])  # fmt: skip
                text = (
                    "treatment paths permuted in time within each cell, cell levels equalised"
                    if name == "placebo_time"
                    else "treatment paths permuted across units (cells and times)"
                )
            elif name == "dummy_outcome":
                train_target = target[train_idx]
                noise = rng.normal(train_target.mean(), train_target.std(), size=target.shape)
                new = mean_effect(refit(seqs, noise), seqs, t1)
                text = "outcome replaced by noise independent of T (the target's mean and sd)"
            elif name == "random_common_cause":
                column = rng.standard_normal((*seqs.X.shape[:2], 1))
                variant = replace(
                    seqs,
                    X=np.concatenate([seqs.X, column], axis=-1),
                    feature_names=(*seqs.feature_names, "random_common_cause"),
                )
                new = mean_effect(refit(variant, target), variant, t1)
                text = "an independent N(0, 1) covariate added at every step"
            else:  # data_subset
                keep = np.sort(
                    rng.choice(
                        train_idx,
                        size=max(2, round(SUBSET_FRACTION * len(train_idx))),
                        replace=False,
                    )
                )
                new = mean_effect(refit(seqs, target, keep), seqs, t1)
                text = f"refit on a random {SUBSET_FRACTION:.0%} of the training units"
            ratio, threshold, passed = judge(name, original, new)
            results.append(RefutationResult(name, text, original, new, ratio, threshold, passed))
            advance()
            log(f"  {name}: {new:.4g} (ratio {ratio:.3f}, limit {threshold:g}) "
                f"{'pass' if passed else 'FAIL'}")  # fmt: skip

    run = loaded.run_dir
    payload = {
        "run": str(run),
        "scenario": describe,
        "outcome": config.outcome,
        "outcome_units": prep.units,
        "estimator": config.estimator.name,
        "epochs": epochs,
        "seed": config.seed,
        "thresholds": {"placebo_max": PLACEBO_MAX, "stable_max": STABLE_MAX},
        "passed": all(r.passed for r in results),
        "results": [r.to_dict() for r in results],
    }
    atomic_write_text(run / "refute.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(run / "refute.md", refutation_table(results, prep.units) + "\n")
    log(f"wrote {run / 'refute.json'} and {run / 'refute.md'}")
    return results


def refutation_table(results: list[RefutationResult], units: str = "") -> str:
    """The results as a Markdown table (what ``kgcm refute`` prints)."""

    def number(v: float | None) -> str:
        return "" if v is None else f"{v:.4g}"

    unit = f" ({units})" if units else ""
    lines = [
        f"| check | original effect{unit} | new effect{unit} | ratio | limit | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {number(r.original_effect)} | {number(r.new_effect)} | "
            f"{number(r.ratio)} | {r.threshold:g} | {'pass' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines)
