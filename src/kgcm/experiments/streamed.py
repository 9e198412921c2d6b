"""``kgcm fit`` with ``stream = true``: train from the store block by block, never loading it.

The in-memory fit (:mod:`kgcm.experiments.fit`) loads every unit of the store. With
``stream = true`` the same run is made from :class:`kgcm.streaming.StreamedUnits`:

- **Split.** Whole spatial tiles of the store (its ``y``/``x`` chunks) are held out:
  ``test_fraction`` of them for the held-out scores, and inside the training tiles a further
  15% for early stopping (:meth:`NeuralSequenceEstimator.fit_stream`). Only ``split = "cell"``
  (tiles are groups of cells) and designs without a day-of-year climatology are streamed.
- **Outcome design.** The bounded outcome transform is fitted on a sample of training units
  (up to ``SAMPLE_UNITS``, from blocks drawn across the grid); the pre-window state is read
  with each block. Units reach the estimator presented as in memory.
- **Overlap.** :func:`kgcm.check_overlap` on the same kind of sample.
- **Scores.** After training, a streamed pass over the training tiles gives their day-of-year
  climatology (every training cell's mean by day, recent and full), and one over the held-out
  tiles scores the estimator's factual forecast and the references that need no fit over every
  cell: that climatology and, with the pre-window state, persistence and the persisted
  anomaly. The ridge reference is not computed (it would hold every unit).
- **Outputs.** ``model.kgcm``, ``config.toml``, ``design.json``, ``metrics.json`` and
  ``run.json``, without ``split.npz`` and the fit figure; its effects come from
  ``kgcm effect RUN --tiles``.

Memory is bounded by a block and a batch, as in :mod:`kgcm.streaming`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kgcm.errors import ConfigError, InputError
from kgcm.sequences import SequenceSet
from kgcm.streaming import StreamedUnits

__all__ = ["SAMPLE_UNITS", "run_streamed_fit", "sample_units"]

Log = Callable[[str], None]
#: units read for the outcome transform and the overlap check (a sample across the grid)
SAMPLE_UNITS = 20_000
#: the share of the training tiles that fit_stream holds out for early stopping
VALIDATION_FRACTION = 0.15


def sample_units(
    units: StreamedUnits,
    seed: int,
    *,
    limit: int = SAMPLE_UNITS,
    read: Callable[[Any], SequenceSet | None] | None = None,
) -> list[SequenceSet]:
    """The units of blocks drawn at random across the grid, until ``limit`` units are read
    (``read(block)``, default ``units.units``)."""
    read = units.units if read is None else read
    blocks = units.blocks()
    parts: list[SequenceSet] = []
    for i in np.random.default_rng(seed).permutation(len(blocks)):
        if sum(p.n_units for p in parts) >= limit:
            break
        seqs = read(blocks[i])
        if seqs is not None:
            parts.append(seqs)
    return parts


def check_streamable(config: Any) -> None:
    """Refuse, with the fix, what a streamed fit cannot do."""
    if config.split != "cell":
        raise ConfigError(
            f"stream = true holds out whole spatial tiles of the store (split = 'cell'); got "
            f"split = {config.split!r}. Set split = 'cell', or stream = false."
        )
    if config.uses_climatology:
        raise ConfigError(
            "stream = true cannot learn the anomaly from a day-of-year climatology of every "
            "cell (climatology = 'on'); set climatology = 'auto' or 'off', or stream = false."
        )
    from kgcm.inference import Inference

    stride = config.stride or config.window
    if stride < config.window:
        raise ConfigError(
            f"stream = true with overlapping windows (stride {stride} < window "
            f"{config.window}): the effects of a streamed run come from kgcm effect --tiles, "
            "which needs stride >= window. Set stride = 0, or stream = false."
        )

    if Inference.coerce(config.estimator.inference or None).method != "model":
        raise ConfigError(
            "stream = true gives the model's own intervals (inference = 'model'); the "
            "bootstrap and parametric strategies refit on units in memory. Remove "
            "estimator.inference, or set stream = false."
        )


def run_streamed_fit(
    config: Any,
    data: Path,
    out: Path,
    *,
    log: Log,
    allow_weak_overlap: bool,
    lower: float | None,
    upper: float | None,
) -> dict[str, Any]:
    """Fit ``config``'s estimator from the store at ``data`` streamed (module docstring); write
    the model and the design into ``out``; return the metrics (``out``'s other files are
    written by the caller)."""
    from kgcm import distributed
    from kgcm._io import atomic_write_text
    from kgcm.bounds import OutcomeTransform
    from kgcm.estimators import make_estimator
    from kgcm.experiments.outcome import OutcomeDesign
    from kgcm.experiments.tiled import DESIGN_FILE, design_record
    from kgcm.overlap import require_overlap

    check_streamable(config)
    started = time.perf_counter()
    est = make_estimator(config.estimator.name, seed=config.seed, **dict(config.estimator.params))
    if not hasattr(est, "fit_stream"):
        raise ConfigError(
            f"{config.estimator.name} cannot be fitted from a stream (it trains on units held "
            "in memory); set stream = false, or choose a recurrent estimator (kgcm estimators)."
        )
    try:
        units = StreamedUnits(
            data, outcome=config.outcome, treatment=config.treatment,
            covariates=config.covariates, static=config.static, calendar=config.calendar,
            window=config.window, stride=config.stride or None, seed=config.seed,
        )  # fmt: skip
    except InputError as exc:
        raise InputError(f"{exc} Or set stream = false.") from exc
    train, test, n_tiles = _split_tiles(units, config)
    before = config.prewindow_state
    sample = sample_units(train, config.seed, read=lambda b: train.units(b, before=before))
    if not sample:
        raise ConfigError("every training unit of the store holds NaN: there is nothing to fit.")
    Y = np.concatenate([s.Y for s in sample])
    transform = OutcomeTransform.fit(Y, lower, upper)
    design = OutcomeDesign(transform, None, config.prewindow_state, config.outcome)
    train.design = test.design = design
    overlap = require_overlap(  # on the covariates as the in-memory fit checks them
        np.concatenate([s.T for s in sample])[:SAMPLE_UNITS],
        np.concatenate([s.X for s in sample])[:SAMPLE_UNITS],
        allow_weak=allow_weak_overlap, log=log, seed=config.seed,
    )  # fmt: skip
    names = [*sample[0].feature_names, *([design.before_name] if design.prewindow_state else [])]
    log(
        f"fitting {config.estimator.name} streamed from {data} in blocks of {units.tile[0]} x "
        f"{units.tile[1]} cells ({n_tiles} tiles; {len(test.blocks())} of "
        f"{len(units.blocks())} blocks held out by tile); {len(names)} covariates: "
        f"{', '.join(names)}"
    )
    est.fit_stream(train, val_fraction=VALIDATION_FRACTION)
    fit_s = time.perf_counter() - started
    if distributed.world()[0] != 0:  # rank 0 alone scores and writes
        return {}
    log("scoring the held-out tiles")
    scores = _held_out_scores(
        est, config.estimator.name, train, test, design, config.reference_years
    )
    est.save(out / "model.kgcm")
    atomic_write_text(out / DESIGN_FILE, json.dumps(design_record(design), indent=2) + "\n")
    return {
        **scores,
        "outcome_bounds": [transform.lower, transform.upper],
        "fit_seconds": round(fit_s, 3),
        "processes": distributed.world()[1],
        "overlap": overlap,
        "stream": True,
    }


def _split_tiles(units: StreamedUnits, config: Any) -> tuple[StreamedUnits, StreamedUnits, int]:
    """``(train, test, n_tiles)``: whole tiles held out for the scores; refused, with the fix,
    when too few tiles remain to train and stop early, or the held-out tiles hold no unit."""
    tiles = lambda u: {(b.y.start, b.x.start) for b in u.blocks()}  # noqa: E731
    n_tiles = len(tiles(units))
    fix = (
        "Prepare the store with smaller y/x chunks (kgcm prepare: [chunks] y = ..., x = ...), "
        "lower test_fraction, or set stream = false."
    )
    if n_tiles < 3:
        raise ConfigError(
            f"the store's y/x chunks make {n_tiles} spatial tile(s) of {units.tile[0]} x "
            f"{units.tile[1]} cells; a streamed fit holds out whole tiles for testing and for "
            f"early stopping and needs at least 3. {fix}"
        )
    train, test = units.hold_out(config.test_fraction, seed=config.seed)
    if len(tiles(train)) < 2:
        raise ConfigError(
            f"test_fraction = {config.test_fraction} of {n_tiles} tiles leaves "
            f"{len(tiles(train))} training tile; early stopping holds out another. {fix}"
        )
    if not any(test.units(b) is not None for b in test.blocks()):
        raise ConfigError(
            f"the held-out tiles ({len(tiles(test))} of {n_tiles}) hold no complete unit (land "
            "or gaps everywhere); choose another seed, or a larger test_fraction."
        )
    return train, test, n_tiles


class _Sums:
    """Running squared-error sums of named forecasts against one truth."""

    def __init__(self) -> None:
        self.sq: dict[str, float] = {}
        self.n: dict[str, int] = {}

    def add(self, name: str, forecast: np.ndarray, truth: np.ndarray) -> None:
        err = np.asarray(forecast, dtype=np.float64) - truth
        ok = np.isfinite(err)
        self.sq[name] = self.sq.get(name, 0.0) + float(np.sum(err[ok] ** 2))
        self.n[name] = self.n.get(name, 0) + int(ok.sum())

    def rmse(self, name: str) -> float:
        return float(np.sqrt(self.sq[name] / self.n[name])) if self.n.get(name) else float("nan")


def _training_climatology(
    train: StreamedUnits, doy: np.ndarray, times: np.ndarray, years: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Day-of-year climatologies (366,) of the training tiles' mean outcome, over the latest
    ``years`` training years and over all, and the number of training units."""
    from kgcm.experiments.outcome import fill_empty_cells
    from kgcm.references import climatology_table

    sums, counts = np.zeros(len(times)), np.zeros(len(times))
    n_units = 0
    for block in train.blocks():
        seqs = train.units(block, raw=True)
        if seqs is None:
            continue
        n_units += seqs.n_units
        steps = seqs.starts[:, None] + np.arange(seqs.window)
        np.add.at(sums, steps, np.where(np.isfinite(seqs.Y), seqs.Y, 0.0))
        np.add.at(counts, steps, np.isfinite(seqs.Y).astype(np.float64))
    used = counts > 0
    mean = np.where(used, sums / np.maximum(counts, 1), np.nan)[:, None]
    last = times[np.flatnonzero(used)[-1]]
    recent = times > last - np.timedelta64(int(years * 365.25), "D")
    table = lambda mask: fill_empty_cells(climatology_table(mean, doy, mask[:, None]))[:, 0]  # noqa: E731
    return table(used & recent), table(used), n_units


def _held_out_scores(
    est: Any, estimator: str, train: StreamedUnits, test: StreamedUnits, design: Any, years: int
) -> dict[str, Any]:
    """The estimator's and the references' factual RMSE on the held-out tiles, streamed."""
    from kgcm.references import skill

    ds = train.ds
    times = ds["time"].values
    doy = ds["time"].dt.day_of_year.values.astype(np.int64)
    recent, full, n_train = _training_climatology(train, doy, times, years)
    sums = _Sums()
    moments = np.zeros(3)  # count, sum, sum of squares of the held-out outcome
    n_test = 0
    no_days = np.zeros(0, dtype=np.int64)
    name = "estimator"
    for block in test.blocks():
        seqs = test.units(block, before=design.prewindow_state, raw=True)
        if seqs is None:
            continue
        n_test += seqs.n_units
        Y = seqs.Y.astype(np.float64)
        X = design.covariates(seqs, no_days).values
        sums.add(name, design.outcome_from(est.predict(X, seqs.T), seqs, no_days), Y)
        days = doy[seqs.starts[:, None] + np.arange(seqs.window)] - 1
        sums.add("climatology_recent", recent[days], Y)
        sums.add("climatology_full", full[days], Y)
        if seqs.Y_before is not None:
            held = np.broadcast_to(seqs.Y_before[:, None], Y.shape)
            sums.add("persistence", held, Y)
            anomaly = seqs.Y_before - recent[doy[seqs.starts - 1] - 1]
            sums.add("persistence_anomaly", recent[days] + anomaly[:, None], Y)
        finite = Y[np.isfinite(Y)]
        moments += (finite.size, finite.sum(), np.square(finite).sum())
    if not n_test:
        raise ConfigError("every held-out unit holds NaN; choose another seed or test_fraction.")
    texts = {
        "climatology_recent": f"day-of-year climatology of the training tiles, latest {years} "
        "years",
        "climatology_full": "day-of-year climatology of the training tiles, every year",
        "persistence": "the last value before the window, held for the window",
        "persistence_anomaly": "recent climatology plus the anomaly of the day before the "
        "window, held",
    }
    clim = sums.rmse("climatology_recent")
    estimator_rmse = sums.rmse(name)
    references = {
        key: {"description": text, "rmse": sums.rmse(key),
              "skill": None if key == "climatology_recent" else skill(sums.rmse(key), clim)}
        for key, text in texts.items() if key in sums.n
    }  # fmt: skip
    n, total, squares = moments
    return {
        "factual_rmse_test": estimator_rmse,
        "outcome_sd_test": float(np.sqrt(max(squares / n - (total / n) ** 2, 0.0))) or 1.0,
        "references": {
            estimator: {
                "description": "the fitted estimator",
                "rmse": estimator_rmse,
                "skill": skill(estimator_rmse, clim),
            },
            **references,
        },
        "not_beaten": [k for k, v in references.items() if v["rmse"] <= estimator_rmse],
        "references_not_computed": ["linear"],
        "n_train_units": n_train,
        "n_test_units": n_test,
    }
