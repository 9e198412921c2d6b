r"""GST-UNet: a U-Net over the grid, fitted by iterative G-computation, with bootstrap intervals.

After Oprescu, Park, Luo, Yoo and Kallus, "GST-UNet: A Neural Framework for Spatiotemporal Causal
Inference with Time-Varying Confounding" (NeurIPS 2025): a U-Net encoder over the spatial grid
with temporal context, and one output head per step of regression-based iterative
G-computation, so that outcomes which are affected by past treatment and confound later
treatment (here: past sea-ice thickness) are adjusted for rather than conditioned away.

**Where the grid comes from.** The contract's arrays carry no space. Units are placed on the
grid by coordinates on ``X``'s unit dim: ``X`` is an :class:`xarray.DataArray`
``(unit, step, feature)`` with integer coords ``cell_y`` (row), ``cell_x`` (column) and
``start`` (first time step of the unit's window) on ``unit``, which is what
``SequenceSet.X_xarray(index=True)`` builds. Units that share a ``start`` form one frame
sequence of ``H × W`` pixels (``H = max cell_y + 1``, ``W = max cell_x + 1``); grid cells that
no unit covers (land, held-out cells) are empty pixels. The coordinates travel with the data,
so ``fit`` and ``effect`` each read the placement of their own units (held-out cells included).

*Without a grid* (plain arrays, or a DataArray without ``cell_y``/``cell_x``) every unit is its
own 1 × 1 image: the U-Net's 3 × 3 convolutions then see only their centre tap and the model is
a per-unit network on the same stacked context, with no spatial information. This is a
documented degenerate case, recorded as ``spatial_ = False``; a model fitted that way treats
units as independent pixels at prediction too, whatever ``X`` carries. A model fitted on a grid
(``spatial_ = True``) refuses inputs without one.

**Notation.** On frame ``g`` (a window start), step :math:`s = 0..S-1`, pixel :math:`c`:
covariates :math:`x_{s,c}`, treatment :math:`T_{s,c}`, outcome :math:`y_{s,c}`, all scaled by
the estimator's standardisers. Temporal context is a stack of the last ``context`` = :math:`k`
steps as channels: the treatment path :math:`P_{s-k+1..s}` and covariates
:math:`x_{s-k+1..s}`, the outcomes :math:`y_{s-k..s-1}` that are *revealed*, and masks (which
outcomes are revealed, which context steps lie inside the window, which pixels hold a unit);
steps before the window are zeros.

**Iterative G-computation.** For target step :math:`s`, anchor :math:`j = s - d`
(:math:`d = 0..k` steps of look-ahead) and an intervention path :math:`a`, the history
:math:`H_j` holds the outcomes before :math:`j` and the factual treatments up to :math:`j`; the
treatments after :math:`j` follow :math:`a`. The regressions, backwards from :math:`d = 0`:

.. math::

    Q^{(0)}_s = E[\,y_s \mid H_s, T_{\le s}\,], \qquad
    Q^{(d)}_s(a) = E\bigl[\,Q^{(d-1)}_s(a)\big|_{T_{j+1} = a_{j+1}} \bigm| H_j, T_{\le j}\,\bigr]

where the inner :math:`Q^{(d-1)}` is evaluated on the history one step later (one more outcome
revealed, :math:`y_j`) with the treatment at :math:`j+1` set to the intervention. One U-Net
:math:`f_\theta` with :math:`k+1` heads gives :math:`Q^{(d)} = f^{(d)}_\theta(z_{j})`, trained
jointly with stop-gradient pseudo-outcomes, summed over every head
:math:`d = 0..\min(k, s)` of every training frame and every pixel :math:`c` holding a unit
(bootstrap weight :math:`w_c`, see below), and divided by the total weight:

.. math::

    L = \sum_{s, c, d} w_c \begin{cases} (f^{(0)}_\theta(z_s) - y_s)^2 & d = 0 \\
        (f^{(d)}_\theta(z_{s-d}) - \mathrm{sg}[f^{(d-1)}_\theta(z_{s-d+1})])^2 & d \ge 1
        \end{cases}

Prediction under a
whole path :math:`a` reveals no outcome (the contract's ``predict`` receives none): the anchor
is the window start, :math:`\hat y_s(a) = f^{(\min(k, s))}_\theta(z)` with every context step
following :math:`a`, and the effect is

.. math:: \hat\tau_s = \hat y_s(T^1) - \hat y_s(T^0).

**Intervals.** A cluster bootstrap over cells: each of ``n_bootstrap`` refits weights the
training loss of every cell (all its windows together) by multinomial counts of a resample of
the cells with replacement; neighbours stay visible as inputs (a grid cannot hold a cell
twice). The draws are the full-data fit and the refits; the effect is their mean and the
interval their equal-tailed quantiles. With few refits (default 5) the interval is rough
(near the range of the draws).

Departures from the paper, and why:

- *Temporal context* is a stack of :math:`k` steps as input channels, not a ConvLSTM over the
  whole history; the G-computation horizon is :math:`k`. Treatments more than :math:`k - 1`
  steps before a target, and outcomes more than :math:`k` steps before it, are assumed to
  carry no further information (choose ``context`` at least as long as the response memory).
- *Any path after fitting.* The paper fits its heads for one planned intervention; the contract
  asks for effects of paths given only after ``fit``. Training therefore draws the intervention
  after the anchor independently of the data, **per pixel**: every pixel gets the context path
  of an independently drawn donor (a pixel holding a unit, in any frame of the batch) times
  its own factor drawn log-uniformly in [1/2, 2], applied in raw units (so ``1.5 × T0`` lies
  inside the training paths). Because the drawn path does not depend on the history, each
  regression still targets the G-formula at that path, and one network serves every path in
  the support. Per pixel rather than one path for the whole field: the simulated world has no
  interference (a cell's ice responds to its own treatment only), and coherent field-wide
  interventions let the network spread a cell's own response over its neighbours' paths.
- *Training* is joint over all heads with stop-gradient pseudo-outcomes from the current
  network, through the shared loop (no curriculum over heads). Every head sees every frame:
  on a grid a batch holds few frames, and one head drawn per frame propagated the chain of
  regressions too slowly to be usable. Early stopping (the shared loop's) watches a
  *factual* validation loss on held-out frames: every head :math:`d` predicting the observed
  :math:`y_s` from the history up to :math:`s - d` and the factual path after it. The
  G-computation residual is no measure of progress (its targets for :math:`d \ge 1` are the
  network's own outputs, small while the heads are flat, so it rises as the chain learns):
  at context 10 on a 12 × 12 ``arctic`` world stopping on it kept near-constant heads.
- *Outcome window*: within a window only the window's own steps are seen; context before its
  first step is zeros, so the first :math:`k` steps use shorter histories.
- *Held-out cells* (transductive prediction, ``transductive=True``, the default): ``fit``
  keeps the training units' scaled covariates and factual treatments keyed by
  ``(start, cell)`` (``known_``, saved with the model). At prediction every frame is filled
  with the training units of that window (same ``start``, same window length) on the pixels
  no query unit holds, under their factual treatment, and then the query units are placed;
  only the query units' outputs are returned. So the U-Net sees the whole grid, as in
  training, rather than frames holding only the held-out cells (in the benchmark about a
  quarter of the grid). What is transductive: a prediction depends on the training data of
  the same windows, and a counterfactual path changes only the query units' treatment (the
  filled neighbours stay factual) unless the caller passes every unit of the window. A query
  window whose ``start`` was not seen in training (or of another length) is predicted from
  its own units alone, and a model must not be asked about another world whose windows
  share the training ``start`` values (it would fill them with this world's cells); set
  ``transductive=False`` for frames holding the query units alone. Training also hides a
  random share of the units of each frame (up to ``cell_dropout``) from the inputs and the
  loss.
- *Intervals* by the cell bootstrap above (ours).

Known limitation (measured on the ``arctic`` simulator): G-computation adjusts for the observed
history only. Where a hidden driver moves treatment and outcome within the same step (the
simulator's latent forcing innovations), the neighbours' treatments, which the U-Net sees, are
a clean proxy for it, and a field-wide intervention is partly read as a change of the hidden
driver: the effect is shrunk towards zero. With ``confounding = 0`` the same model recovers
the effect (see ``tests/test_gst_unet.py``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F

from kgcm.errors import ConfigError, InputError
from kgcm.estimators.base import BaseEstimator, MemberEnsemble, ValidatedData
from kgcm.estimators.training import TrainingConfig, fit_module

__all__ = ["GSTUNet", "GridLayout", "UNet", "grid_layout"]

#: intervention paths drawn for training are another frame's path times a factor in
#: [1/_DONOR_SCALE, _DONOR_SCALE], log-uniform: covers scenarios like T1 = 1.5 T0
_DONOR_SCALE = 2.0
#: pixels per mini-batch (frames x heads x H x W) above which the default batch size shrinks,
#: and per prediction chunk (frames x H x W): keeps memory bounded on large grids
_PIXEL_BUDGET = 2**18


# --------------------------------------------------------------------------------------------
# Placing units on the grid


@dataclass(frozen=True)
class GridLayout:
    """Where each unit sits: frame (window start) and pixel.

    Attributes
    ----------
    group, row, col : ndarray (n_units,) of int
        Frame index (one per distinct ``start``), grid row and column of every unit.
    n_groups, height, width : int
        Frames and grid size ``H × W``.
    cluster : ndarray (n_units,) of int
        Bootstrap cluster of every unit: its cell (spatial) or the unit itself (pixels).
    spatial : bool
        False for the degenerate layout, every unit its own 1 × 1 frame.
    start : ndarray (n_units,) of int
        The ``start`` coordinate of every unit (its window's first time step; 0 for pixels).
    """

    group: np.ndarray
    row: np.ndarray
    col: np.ndarray
    n_groups: int
    height: int
    width: int
    cluster: np.ndarray
    spatial: bool
    start: np.ndarray

    @classmethod
    def pixels(cls, n_units: int) -> GridLayout:
        """Every unit its own 1 × 1 frame (no spatial information)."""
        zeros = np.zeros(n_units, dtype=np.int64)
        units = np.arange(n_units)
        return cls(units, zeros, zeros, n_units, 1, 1, units, spatial=False, start=zeros)

    @classmethod
    def place(
        cls,
        starts: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        *,
        height: int | None = None,
        width: int | None = None,
    ) -> GridLayout:
        """Units at ``(start, row, col)`` on a grid of at least ``height × width`` (default: the
        smallest holding them); units with the same start share a frame. Two units on one pixel
        of one frame are refused."""
        height = max(int(rows.max()) + 1, height or 0)
        width = max(int(cols.max()) + 1, width or 0)
        _, group = np.unique(starts, return_inverse=True)
        cluster = rows * width + cols
        key = group.astype(np.int64) * (height * width) + cluster
        _, first, counts = np.unique(key, return_index=True, return_counts=True)
        if np.any(counts > 1):
            clash = key[first[np.argmax(counts > 1)]]
            a, b = np.flatnonzero(key == clash)[:2]
            raise InputError(
                f"units {a} and {b} both sit at cell (cell_y={rows[a]}, cell_x={cols[a]}) with "
                f"start={starts[a]}; each window of a cell must be one unit. Give every window "
                f"its first step as a 'start' coordinate on the unit dim "
                f"(SequenceSet.X_xarray(index=True) does)."
            )
        return cls(
            group=group.astype(np.int64).reshape(-1),
            row=rows,
            col=cols,
            n_groups=int(group.max()) + 1,
            height=height,
            width=width,
            cluster=cluster,
            spatial=True,
            start=starts,
        )

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """Per-unit values ``(n_units, S[, p])`` onto frames ``(G, S[, p], H, W)``; 0 elsewhere."""
        out = np.zeros((self.n_groups, *values.shape[1:], self.height, self.width))
        index = (self.group, *(slice(None),) * (values.ndim - 1), self.row, self.col)
        out[index] = values
        return out

    def mask(self, per_unit: np.ndarray | None = None) -> np.ndarray:
        """``(G, H, W)``: ``per_unit`` values (default 1) on the units' pixels, 0 elsewhere."""
        out = np.zeros((self.n_groups, self.height, self.width))
        out[self.group, self.row, self.col] = 1.0 if per_unit is None else per_unit
        return out

    def from_grid(self, frames: np.ndarray) -> np.ndarray:
        """Frames ``(G, S, H, W)`` back to units ``(n_units, S)``."""
        return frames[self.group, :, self.row, self.col]


def _unit_coord(X: xr.DataArray, name: str) -> np.ndarray | None:
    if name not in X.coords:
        return None
    coord = X.coords[name]
    unit_dim = X.dims[0]
    if coord.dims != (unit_dim,):
        raise InputError(
            f"X's coordinate {name!r} has dims {coord.dims}; it must lie on the unit dim "
            f"({unit_dim!r}), one value per unit. SequenceSet.X_xarray(index=True) builds it."
        )
    values = np.asarray(coord.values)
    if not np.issubdtype(values.dtype, np.number) or values.dtype == bool:
        raise InputError(f"X's coordinate {name!r} must hold integers; got dtype {values.dtype}.")
    if values.size and not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
        bad = values[~(np.isfinite(values) & (values == np.round(values)))][0]
        raise InputError(
            f"X's coordinate {name!r} must hold whole numbers (grid indices); got {bad}."
        )
    values = values.astype(np.int64)
    if values.size and values.min() < 0:
        raise InputError(
            f"X's coordinate {name!r} must hold indices >= 0; got {int(values.min())}."
        )
    return values


def grid_layout(X: Any) -> GridLayout | None:
    """The grid placement carried by ``X``, or None when ``X`` carries none.

    ``X`` is a DataArray ``(unit, step, feature)`` with integer coords ``cell_y`` and/or
    ``cell_x`` (a missing one counts as 0) and optionally ``start`` on the unit dim. Units with
    the same ``start`` share a frame; two units on one pixel of one frame are refused.
    """
    if not isinstance(X, xr.DataArray) or X.ndim != 3:
        return None
    rows, cols = _unit_coord(X, "cell_y"), _unit_coord(X, "cell_x")
    if rows is None and cols is None:
        return None
    n = X.shape[0]
    rows = np.zeros(n, np.int64) if rows is None else rows
    cols = np.zeros(n, np.int64) if cols is None else cols
    starts = _unit_coord(X, "start")
    starts = np.zeros(n, np.int64) if starts is None else starts
    return GridLayout.place(starts, rows, cols)


# --------------------------------------------------------------------------------------------
# Frames and their stacked temporal context


def _context(a: torch.Tensor, k: int, lag: int) -> torch.Tensor:
    """``a (G, S, ...) -> (G, S, k, ...)``: entry ``[g, s, i] = a[g, s - k + 1 + i - lag]``,
    zero before step 0 (``lag=0``: steps ``s-k+1..s``; ``lag=1``: ``s-k..s-1``)."""
    steps = a.shape[1]
    pad = a.new_zeros((a.shape[0], k - 1 + lag, *a.shape[2:]))
    padded = torch.cat([pad, a], dim=1)
    index = torch.arange(steps)[:, None] + torch.arange(k)[None, :]
    return padded[:, index]


def _frames(
    layout: GridLayout,
    x: np.ndarray,
    t: np.ndarray,
    y: np.ndarray | None,
    k: int,
) -> dict[str, torch.Tensor]:
    """Training or prediction frames, one per (window start, step), units on the first dim.

    Returns tensors ``x (F, k, p, H, W)``, ``t (F, k, H, W)`` (context steps ``s-k+1..s``),
    ``y (F, k, H, W)`` (``s-k..s-1``), ``y_now (F, H, W)``, ``valid (F, H, W)``,
    ``weight (F, H, W)`` (1 on units) and ``step (F,)``, with ``F = n_groups × n_steps``
    (frame ``g * n_steps + s``).
    """
    steps = t.shape[1]

    def flat(a: torch.Tensor) -> torch.Tensor:
        # explicit sizes: with no covariates (X=None) a block holds 0 elements and -1 is ambiguous
        return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])

    def grid(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(layout.to_grid(a), dtype=torch.float32)

    tg = grid(t)
    yg = grid(y) if y is not None else torch.zeros_like(tg)
    valid = torch.as_tensor(layout.mask(), dtype=torch.float32)
    return {
        "x": flat(_context(grid(x), k, 0)),
        "t": flat(_context(tg, k, 0)),
        "y": flat(_context(yg, k, 1)),
        "y_now": flat(yg),
        "valid": flat(valid[:, None].expand(-1, steps, -1, -1)),
        "weight": flat(valid[:, None].expand(-1, steps, -1, -1)),
        "step": torch.arange(steps).repeat(layout.n_groups),
    }


def _network_input(
    x: torch.Tensor,
    path: torch.Tensor,
    y: torch.Tensor,
    step: torch.Tensor,
    valid: torch.Tensor,
    look_ahead: torch.Tensor,
) -> torch.Tensor:
    """Stack the channels of the U-Net input ``z``: ``(B, k (p + 4) + 1, H, W)``.

    ``look_ahead`` (B,) is :math:`d`: outcome context position ``i`` (step ``s - k + i``) is
    revealed iff it lies before the anchor ``j = s - d`` and inside the window. Every channel is
    zero on pixels without a unit.
    """
    batch, k, height, width = path.shape
    pos = torch.arange(k, device=path.device)[None, :]
    inside = (step[:, None] - k + 1 + pos) >= 0  # path/covariate context step in the window
    revealed = (pos < (k - look_ahead)[:, None]) & ((step[:, None] - k + pos) >= 0)

    def planes(m: torch.Tensor) -> torch.Tensor:
        return m[:, :, None, None].to(path.dtype).expand(batch, k, height, width)

    shown = planes(revealed)
    z = torch.cat([x.flatten(1, 2), path, y * shown, shown, planes(inside), valid[:, None]], 1)
    return z * valid[:, None]


def _donor_paths(
    t: torch.Tensor,
    valid: torch.Tensor,
    step: torch.Tensor,
    *,
    offset: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Intervention paths for training, drawn per pixel: ``(B, k, H, W)``.

    Every pixel of every frame gets the context path of an independently drawn donor pixel
    (any pixel of the batch holding a unit, ``valid``; among those, frames whose ``k`` context
    steps lie inside the window when there are any, so the donor path has no zero padding),
    times its own factor drawn log-uniformly in ``[1/_DONOR_SCALE, _DONOR_SCALE]`` and applied
    in raw units (``c T`` is ``c t + (c - 1) mean / sd`` once scaled; ``offset = mean / sd``).
    Pixels get independent paths because the simulated world has no interference: a
    field-wide coherent intervention would teach the network to spread a cell's response over
    its neighbours. The draws do not depend on the frame's data, so each regression still
    targets the G-formula at the drawn path.

    ``t (B, k, H, W)``: the batch's scaled factual context paths; ``valid (B, H, W)``;
    ``step (B,)``. Draws come from ``generator`` (on the CPU) or torch's default generator.
    """
    batch, k, height, width = t.shape
    full = (step >= k - 1).to(valid.dtype)[:, None, None]
    weights = (valid * full).flatten()
    if not bool(weights.sum() > 0):  # no frame of the batch has a full context in its window
        weights = valid.flatten()
    n = batch * height * width
    draw_device = "cpu" if generator is not None else t.device
    pick = torch.multinomial(
        weights.to(draw_device, torch.float64), n, replacement=True, generator=generator
    ).to(t.device)
    u = torch.rand(n, generator=generator, device=draw_device).to(t.device, t.dtype)
    factor = torch.exp((2.0 * u - 1.0) * math.log(_DONOR_SCALE))[:, None]
    pixels = t.permute(0, 2, 3, 1).reshape(n, k)  # (B H W, k): every pixel's context path
    donor = pixels[pick] * factor + (factor - 1.0) * offset
    return donor.reshape(batch, height, width, k).permute(0, 3, 1, 2)


def _head(out: torch.Tensor, look_ahead: torch.Tensor) -> torch.Tensor:
    """Pick head ``look_ahead[b]`` of ``out (B, k + 1, H, W)`` per frame: ``(B, H, W)``."""
    index = look_ahead[:, None, None, None].expand(-1, 1, *out.shape[2:])
    return out.gather(1, index).squeeze(1)


# --------------------------------------------------------------------------------------------
# The network


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ELU(),
    )


class UNet(nn.Module):
    """A two-level U-Net with per-pixel G-computation heads.

    ``forward(z)`` with ``z (B, in_channels, H, W)`` returns ``(B, n_heads, H, W)``. Pooling
    rounds up and upsampling matches the skip connection's size, so any ``H × W`` works,
    1 × 1 included (then every convolution reduces to its centre tap).
    """

    def __init__(self, in_channels: int, width: int, n_heads: int) -> None:
        super().__init__()
        self.enc0 = _double_conv(in_channels, width)
        self.enc1 = _double_conv(width, 2 * width)
        self.enc2 = _double_conv(2 * width, 4 * width)
        self.dec1 = _double_conv(6 * width, 2 * width)
        self.dec0 = _double_conv(3 * width, width)
        self.heads = nn.Sequential(
            nn.Conv2d(width, width, 1), nn.ELU(), nn.Conv2d(width, n_heads, 1)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(z)
        e1 = self.enc1(F.max_pool2d(e0, 2, ceil_mode=True))
        e2 = self.enc2(F.max_pool2d(e1, 2, ceil_mode=True))
        d1 = self.dec1(torch.cat([F.interpolate(e2, size=e1.shape[-2:]), e1], 1))
        d0 = self.dec0(torch.cat([F.interpolate(d1, size=e0.shape[-2:]), e0], 1))
        return self.heads(d0)


# --------------------------------------------------------------------------------------------
# The estimator


class GSTUNet(MemberEnsemble, BaseEstimator):
    """GST-UNet baseline: U-Net over the grid, iterative G-computation, cell-bootstrap intervals.

    See the module docstring for the equations, how units are placed on the grid (``X`` as a
    DataArray with ``cell_y``/``cell_x``/``start`` coords on the unit dim) and the departures
    from the paper. Plain arrays work too, as independent pixels (``spatial_ = False``).

    Parameters
    ----------
    seed : int
        Seeds initialisation, splits, batches, the drawn intervention paths and the bootstrap.
    context : int
        k: steps of temporal context stacked as channels, and the G-computation horizon. The
        default, 10, is the ``arctic`` world's response length (its SIT responds to the last
        10 days of treatment), so the context holds the whole response memory.
    width : int
        Channels of the U-Net's first level (then 2×, 4×).
    n_bootstrap : int
        Cell-bootstrap refits for intervals: 0 (point effects only) or >= 2. Fitting costs
        ``1 + n_bootstrap`` trainings.
    cell_dropout : float in [0, 1)
        Largest share of the units of a training frame hidden from inputs and loss (the share
        is drawn uniformly on ``[0, cell_dropout]`` per frame); only on a grid.
    transductive : bool
        On a grid, fill prediction frames with the training units of the same windows (same
        ``start`` and length) under their factual treatment, so the U-Net sees the whole
        grid as in training; only the query units' outputs return. False: prediction frames
        hold the query units alone. See the module docstring.
    training : TrainingConfig or dict, optional
        Settings of the shared training loop; the units it splits and batches are frames
        (window start × step).

    Attributes
    ----------
    spatial_ : bool
        Whether ``fit`` received a grid (False: units were independent pixels).
    known_ : dict of tensors
        On a grid, the training units' ``start``, ``row``, ``col`` (n,), scaled covariates
        ``x`` (n, S, p) and treatments ``t`` (n, S) and the training ``grid`` (H, W): what
        prediction frames are filled with. Empty for pixels.
    models_ : list of UNet
        The full-data fit, then the bootstrap refits.
    history_ : list of dict
        Per epoch of the full-data fit: ``train_loss`` (mean squared G-computation residual
        over all heads), ``val_loss`` (the factual validation loss on held-out frames: mean
        squared error of every head's prediction of the observed outcome under the factual
        path), ``lr``, ``seconds``.
    histories_ : list of list of dict
        One history per model.
    """

    name: ClassVar[str] = "gst-unet"
    #: fast settings for the test suite (about a second a fit)
    test_params: ClassVar[dict[str, Any]] = {
        "context": 3,
        "width": 4,
        "n_bootstrap": 2,
        "training": {"max_epochs": 2, "batch_size": 128, "progress": False},
    }
    tags: ClassVar[dict[str, bool]] = {
        "intervals": True,
        "needs_covariates": False,
        "sequence": True,
    }
    no_bootstrap_reason: ClassVar[str] = (
        "it predicts whole grid frames, and a resample with a cell drawn twice would put two "
        "units on one pixel; it bootstraps cells itself (n_bootstrap >= 2 refits weighting "
        "cells), which is its interval."
    )
    no_parametric_reason: ClassVar[str] = (
        "its intervals are already a cell bootstrap (n_bootstrap >= 2 refits weighting "
        "cells), and each parametric refit would refit that bootstrap too."
    )

    def __init__(
        self,
        *,
        seed: int = 0,
        context: int = 10,
        width: int = 16,
        n_bootstrap: int = 5,
        cell_dropout: float = 0.5,
        transductive: bool = True,
        training: TrainingConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.seed = seed
        self.context = context
        self.width = width
        self.n_bootstrap = n_bootstrap
        self.cell_dropout = cell_dropout
        self.transductive = transductive
        self.training = training

    # ---- the grid, read from the caller's X ---------------------------------------------
    def _input_context(self, X: Any) -> contextlib.AbstractContextManager[None]:
        return self._grid_from(X)

    def _no_interval_message(self) -> str:
        return (
            f"this {type(self).__name__} was fitted with n_bootstrap={self.n_bootstrap}, so it "
            f"has no intervals; refit with n_bootstrap >= 2 (default 5)."
        )

    @contextmanager
    def _grid_from(self, X: Any) -> Iterator[None]:
        # The base class validates X into a plain array before calling the hooks; the grid
        # coordinates are read from the caller's X here and held for the length of the call.
        self._grid_input = X
        try:
            yield
        finally:
            del self._grid_input

    def _layout(self, n_units: int, *, fitting: bool) -> GridLayout:
        if not fitting and not self.spatial_:
            return GridLayout.pixels(n_units)  # fitted as pixels: predicted as pixels
        layout = grid_layout(getattr(self, "_grid_input", None))
        if fitting:
            return layout if layout is not None else GridLayout.pixels(n_units)
        if layout is None:
            raise InputError(
                f"this {type(self).__name__} was fitted on a grid, so it needs to know where "
                f"the units are: pass X as a DataArray (unit, step, feature) with integer "
                f"'cell_y', 'cell_x' and 'start' coordinates on the unit dim "
                f"(SequenceSet.X_xarray(index=True)); got "
                f"{type(getattr(self, '_grid_input', None)).__name__} without them."
            )
        return layout

    # ---- checks --------------------------------------------------------------------------
    def _check_params(self) -> TrainingConfig:
        for key in ("context", "width"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"{key} must be an integer >= 1; got {value!r}.")
        b = self.n_bootstrap
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 0 or b == 1:
            raise ConfigError(
                f"n_bootstrap must be 0 (point effects only) or an integer >= 2 (refits for "
                f"intervals); got {b!r}."
            )
        drop = self.cell_dropout
        if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop < 1:
            raise ConfigError(f"cell_dropout must be a number in [0, 1); got {drop!r}.")
        if not isinstance(self.transductive, bool | np.bool_):
            raise ConfigError(f"transductive must be true or false; got {self.transductive!r}.")
        return TrainingConfig.coerce(self.training)

    # ---- fit -----------------------------------------------------------------------------
    def _build(self) -> UNet:
        k = int(self.context)
        return UNet(k * (self.n_features_in_ + 4) + 1, int(self.width), k + 1)

    def _fit(self, data: ValidatedData) -> None:
        training = self._check_params()
        assert data.Y is not None
        if np.ptp(data.T) <= 1e-12 * max(1.0, float(np.abs(data.T).max())):
            raise InputError(
                "the treatment T is constant across all units and steps, so there is no "
                "variation to learn an effect from. Pass a treatment that varies between units "
                "or steps."
            )
        n_units = data.T.shape[0]
        layout = self._layout(n_units, fitting=True)
        self.spatial_ = layout.spatial
        # every frame is fed once per head: cap the default batch by pixels on large grids
        per_frame = layout.height * layout.width * (int(self.context) + 1)
        if training.batch_size is None and _PIXEL_BUDGET // per_frame < 256:
            training = replace(training, batch_size=max(1, _PIXEL_BUDGET // per_frame))
        x = self.x_scaler_.transform(data.X)
        t = self.t_scaler_.transform(data.T)
        y = self.y_scaler_.transform(data.Y)
        frames = _frames(layout, x, t, y, int(self.context))
        if layout.spatial:  # what prediction frames are filled with (transductive, see above)
            self.known_ = {
                "start": torch.as_tensor(layout.start, dtype=torch.int64),
                "row": torch.as_tensor(layout.row, dtype=torch.int64),
                "col": torch.as_tensor(layout.col, dtype=torch.int64),
                "x": torch.as_tensor(x, dtype=torch.float32),
                "t": torch.as_tensor(t, dtype=torch.float32),
                "grid": torch.as_tensor([layout.height, layout.width], dtype=torch.int64),
            }
        else:
            self.known_ = {}
        clusters, cluster_of_unit = np.unique(layout.cluster, return_inverse=True)
        self.models_: list[nn.Module] = []
        self.histories_: list[list[dict[str, float]]] = []
        for b in range(1 + int(self.n_bootstrap)):
            if b > 0:  # cluster bootstrap: resample cells with replacement -> counts as weights
                rng = np.random.default_rng([int(self.seed), b])
                n_c = len(clusters)
                counts = rng.multinomial(n_c, np.full(n_c, 1.0 / n_c))[cluster_of_unit]
                weight = torch.as_tensor(layout.mask(counts), dtype=torch.float32)
                frames["weight"] = weight.repeat_interleave(data.T.shape[1], dim=0)
            net, history = fit_module(
                self._build,
                frames,
                loss_fn=self._loss_fn,
                val_fn=self._val_fn,
                config=training,
                seed=int(self.seed) + b,
                description=f"GST-UNet {'fit' if b == 0 else f'bootstrap {b}/{self.n_bootstrap}'}",
            )
            self.models_.append(net.cpu().eval())
            self.histories_.append(history)
        self.history_ = self.histories_[0]

    def _g_residuals(
        self,
        net: nn.Module,
        batch: dict[str, torch.Tensor],
        look_ahead: torch.Tensor,
        donor: torch.Tensor | None,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Residuals ``(B, H, W)`` of head ``d`` against its G-computation target, or with
        ``donor=None`` against the observed outcome under the factual path (the factual
        validation loss)."""
        x, t, y, step = batch["x"], batch["t"], batch["y"], batch["step"]
        k = t.shape[1]
        if donor is None:
            pred = _head(net(_network_input(x, t, y, step, valid, look_ahead)), look_ahead)
            return pred - batch["y_now"]
        pos = torch.arange(k, device=t.device)[None, :]
        factual = (pos < (k - look_ahead)[:, None])[:, :, None, None]  # steps up to the anchor
        path = torch.where(factual, t, donor)
        pred = _head(net(_network_input(x, path, y, step, valid, look_ahead)), look_ahead)
        with torch.no_grad():  # pseudo-outcome: head d - 1, one more outcome revealed
            later = look_ahead - 1
            z_next = _network_input(x, path, y, step, valid, later)
            pseudo = _head(net(z_next), later.clamp(min=0))
        target = torch.where((look_ahead == 0)[:, None, None], batch["y_now"], pseudo)
        return pred - target

    def _all_heads_loss(
        self,
        net: nn.Module,
        batch: dict[str, torch.Tensor],
        donor: torch.Tensor | None,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Weighted mean squared residual of every head ``d = 0..min(k, s)`` on every frame
        (``donor=None``: factual residuals, see ``_g_residuals``).

        All heads see every frame (rather than one drawn head per frame): on a grid a batch
        holds few frames, and a head drawn per frame left each regression of the chain with a
        handful of them per step.
        """
        k = int(self.context)
        step = batch["step"]
        look_ahead = torch.arange(k + 1, device=step.device).repeat(step.shape[0])

        def rep(a: torch.Tensor) -> torch.Tensor:
            return a.repeat_interleave(k + 1, dim=0)

        repeated = {name: rep(batch[name]) for name in ("x", "t", "y", "y_now", "step")}
        donors = None if donor is None else rep(donor)
        residual = self._g_residuals(net, repeated, look_ahead, donors, rep(valid))
        feasible = (repeated["step"] >= look_ahead)[:, None, None].to(valid.dtype)
        mask = rep(valid * batch["weight"]) * feasible
        return (mask * residual.pow(2)).sum() / mask.sum().clamp(min=1e-8)

    def _loss_fn(
        self, net: nn.Module
    ) -> Callable[[dict[str, torch.Tensor], int], tuple[torch.Tensor, dict[str, float]]]:
        spatial, drop = self.spatial_, float(self.cell_dropout)
        offset = float(self.t_scaler_.mean[0] / self.t_scaler_.scale[0])

        def loss_fn(
            batch: dict[str, torch.Tensor], epoch: int
        ) -> tuple[torch.Tensor, dict[str, float]]:
            del epoch
            # random draws come from the torch generator that fit_module seeds and restores
            t, valid = batch["t"], batch["valid"]
            donor = _donor_paths(t, valid, batch["step"], offset=offset)
            if spatial and drop > 0:
                size = t.shape[0]
                keep_share = 1.0 - drop * torch.rand(size, 1, 1, device=t.device)
                valid = valid * (torch.rand_like(valid) < keep_share).to(valid.dtype)
            loss = self._all_heads_loss(net, batch, donor, valid)
            return loss, {"loss": loss.item()}

        return loss_fn

    def _val_fn(self, net: nn.Module) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        def val_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            # factual validation loss: every head d predicts the observed y_s from the history
            # up to its anchor s - d and the factual path after it, against y_s itself. The
            # G-computation residual is no measure of progress: its targets for d >= 1 are the
            # network's own outputs, small while the chain of regressions is still flat, so it
            # rises as the heads learn and early stopping on it kept near-constant heads.
            return self._all_heads_loss(net, batch, None, batch["valid"])

        return val_fn

    def _with_known_units(
        self, layout: GridLayout, x: np.ndarray, t: np.ndarray
    ) -> tuple[GridLayout, np.ndarray, np.ndarray]:
        """The query units followed by the training units that share their frames.

        Every training unit with the start of a query frame and the query's window length,
        on a pixel no query unit holds, is placed on that frame with its factual covariates
        and treatment (scaled), on a grid at least as large as the training grid. Returns the
        combined layout and ``x (n_all, S, p)``, ``t (n_all, S)``; the query units come first.
        """
        known = self.known_
        if not (self.transductive and layout.spatial and known):
            return layout, x, t
        height, width = (int(v) for v in known["grid"])
        height, width = max(height, layout.height), max(width, layout.width)
        start, row, col = (known[name].numpy() for name in ("start", "row", "col"))
        cells = height * width
        query_key = layout.start * cells + layout.row * width + layout.col
        known_key = start * cells + row * width + col
        same_window = known["t"].shape[1] == t.shape[1]
        take = np.isin(start, layout.start) & ~np.isin(known_key, query_key) & same_window
        combined = GridLayout.place(
            np.concatenate([layout.start, start[take]]),
            np.concatenate([layout.row, row[take]]),
            np.concatenate([layout.col, col[take]]),
            height=height,
            width=width,
        )
        x_all = np.concatenate([x, known["x"].numpy()[take].astype(x.dtype)])
        t_all = np.concatenate([t, known["t"].numpy()[take].astype(t.dtype)])
        return combined, x_all, t_all

    @torch.no_grad()
    def _member_predictions(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Scaled predictions of every model under path ``T``: ``(n_models, n, S)``.

        On a grid the frames also hold the training units of the same windows under their
        factual treatment (see ``transductive``); only the query units' predictions return.
        """
        n_query = T.shape[0]
        query = self._layout(n_query, fitting=False)
        k, steps = int(self.context), T.shape[1]
        layout, x, t = self._with_known_units(
            query, self.x_scaler_.transform(X), self.t_scaler_.transform(T)
        )
        frames = _frames(layout, x, t, None, k)
        look_ahead = frames["step"].clamp(max=k)  # anchor at the window start: no outcome
        chunk = max(1, _PIXEL_BUDGET // (layout.height * layout.width))
        out = np.empty((len(self.models_), layout.n_groups * steps, layout.height, layout.width))
        for start in range(0, out.shape[1], chunk):
            sl = slice(start, start + chunk)
            z = _network_input(
                frames["x"][sl],
                frames["t"][sl],
                frames["y"][sl],
                frames["step"][sl],
                frames["valid"][sl],
                look_ahead[sl],
            )
            for m, net in enumerate(self.models_):
                out[m, sl] = _head(net(z), look_ahead[sl]).numpy()
        grids = out.reshape(len(self.models_), layout.n_groups, steps, *out.shape[2:])
        return np.stack([layout.from_grid(g)[:n_query] for g in grids])

    # ---- persistence ---------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {**self._members_state(), "spatial": self.spatial_, "known": self.known_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.spatial_ = bool(state["spatial"])
        if "known" not in state:
            from kgcm.errors import DataError

            raise DataError(
                "this GST-UNet model file was saved before prediction frames carried the "
                "training units (it stores none of them); refit it with this kgcm version."
            )
        self.known_ = dict(state["known"])
        self._load_members(state)
