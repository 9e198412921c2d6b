r"""How ``kgcm fit`` presents a real outcome to an estimator, and how it reads the answer back.

Three steps, each fitted on the training units only and recomputed identically by
``kgcm effect`` from the saved split:

1. **Bounds.** The outcome is moved to an unbounded coordinate ``u = g(y)``
   (:class:`kgcm.bounds.OutcomeTransform`, chosen by the variable's physical bounds), so every
   prediction and every counterfactual maps back inside them.
2. **Seasonal baseline** (``climatology``). The estimator learns the anomaly
   ``a = u - c(doy, cell)`` from the training steps' day-of-year climatology ``c`` of ``u``; the
   seasonal cycle is not the part a model should spend its capacity on.
3. **Pre-window state** (``prewindow_state``). The outcome on the day before each window (as an
   anomaly from ``c`` when the baseline is on) joins the covariates as ``<outcome>_before``:
   the earlier ice state, a confounder of the forcing and the ice that no treatment inside the
   window can move.

The estimator's effect is then an effect on ``a`` (equal to the effect on ``u``: ``c`` does not
depend on the treatment), and a counterfactual outcome is
:math:`y^{cf} = g^{-1}(g(y) + \Delta a)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from kgcm.bounds import OutcomeTransform
from kgcm.references import climatology_table, lookup
from kgcm.sequences import SequenceSet

__all__ = ["OutcomeDesign", "design_outcome", "steps_used", "unit_doy"]


@dataclass(frozen=True)
class OutcomeDesign:
    """The fitted outcome presentation (module docstring).

    Attributes
    ----------
    transform : the bounded transform ``g``.
    climatology : (366, n_cells) of ``u`` by day of year, or None (no baseline).
    prewindow_state : whether ``<outcome>_before`` is a covariate.
    outcome : the outcome's name.
    """

    transform: OutcomeTransform
    climatology: np.ndarray | None
    prewindow_state: bool
    outcome: str

    @property
    def before_name(self) -> str:
        return f"{self.outcome}_before"

    def baseline(self, seqs: SequenceSet, doy: np.ndarray) -> np.ndarray:
        """``c`` at every (unit, step), (n_units, window); zeros without a baseline."""
        if self.climatology is None:
            return np.zeros(seqs.Y.shape)
        return lookup(self.climatology, unit_doy(seqs, doy), seqs.cell_index())

    def before_baseline(self, seqs: SequenceSet, doy: np.ndarray) -> np.ndarray:
        """``c`` on the day before each window, (n_units,)."""
        if self.climatology is None:
            return np.zeros(seqs.n_units)
        before_doy = doy[np.maximum(seqs.starts - 1, 0)]
        return self.climatology[before_doy - 1, seqs.cell_index()]

    def target(self, seqs: SequenceSet, doy: np.ndarray) -> np.ndarray:
        """What the estimator learns: ``g(Y) - c``, (n_units, window)."""
        return self.transform.forward(seqs.Y) - self.baseline(seqs, doy)

    def covariates(self, seqs: SequenceSet, doy: np.ndarray) -> xr.DataArray:
        """``X`` with the pre-window state appended (unit, step, feature), names on it."""
        X, names = seqs.X, list(seqs.feature_names)
        if self.prewindow_state:
            if seqs.Y_before is None:
                raise ValueError("sequences were cut without before=True")
            state = self.transform.forward(seqs.Y_before) - self.before_baseline(seqs, doy)
            column = np.broadcast_to(state[:, None, None], (*seqs.Y.shape, 1))
            X = np.concatenate([X, column], axis=-1)
            names.append(self.before_name)
        return xr.DataArray(X, dims=("unit", "step", "feature"), coords={"feature": names})

    def outcome_from(self, a: np.ndarray, seqs: SequenceSet, doy: np.ndarray) -> np.ndarray:
        """An outcome back from the estimator's coordinate: ``g⁻¹(a + c)``."""
        return self.transform.inverse(a + self.baseline(seqs, doy))


def unit_doy(seqs: SequenceSet, doy: np.ndarray) -> np.ndarray:
    """Day of year at every (unit, step), (n_units, window), from the time axis's ``doy``."""
    return doy[seqs.step_index()]


def steps_used(seqs: SequenceSet, index: np.ndarray, n_times: int) -> np.ndarray:
    """(n_times, n_cells) booleans: the (step, cell) pairs covered by the units at ``index``."""
    n_cells = int(np.prod(seqs.template.shape[1:], dtype=np.int64))
    used = np.zeros((n_times, n_cells), dtype=bool)
    sub = seqs.subset(index)
    used[sub.step_index(), sub.cell_index()[:, None]] = True
    return used


def design_outcome(
    seqs: SequenceSet,
    train_idx: np.ndarray,
    doy: np.ndarray,
    *,
    outcome: str,
    lower: float | None,
    upper: float | None,
    climatology: bool,
    prewindow_state: bool,
    smooth_days: int = 15,
) -> OutcomeDesign:
    """Fit the outcome presentation on the training units (``train_idx``).

    ``doy`` (n_times,) is the day of year of the time axis. Without any training step in a
    cell (a split by cell) that cell's baseline is the mean of the training cells' baselines.
    """
    train = seqs.subset(train_idx)
    transform = OutcomeTransform.fit(train.Y, lower, upper)
    table = None
    if climatology:
        n_times = seqs.template.shape[0]
        n_cells = int(np.prod(seqs.template.shape[1:], dtype=np.int64))
        u = np.full((n_times, n_cells), np.nan)
        u[train.step_index(), train.cell_index()[:, None]] = transform.forward(train.Y)
        table = fill_empty_cells(climatology_table(u, doy, np.isfinite(u), smooth_days=smooth_days))
    return OutcomeDesign(transform, table, prewindow_state, outcome)


def fill_empty_cells(table: np.ndarray) -> np.ndarray:
    """Fill the gaps of a (366, n_cells) climatology: a cell without any value gets the mean
    of the others day by day, and days without a value (a record shorter than a year) are
    interpolated linearly between the nearest days that have one, around the year."""
    out = np.array(table, dtype=np.float64)
    empty = np.isnan(out).all(axis=0)
    if empty.all():
        return out
    if empty.any():
        have = np.isfinite(out[:, ~empty])
        sums = np.where(have, out[:, ~empty], 0.0).sum(axis=1)
        counts = have.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, empty] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)[:, None]
    if np.isnan(out).any():
        import pandas as pd

        n = out.shape[0]
        around = pd.DataFrame(np.concatenate([out, out, out], axis=0))  # the year, wrapped
        out = around.interpolate(axis=0, limit_area="inside").to_numpy()[n : 2 * n]
    return out
