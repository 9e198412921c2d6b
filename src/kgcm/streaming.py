"""Training units streamed from a prepared store, block by block, never the whole store.

:class:`StreamedUnits` is a PyTorch ``IterableDataset`` over the (cell, window) units that
:func:`kgcm.sequences.to_sequences` would cut from a dataset, read lazily from a Zarr store
written by ``kgcm prepare`` (or any dask-backed ``xarray.Dataset``):

- **Blocks.** The grid is cut into spatial tiles (by default the store's ``y``/``x`` chunks)
  and the window starts into runs of ``starts_per_block`` (by default as many as one time chunk
  holds). A block is one tile over the steps its windows cover; only that slice is loaded
  (dask reads the chunks it touches), cut with ``to_sequences`` and its units yielded. The
  units of all blocks are exactly ``to_sequences``'s, each once.
- **Work split.** Blocks are dealt round-robin over ``world_size x num_workers`` shards: the
  DataLoader's workers (``torch.utils.data.get_worker_info``) within each process of a
  distributed run (``rank``/``world_size``, by default from ``torch.distributed`` when it is
  initialised). No unit is read twice in an epoch; a shard may get one block fewer.
- **Shuffling.** With ``shuffle``, the block order is a permutation drawn from ``seed`` and the
  epoch (:meth:`set_epoch`, as ``DistributedSampler``), and units are shuffled within a buffer
  of ``buffer_blocks`` blocks, so a batch mixes cells and periods from several blocks.
- **Memory** is bounded by ``buffer_blocks`` blocks: about ``buffer_blocks x tile cells x
  (block steps) x (variables) x 8 bytes`` for the loaded fields, plus the units cut from them
  (``window / stride`` times the block's steps per cell and variable).
- **Scalers** (:meth:`fit_scalers`) come from one streamed pass: per-feature means and standard
  deviations merged block by block (Chan's parallel update), equal to fitting
  :class:`kgcm.estimators.base.Standardizer` on the materialised units.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.utils.data import IterableDataset

from kgcm.errors import ConfigError, InputError, NoCompleteUnits
from kgcm.sequences import SequenceSet, to_sequences

__all__ = ["Block", "StreamedUnits", "UnitBatches"]


@dataclass(frozen=True)
class Block:
    """One tile of the grid over the steps of a run of window starts."""

    steps: slice  # the steps loaded: from the first start to the last start's window end
    y: slice
    x: slice


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations per column (Chan et al.'s merge)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, a: np.ndarray) -> _Moments:
        flat = a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1])
        mean = flat.mean(axis=0) if len(flat) else np.zeros(a.shape[-1])
        return cls(len(flat), mean, ((flat - mean) ** 2).sum(axis=0))

    def merge(self, other: _Moments) -> _Moments:
        n = self.n + other.n
        if not n:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta**2 * self.n * other.n / n
        return _Moments(n, mean, m2)


class StreamedUnits(IterableDataset):
    """(cell, window) units of a prepared store, streamed block by block (module docstring).

    Parameters
    ----------
    data : path of a store written by ``kgcm prepare``, or a (dask-backed) ``xarray.Dataset``
        on (time, y, x).
    outcome, treatment, covariates, static, calendar, window, stride :
        as :func:`kgcm.sequences.to_sequences`; units holding NaN (land) are dropped.
    tile : (rows, columns) of a spatial tile; default the store's ``y``/``x`` chunks (the
        whole grid when unchunked).
    starts_per_block : window starts per block; default as many as one time chunk holds.
    shuffle, seed, buffer_blocks : block order and unit order (module docstring).
    rank, world_size : this process's place in a distributed run; default from
        ``torch.distributed`` when initialised, else 0 and 1.
    scalers : optional ``{"x", "t", "y"}`` standardisers (:meth:`fit_scalers`) applied to what
        is yielded.

    Each item is a dict of float32 tensors ``x (window, features)``, ``t (window,)``,
    ``y (window,)`` and int64 ``cell (2,)`` and ``start ()``.
    """

    def __init__(
        self,
        data: str | os.PathLike[str] | xr.Dataset,
        *,
        outcome: str = "sithick",
        treatment: str = "treatment",
        covariates: Sequence[str] = ("zos", "uo", "vo"),
        static: Sequence[str] = ("lat",),
        calendar: bool = True,
        window: int = 30,
        stride: int | None = None,
        tile: tuple[int, int] | None = None,
        starts_per_block: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        buffer_blocks: int = 4,
        rank: int | None = None,
        world_size: int | None = None,
        scalers: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # a path is opened again in each loader worker (see __getstate__)
        self.source = data if isinstance(data, xr.Dataset) else os.fspath(data)
        self._opened: xr.Dataset | None = data if isinstance(data, xr.Dataset) else None
        if not isinstance(window, int) or window < 1:
            raise InputError(f"window must be an integer >= 1; got {window!r}.")
        self.stride = window if stride is None else stride
        if not isinstance(self.stride, int) or self.stride < 1:
            raise InputError(f"stride must be an integer >= 1; got {stride!r}.")
        for dim in ("time", "y", "x"):
            if dim not in self.ds.dims:
                raise InputError(
                    f"streamed units need a dataset on (time, y, x); it has dims "
                    f"{dict(self.ds.sizes)}. Prepare a gridded store with kgcm prepare."
                )
        if self.ds.sizes["time"] < window:
            raise InputError(f"the series has {self.ds.sizes['time']} steps, fewer than {window}.")
        self.options = {
            "outcome": outcome, "treatment": treatment, "covariates": tuple(covariates),
            "static": tuple(static), "calendar": calendar, "window": window,
            "stride": self.stride, "drop_incomplete": True,
        }  # fmt: skip
        self.window = window
        self.tile = self._tile(tile)
        self.starts_per_block = self._starts_per_block(starts_per_block)
        if not isinstance(buffer_blocks, int) or buffer_blocks < 1:
            raise ConfigError(f"buffer_blocks must be an integer >= 1; got {buffer_blocks!r}.")
        self.shuffle, self.seed, self.buffer_blocks = shuffle, seed, buffer_blocks
        self.rank, self.world_size = rank, world_size
        self.scalers = scalers
        self._epoch = 0
        # with persistent loader workers the epoch is read from memory shared with them
        self.shared_epoch: Any | None = None
        self.keep: tuple[int, ...] | None = None  # the block indices used (None: all)
        # an outcome design (kgcm.experiments.outcome.OutcomeDesign, no climatology): units are
        # presented with it (the pre-window state as a covariate, the bounded outcome's
        # coordinate as Y), as kgcm fit presents them in memory
        self.design: Any | None = None
        self.batch_size: int | None = None  # yield batches of this many units (loader(None))

    @property
    def ds(self) -> xr.Dataset:
        """The dataset, opened lazily (dask-backed) on first use in this process."""
        if self._opened is None:
            from kgcm.prepare import open_prepared

            self._opened = open_prepared(self.source)
        return self._opened

    def __getstate__(self) -> dict[str, Any]:
        # a worker process opens the store itself: an open Zarr store's I/O thread does not
        # survive being copied into another process
        state = dict(self.__dict__)
        if not isinstance(self.source, xr.Dataset):
            state["_opened"] = None
        shared = state.get("shared_epoch")
        if shared is not None:
            from multiprocessing.context import get_spawning_popen

            if get_spawning_popen() is None:  # not a loader worker's start: a plain copy
                state["shared_epoch"], state["_epoch"] = None, int(shared.value)
        return state

    def loader(self, batch_size: int | None, num_workers: int = 0, **kwargs: Any) -> Any:
        """A ``DataLoader`` over these units: batches of ``batch_size`` (None when the units
        are batched already, ``self.batch_size``), ``num_workers`` processes started with
        ``spawn`` (Zarr's I/O thread does not survive ``fork``). The loader draws its workers'
        seeds from a generator of its own, never from torch's global one, so how many workers
        read (and whether they are kept across epochs) leaves a fit's random numbers alone."""
        if num_workers:
            kwargs.setdefault("multiprocessing_context", "spawn")
        kwargs.setdefault("generator", torch.Generator().manual_seed(int(self.seed)))
        return torch.utils.data.DataLoader(
            self, batch_size=batch_size, num_workers=num_workers, **kwargs
        )

    # ---- layout ---------------------------------------------------------------------------
    def _chunk(self, dim: str) -> int:
        chunks = self.ds[self.options["outcome"]].chunksizes.get(dim)
        return int(chunks[0]) if chunks else int(self.ds.sizes[dim])

    def _tile(self, tile: tuple[int, int] | None) -> tuple[int, int]:
        if tile is None:
            return self._chunk("y"), self._chunk("x")
        if (
            not isinstance(tile, tuple | list)
            or len(tile) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in tile)
        ):
            raise ConfigError(f"tile must be (rows, columns), integers >= 1; got {tile!r}.")
        return int(tile[0]), int(tile[1])

    def _starts_per_block(self, value: int | None) -> int:
        if value is None:
            return max(1, self._chunk("time") // self.stride)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"starts_per_block must be an integer >= 1; got {value!r}.")
        return value

    def blocks(self) -> list[Block]:
        """Every block, in a fixed order (tiles row-major, then runs of starts)."""
        nt, ny, nx = (self.ds.sizes[d] for d in ("time", "y", "x"))
        starts = np.arange(0, nt - self.window + 1, self.stride)
        runs = [
            starts[i : i + self.starts_per_block]
            for i in range(0, len(starts), self.starts_per_block)
        ]
        ty, tx = self.tile
        every = [
            Block(
                slice(int(run[0]), int(run[-1]) + self.window),
                slice(y, min(y + ty, ny)),
                slice(x, min(x + tx, nx)),
            )
            for y in range(0, ny, ty)
            for x in range(0, nx, tx)
            for run in runs
        ]
        return every if self.keep is None else [every[i] for i in self.keep]

    def hold_out(self, fraction: float, seed: int = 0) -> tuple[StreamedUnits, StreamedUnits]:
        """``(train, held_out)``: the spatial tiles split at random, ``fraction`` of them (at
        least one) held out with every block they hold, so the two share no cell."""
        if not 0 < fraction < 1:
            raise ConfigError(f"the held-out fraction must be in (0, 1); got {fraction!r}.")
        blocks = self.blocks()
        tiles = sorted({(b.y.start, b.x.start) for b in blocks})
        if len(tiles) < 2:
            raise InputError(
                f"holding out tiles needs at least 2 tiles; the grid is one tile of "
                f"{self.tile}. Pass a smaller tile=(rows, columns)."
            )
        rng = np.random.default_rng((seed, 7))
        n_out = min(len(tiles) - 1, max(1, round(fraction * len(tiles))))
        out = {tiles[i] for i in rng.choice(len(tiles), n_out, replace=False)}
        index = range(len(blocks)) if self.keep is None else self.keep
        pairs = list(zip(index, blocks, strict=True))
        train, held = copy.copy(self), copy.copy(self)
        train.keep = tuple(i for i, b in pairs if (b.y.start, b.x.start) not in out)
        held.keep = tuple(i for i, b in pairs if (b.y.start, b.x.start) in out)
        return train, held

    def fingerprint(self) -> str:
        """What names these units: the source, the options, the layout and the blocks kept
        (checkpoints of a streamed fit are keyed by it)."""
        source = self.source if isinstance(self.source, str) else "dataset"
        ds = self.ds
        sizes = tuple(sorted(ds.sizes.items()))
        stamp = str(ds["time"].values[0]) + str(ds["time"].values[-1]) if "time" in ds else ""
        return repr((source, sorted(self.options.items()), self.tile, self.starts_per_block,
                     self.keep, sizes, stamp, self.seed, self.shuffle, self.buffer_blocks,
                     self.batch_size, self.design))  # fmt: skip

    def units(self, block: Block, *, before: bool = False, raw: bool = False) -> SequenceSet | None:
        """The units of one block with grid cells and starts of the whole store (None when
        every unit of the block holds NaN, e.g. an all-land tile). ``before`` also keeps each
        window's pre-window outcome (``Y_before``): one stride before the block is read too,
        so the cut stays on the store's grid of starts and the block's first window has its
        day before (the extra window cut there has none and is dropped). With a ``design``
        the units are presented with it unless ``raw``."""
        design = None if raw else self.design
        if design is not None and design.climatology is not None:
            raise ConfigError(
                "streamed units take an outcome design without a day-of-year climatology "
                "(it needs every cell's days); fit with climatology = 'off'."
            )
        before = before or bool(design is not None and design.prewindow_state)
        low = max(0, block.steps.start - self.stride) if before else block.steps.start
        part = self.ds.isel(time=slice(low, block.steps.stop), y=block.y, x=block.x).load()
        try:
            seqs = to_sequences(part, **self.options, before=before)
        except NoCompleteUnits:
            return None
        if low < block.steps.start:
            seqs = seqs.subset(np.flatnonzero(seqs.starts + low >= block.steps.start))
            if not seqs.n_units:
                return None
        offset = np.array([block.y.start, block.x.start])
        seqs = replace(seqs, cells=seqs.cells + offset, starts=seqs.starts + low)
        if design is None:
            return seqs
        X = design.covariates(seqs, np.zeros(0, dtype=np.int64))  # no climatology: no days
        return replace(seqs, X=X.values, feature_names=tuple(str(f) for f in X["feature"].values),
                       Y=design.target(seqs, np.zeros(0, dtype=np.int64)))  # fmt: skip

    # ---- the work split -------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self.shared_epoch.value) if self.shared_epoch is not None else self._epoch

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose block order and shuffle to draw (call before each epoch)."""
        self._epoch = int(epoch)
        if self.shared_epoch is not None:
            self.shared_epoch.value = int(epoch)

    def _shard(self) -> tuple[int, int]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank, world = dist.get_rank(), dist.get_world_size()
            else:
                rank, world = 0, 1
        info = torch.utils.data.get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return rank * workers + worker, world * workers

    def my_blocks(self) -> list[Block]:
        """This shard's blocks for the current epoch, in the order they are read."""
        blocks = self.blocks()
        order = np.arange(len(blocks))
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(len(blocks))
        shard, shards = self._shard()
        return [blocks[i] for i in order[shard::shards]]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        shard, _ = self._shard()
        rng = np.random.default_rng((self.seed, self.epoch, shard, 1))
        buffer: list[SequenceSet] = []
        carry: dict[str, np.ndarray] | None = None
        for block in self.my_blocks():
            seqs = self.units(block)
            if seqs is not None:
                buffer.append(seqs)
            if len(buffer) >= self.buffer_blocks:
                carry = yield from self._emit(buffer, rng, carry, last=False)
                buffer = []
        yield from self._emit(buffer, rng, carry, last=True)

    def _emit(
        self,
        buffer: list[SequenceSet],
        rng: np.random.Generator,
        carry: dict[str, np.ndarray] | None,
        *,
        last: bool,
    ) -> Generator[dict[str, torch.Tensor], None, dict[str, np.ndarray] | None]:
        """Yield the buffer's units shuffled: one by one, or with ``batch_size`` set, in
        batches, the remainder carried into the next buffer (yielded at the ``last``)."""
        arrays = {
            "x": [s.X for s in buffer], "t": [s.T for s in buffer], "y": [s.Y for s in buffer],
            "cell": [s.cells for s in buffer], "start": [s.starts for s in buffer],
        }  # fmt: skip
        if self.scalers is not None:
            for key in ("x", "t", "y"):
                arrays[key] = [self.scalers[key].transform(a) for a in arrays[key]]
        parts = {k: ([carry[k]] if carry is not None else []) + v for k, v in arrays.items()}
        if not parts["y"]:
            return None
        data = {k: np.concatenate(v) for k, v in parts.items()}
        n = len(data["y"])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        data = {k: v[order] for k, v in data.items()}
        kinds = {"cell": torch.int64, "start": torch.int64}
        if self.batch_size is None:
            for i in range(n):
                yield {k: torch.as_tensor(v[i], dtype=kinds.get(k, torch.float32))
                       for k, v in data.items()}  # fmt: skip
            return None
        size = self.batch_size
        full = n if last else n - n % size
        for start in range(0, full, size):
            yield {k: torch.as_tensor(v[start : start + size], dtype=kinds.get(k, torch.float32))
                   for k, v in data.items()}  # fmt: skip
        return {k: v[full:] for k, v in data.items()} if full < n else None

    # ---- scalers from one streamed pass ---------------------------------------------------
    def fit_scalers(self) -> dict[str, Any]:
        """Standardisers of X (per feature), T and Y from one pass over every block (all
        shards), as :class:`~kgcm.estimators.base.Standardizer` fits them in memory."""
        from kgcm.estimators.base import Standardizer

        moments: dict[str, _Moments | None] = {"x": None, "t": None, "y": None}
        for block in self.blocks():
            seqs = self.units(block)
            if seqs is None:
                continue
            for key, a in (("x", seqs.X), ("t", seqs.T[..., None]), ("y", seqs.Y[..., None])):
                m = _Moments.of(a)
                current = moments[key]
                moments[key] = m if current is None else current.merge(m)
        if any(m is None or not m.n for m in moments.values()):
            raise InputError("every unit of the store holds NaN: nothing to fit scalers on.")
        out = {}
        for key, m in moments.items():
            assert m is not None
            std = np.sqrt(m.m2 / m.n)
            out[key] = Standardizer.from_moments(m.mean, std)
        return out


class UnitBatches:
    """Training batches of streamed units for :func:`kgcm.estimators.training.fit_module`:
    ``batches(epoch)`` and ``validation()`` yield dicts of ``x``, ``t``, ``y`` tensors scaled
    by the units' scalers, read by a DataLoader of ``num_workers`` spawned processes.

    The workers are started once per loader (training and validation) and kept for every
    epoch (``persistent_workers``); the epoch reaches them through shared memory, so each
    epoch still draws its own block order and shuffle."""

    def __init__(
        self,
        train: StreamedUnits,
        validation: StreamedUnits,
        *,
        batch_size: int,
        num_workers: int = 0,
    ) -> None:
        if train.scalers is None or validation.scalers is None:
            raise ConfigError("UnitBatches needs units with scalers (StreamedUnits(scalers=...)).")
        self.train, self.val = train, validation
        self.batch_size, self.num_workers = batch_size, num_workers
        self._loaders: dict[str, tuple[StreamedUnits, Any]] = {}

    def _loader(self, role: str, units: StreamedUnits) -> tuple[StreamedUnits, Any]:
        """The loader of ``units`` (made once) and the copy of the units it reads."""
        if role not in self._loaders:
            units = copy.copy(units)
            units.batch_size = self.batch_size  # batched in the dataset: no per-unit collation
            kwargs: dict[str, Any] = {}
            if self.num_workers:
                import multiprocessing

                context = multiprocessing.get_context("spawn")
                units.shared_epoch = context.RawValue("q", units.epoch)
                kwargs = {"persistent_workers": True, "multiprocessing_context": context}
            self._loaders[role] = (units, units.loader(None, self.num_workers, **kwargs))
        return self._loaders[role]

    def _read(
        self, role: str, units: StreamedUnits, epoch: int | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        mine, loader = self._loader(role, units)
        if epoch is not None:
            mine.set_epoch(epoch)
        for batch in loader:
            x = batch["x"]
            if x.shape[-1] == 0:  # the recurrent input needs a column: one of zeros
                x = torch.zeros((*x.shape[:-1], 1), dtype=x.dtype)
            yield {"x": x, "t": batch["t"], "y": batch["y"]}

    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        self.train.set_epoch(epoch)
        return self._read("train", self.train, epoch)

    def validation(self) -> Iterator[dict[str, torch.Tensor]]:
        return self._read("validation", self.val)

    def fingerprint(self) -> str:
        return repr((self.train.fingerprint(), self.val.fingerprint(), self.batch_size))
