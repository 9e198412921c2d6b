"""From a dataset on (time, ...space) to unit sequences, and back to the grid.

A *unit* is one grid cell over one window of ``window`` consecutive steps (the paper's 30-day
windows); a series without space (dims ``(time,)``) is the one-cell case. Arrays follow the
estimator contract:

- ``Y`` (n_units, window): outcome
- ``T`` (n_units, window): treatment
- ``X`` (n_units, window, n_features): covariates, in ``feature_names`` order

``SequenceSet.cells`` and ``.starts`` index each unit back to its cell and first step, so any
per-unit result maps back onto the grid (:meth:`SequenceSet.to_grid`). Everything is
vectorised (fancy indexing), with no loop over cells or steps.

The treatment is kept out of ``X`` on purpose: a counterfactual path must replace the treatment
everywhere it enters a model, and a copy hidden in the covariates would not be replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from kgcm.errors import InputError, NoCompleteUnits, did_you_mean

__all__ = ["SequenceSet", "split_units", "to_sequences"]

CALENDAR_FEATURES = ("doy_sin", "doy_cos")


@dataclass(frozen=True)
class SequenceSet:
    """Unit sequences with their way back to the dataset's grid.

    Attributes
    ----------
    Y, T : ndarray (n_units, window)
    X : ndarray (n_units, window, n_features)
    feature_names : tuple of str
    cells : ndarray (n_units, n_space_dims) of int: the unit's cell index per spatial dim
    starts : ndarray (n_units,) of int: index of the unit's first step on the time axis
    template : xarray.DataArray
        A coordinate-only template (time, ...space) for mapping results back.
    Y_before : ndarray (n_units,) or None
        The outcome at the step before each window (the pre-window state), when asked for.
    """

    Y: np.ndarray
    T: np.ndarray
    X: np.ndarray
    feature_names: tuple[str, ...]
    cells: np.ndarray
    starts: np.ndarray
    template: xr.DataArray
    Y_before: np.ndarray | None = None

    @property
    def n_units(self) -> int:
        return int(self.Y.shape[0])

    @property
    def window(self) -> int:
        return int(self.Y.shape[1])

    def X_xarray(self, *, index: bool = False) -> xr.DataArray:
        """``X`` as a DataArray (unit, step, feature) that carries the covariate names.

        With ``index=True`` the unit dim also carries each unit's place: ``start`` (first step
        on the time axis) and, on a grid, ``cell_y`` / ``cell_x`` (row and column: indices on
        the first and second spatial dims; a single spatial dim gives ``cell_x`` only).
        Estimators that read neighbours (``gst-unet``) need them at fit and at prediction;
        every other estimator ignores them.
        """
        coords: dict[str, object] = {"feature": list(self.feature_names)}
        if index:
            n_space = self.cells.shape[1]
            if n_space > 2:
                raise InputError(
                    f"index=True names grid cells by row and column, but the data have "
                    f"{n_space} spatial dims; reduce them to two (e.g. stack levels into "
                    f"covariates) or call X_xarray() without index."
                )
            names = ("cell_y", "cell_x")[2 - n_space :]
            for k, name in enumerate(names):
                coords[name] = ("unit", self.cells[:, k].astype(np.int64))
            coords["start"] = ("unit", self.starts.astype(np.int64))
        return xr.DataArray(self.X, dims=("unit", "step", "feature"), coords=coords)

    def subset(self, index: np.ndarray) -> SequenceSet:
        """The units at ``index`` (integer or boolean)."""
        return replace(
            self,
            Y=self.Y[index],
            T=self.T[index],
            X=self.X[index],
            cells=self.cells[index],
            starts=self.starts[index],
            Y_before=None if self.Y_before is None else self.Y_before[index],
        )

    def step_index(self) -> np.ndarray:
        """Time index of every (unit, step): (n_units, window)."""
        return self.starts[:, None] + np.arange(self.window)[None, :]

    def cell_index(self) -> np.ndarray:
        """Flat index of every unit's cell on the spatial grid (n_units,); 0 for a series."""
        if self.cells.shape[1] == 0:
            return np.zeros(self.n_units, dtype=np.int64)
        return np.ravel_multi_index(tuple(self.cells.T), self.template.shape[1:])

    def to_grid(
        self,
        values: np.ndarray,
        name: str,
        attrs: dict | None = None,
        *,
        combine: str = "last",
        min_position: int = 0,
    ) -> xr.DataArray:
        """Put per-unit values (n_units, window) back on (time, ...space); NaN elsewhere.

        Where windows overlap (a stride below the window), ``combine="last"`` keeps the value
        of the latest window and ``combine="mean"`` averages every window that covers the step
        at a position ``>= min_position`` within it (so no step is taken from a window's first
        ``min_position`` steps, where the window has seen little of its treatment path).
        """
        values = np.asarray(values)
        if values.shape != self.Y.shape:
            raise InputError(f"values have shape {values.shape}; expected {self.Y.shape}.")
        if combine not in ("last", "mean"):
            raise InputError(f"combine must be 'last' or 'mean'; got {combine!r}.")
        if not 0 <= min_position < self.window:
            raise InputError(f"min_position must be in [0, {self.window}); got {min_position!r}.")
        steps = self.step_index()
        index = (steps, *(self.cells[:, k][:, None] for k in range(self.cells.shape[1])))
        if combine == "last":
            out = np.full(self.template.shape, np.nan)
            out[index] = values
        else:
            keep = np.zeros(values.shape, dtype=bool)
            keep[:, min_position:] = True
            keep &= np.isfinite(values)
            flat = np.ravel_multi_index(
                tuple(np.broadcast_to(i, values.shape) for i in index), self.template.shape
            )
            sums = np.zeros(self.template.size)
            counts = np.zeros(self.template.size)
            np.add.at(sums, flat[keep], values[keep])
            np.add.at(counts, flat[keep], 1.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            out = out.reshape(self.template.shape)
        return self.template.copy(data=out).rename(name).assign_attrs(attrs or {})


def _require(ds: xr.Dataset, names: Sequence[str], role: str) -> None:
    for name in names:
        if name not in ds.variables:
            raise InputError(
                f"{role} variable {name!r} is not in the dataset; it has "
                f"{sorted(map(str, ds.data_vars))}.{did_you_mean(name, map(str, ds.variables))}"
            )


def _refuse_treatment_sources(
    ds: xr.Dataset, treatment: str, covariates: Sequence[str], static: Sequence[str]
) -> None:
    """Refuse covariates the treatment is computed from, when the dataset says which they are.

    ``kgcm prepare`` writes them into the treatment's ``computed_from`` attribute. With them in
    X the treatment is (nearly) a function of the covariates' history, so "change T, hold X
    fixed" never occurs in the data and no effect is identified (``docs/pipeline.md``)."""
    sources = str(ds[treatment].attrs.get("computed_from", "")).split()
    overlap = [c for c in (*covariates, *static) if c in sources]
    if overlap:
        raise InputError(
            f"covariates {overlap} are fields the treatment {treatment!r} is computed from "
            f"(its computed_from attribute: {' '.join(sources)!r}). With them in X the treatment "
            f"is a function of the covariates, so its effect is not identified. Use the "
            f"treatment's confounders instead: the atmosphere (e.g. ERA5 tas, uas, vas, psl, "
            f"rlds; see docs/pipeline.md), the pre-window ice state and geography (static "
            f"lat), and drop {overlap} from covariates."
        )


def to_sequences(
    ds: xr.Dataset,
    *,
    outcome: str = "sithick",
    treatment: str = "treatment",
    covariates: Sequence[str] = ("zos", "uo", "vo"),
    static: Sequence[str] = ("lat",),
    calendar: bool = True,
    window: int = 30,
    stride: int | None = None,
    time_dim: str = "time",
    drop_incomplete: bool = False,
    before: bool = False,
) -> SequenceSet:
    """Cut a dataset into unit sequences.

    Parameters
    ----------
    ds : Dataset with a time dimension (and any spatial dims).
    outcome, treatment : variable names on (time, ...space).
    covariates : time-varying covariates on (time, ...space). Fields the treatment is computed
        from (named by its ``computed_from`` attribute, which ``kgcm prepare`` writes) are
        refused: with them in X the effect is not identified.
    static : covariates without time (e.g. ``lat``), repeated along the window.
    calendar : add ``doy_sin``/``doy_cos`` of the day of year (the season is observed).
    window : steps per unit; stride : steps between unit starts (default ``window``: no overlap).
    drop_incomplete : drop units with any NaN (e.g. land cells); otherwise NaN is an error.
    before : also keep the outcome at the step before each window (``Y_before``, the
        pre-window state); windows starting at the first step have none and count as
        incomplete.

    Returns
    -------
    SequenceSet
    """
    if not isinstance(window, int) or window < 1:
        raise InputError(f"window must be an integer >= 1; got {window!r}.")
    stride = window if stride is None else stride
    if not isinstance(stride, int) or stride < 1:
        raise InputError(f"stride must be an integer >= 1; got {stride!r}.")
    if time_dim not in ds.dims:
        raise InputError(
            f"the dataset has no {time_dim!r} dimension; its dims are {dict(ds.sizes)}."
        )
    _require(ds, [outcome, treatment], "outcome/treatment")
    _require(ds, covariates, "covariate")
    _require(ds, static, "static covariate")
    if treatment in covariates:
        raise InputError(
            f"the treatment {treatment!r} is also listed as a covariate; keep it out of X so "
            f"a counterfactual path replaces it everywhere."
        )
    _refuse_treatment_sources(ds, treatment, covariates, static)
    reference = ds[outcome]
    space = tuple(d for d in reference.dims if d != time_dim)
    order = (time_dim, *space)
    nt = ds.sizes[time_dim]
    if nt < window:
        raise InputError(f"the series has {nt} steps, fewer than window={window}.")
    spatial_shape = tuple(ds.sizes[d] for d in space)
    n_cells = int(np.prod(spatial_shape, dtype=np.int64))

    def field(name: str) -> np.ndarray:
        da = ds[name]
        if set(da.dims) != set(order):
            raise InputError(
                f"variable {name!r} has dims {da.dims}; expected {order} like {outcome!r}."
            )
        return np.asarray(da.transpose(*order).values, dtype=np.float64).reshape(nt, n_cells)

    columns = [field(c) for c in covariates]
    names = list(covariates)
    for s in static:
        da = ds[s]
        if set(da.dims) != set(space):
            raise InputError(f"static covariate {s!r} has dims {da.dims}; expected {space}.")
        values = np.asarray(da.transpose(*space).values, dtype=np.float64).reshape(1, n_cells)
        columns.append(np.broadcast_to(values, (nt, n_cells)))
        names.append(s)
    if calendar:
        doy = ds[time_dim].dt.day_of_year.values.astype(np.float64)
        angle = 2.0 * np.pi * doy / 365.25
        for fn in (np.sin, np.cos):
            columns.append(np.broadcast_to(fn(angle)[:, None], (nt, n_cells)))
        names.extend(CALENDAR_FEATURES)

    starts_1d = np.arange(0, nt - window + 1, stride)
    steps = starts_1d[:, None] + np.arange(window)[None, :]  # (n_windows, window)

    def cut(a: np.ndarray) -> np.ndarray:
        # (nt, n_cells) -> (n_cells * n_windows, window), cell-major
        return a[steps].transpose(2, 0, 1).reshape(n_cells * len(starts_1d), window)

    outcome_values = field(outcome)
    Y = cut(outcome_values)
    T = cut(field(treatment))
    X = (
        np.stack([cut(c) for c in columns], axis=-1)
        if columns
        else np.zeros((Y.shape[0], window, 0))
    )
    cell_flat = np.repeat(np.arange(n_cells), len(starts_1d))
    cells = (
        np.stack(np.unravel_index(cell_flat, spatial_shape), axis=1)
        if space
        else np.zeros((len(cell_flat), 0), dtype=np.int64)
    )
    starts = np.tile(starts_1d, n_cells)
    y_before = None
    if before:
        y_before = np.full(len(starts), np.nan)
        later = starts > 0
        y_before[later] = outcome_values[starts[later] - 1, cell_flat[later]]
    complete = np.isfinite(Y).all(1) & np.isfinite(T).all(1) & np.isfinite(X).all((1, 2))
    if y_before is not None:
        complete &= np.isfinite(y_before)
    if not complete.all():
        n_bad = int((~complete).sum())
        if not drop_incomplete:
            raise InputError(
                f"{n_bad} of {len(complete)} units hold NaN (land, gaps or fill values). Pass "
                f"drop_incomplete=True to drop them, or fill gaps first."
            )
        if n_bad == len(complete):
            raise NoCompleteUnits("every unit holds NaN: nothing is left to learn from.")
    template = xr.DataArray(
        np.empty(tuple(ds.sizes[d] for d in order)),
        dims=order,
        coords={k: v for k, v in reference.coords.items() if set(v.dims) <= set(order)},
    )
    seqs = SequenceSet(
        Y=Y,
        T=T,
        X=X,
        feature_names=tuple(names),
        cells=cells,
        starts=starts,
        template=template,
        Y_before=y_before,
    )
    return seqs if complete.all() else seqs.subset(np.flatnonzero(complete))


def split_units(
    seqs: SequenceSet,
    *,
    test_fraction: float,
    seed: int,
    by: str = "cell",
    block: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test split of unit indices.

    ``by="cell"`` holds out whole cells (all their windows: effects on unseen places);
    ``by="block"`` holds out whole ``block`` × ``block`` tiles of cells, so held-out cells
    have few trained neighbours (effects on unseen regions, with spatially correlated
    forcing not shared across the split);
    ``by="unit"`` holds out windows independently (the paper's split by window);
    ``by="time"`` holds out the latest windows (every cell's last ``test_fraction`` of window
    starts: effects in an unseen future period; ``seed`` is not used); with overlapping windows,
    training windows that reach into the held-out period are left out of both sides.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
    rng = np.random.default_rng(seed)
    if by == "cell":
        if seqs.cells.shape[1] == 0:
            raise InputError("the data have no spatial cells; split by='unit' instead.")
        cell_id = np.ravel_multi_index(tuple(seqs.cells.T), seqs.template.shape[1:])
        unique = np.unique(cell_id)
        n_test = max(1, round(test_fraction * len(unique)))
        if n_test >= len(unique):
            raise InputError(f"only {len(unique)} cells: too few to hold {test_fraction:.0%} out.")
        test_cells = rng.choice(unique, size=n_test, replace=False)
        is_test = np.isin(cell_id, test_cells)
    elif by == "block":
        if seqs.cells.shape[1] == 0:
            raise InputError("the data have no spatial cells; split by='unit' instead.")
        if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
            raise InputError(f"block must be an integer >= 1 (cells); got {block!r}.")
        tile = np.ravel_multi_index(
            tuple((seqs.cells // int(block)).T),
            tuple(-(-n // int(block)) for n in seqs.template.shape[1:]),
        )
        tiles, which = np.unique(tile, return_inverse=True)
        if tiles.size < 2:
            raise InputError(
                f"block={block} covers the whole grid in one tile; use a smaller block."
            )
        # hold out tiles in random order until the held-out share of units is reached
        order = rng.permutation(tiles.size)
        share = (np.bincount(which.reshape(-1), minlength=tiles.size) / tile.size)[order].cumsum()
        n_test = min(int(np.searchsorted(share, test_fraction)) + 1, tiles.size - 1)
        is_test = np.isin(which.reshape(-1), order[:n_test])
    elif by == "unit":
        n = seqs.n_units
        n_test = max(1, round(test_fraction * n))
        if n_test >= n:
            raise InputError(f"only {n} units: too few to hold {test_fraction:.0%} out.")
        is_test = np.zeros(n, dtype=bool)
        is_test[rng.choice(n, size=n_test, replace=False)] = True
    elif by == "time":
        starts = np.unique(seqs.starts)
        n_test = max(1, round(test_fraction * len(starts)))
        if n_test >= len(starts):
            raise InputError(
                f"only {len(starts)} window starts: too few to hold {test_fraction:.0%} out."
            )
        first_test = starts[-n_test]
        is_test = seqs.starts >= first_test
        # overlapping windows (stride < window): a training window must end before the first
        # held-out step, or the held-out period would be partly trained on
        is_train = seqs.starts + seqs.window <= first_test
        if not is_train.any():
            raise InputError(
                f"no training window ends before the held-out period (window {seqs.window}); "
                f"hold out less or use a shorter window."
            )
        return np.flatnonzero(is_train), np.flatnonzero(is_test)
    else:
        raise InputError(f"by must be 'cell', 'block', 'unit' or 'time'; got {by!r}.")
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
