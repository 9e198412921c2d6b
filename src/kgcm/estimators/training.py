"""One training loop for every neural estimator.

It owns what every model needs and none should rewrite: device choice, seeding without touching
global random state, a validation split by unit, mini-batches, gradient clipping, a
learning-rate schedule (``ReduceLROnPlateau``), early stopping on the validation loss with the
best weights restored, a progress bar, and a per-epoch record of every loss part
(``history``). A model supplies two functions: the training loss of a batch (a total and its
named parts) and the validation loss of a batch.

Inside a process group (``kgcm fit --nproc N`` or ``torchrun``) the loop trains with PyTorch's
DistributedDataParallel, each process on its share of every batch; inside
``kgcm.distributed.checkpoints(folder)`` it saves its state after every epoch and resumes from
it (:mod:`kgcm.distributed`).

Defaults scale with the data: the batch size grows with the number of units and an epoch is
capped in optimiser steps, so a few hundred units and hundreds of thousands train without
hand tuning.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from kgcm.errors import ConfigError, InputError, did_you_mean

__all__ = [
    "BatchStream",
    "TrainingConfig",
    "fit_module",
    "resolve_device",
    "to_tensor",
    "validation_split",
]

Batch = dict[str, torch.Tensor]
LossFn = Callable[[Batch, int], tuple[torch.Tensor, dict[str, float]]]
ValFn = Callable[[Batch], torch.Tensor]


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of the shared training loop.

    Attributes
    ----------
    max_epochs : int
        Upper bound on passes over the training units.
    batch_size : int or None
        Units per step; None picks ``clip(n_train // 16, 16, 256)``.
    max_steps_per_epoch : int
        Caps an epoch for very many units (a random subset of batches each epoch), so
        validation and early stopping happen regularly.
    learning_rate, weight_decay : float
        Adam settings.
    grad_clip : float
        Max global gradient norm (0 disables).
    patience : int
        Epochs without validation improvement before stopping.
    min_epochs : int
        Epochs before early stopping may trigger (lets warm-ups finish).
    lr_patience, lr_factor : int, float
        ``ReduceLROnPlateau`` settings on the validation loss.
    min_delta : float
        Relative improvement of the validation loss that counts as progress.
    val_fraction : float
        Share of units held out for early stopping (at least one unit; with fewer than 5
        units there is no split and the training loss is monitored).
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    progress : bool or None
        Show a progress bar; None shows it when stderr is a terminal.
    """

    max_epochs: int = 200
    batch_size: int | None = None
    max_steps_per_epoch: int = 200
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    patience: int = 12
    min_epochs: int = 10
    lr_patience: int = 5
    lr_factor: float = 0.5
    val_fraction: float = 0.15
    min_delta: float = 1e-3
    device: str = "auto"
    progress: bool | None = None

    def __post_init__(self) -> None:
        import typing

        hints = typing.get_type_hints(type(self))
        kinds = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = [a for a in typing.get_args(hints[f.name]) or (hints[f.name],)]
            if value is None and type(None) in allowed:
                continue
            base = next(a for a in allowed if a is not type(None))
            ok = isinstance(value, base) and (base in (bool, str) or not isinstance(value, bool))
            if base is float:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok:
                raise ConfigError(
                    f"training.{f.name} must be {kinds[base]} (e.g. {f.default!r}); got {value!r}."
                )
        checks = {
            "max_epochs": self.max_epochs >= 1,
            "batch_size": self.batch_size is None or self.batch_size >= 1,
            "max_steps_per_epoch": self.max_steps_per_epoch >= 1,
            "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0,
            "grad_clip": self.grad_clip >= 0,
            "patience": self.patience >= 1,
            "min_epochs": self.min_epochs >= 0,
            "lr_patience": self.lr_patience >= 0,
            "lr_factor": 0 < self.lr_factor < 1,
            "val_fraction": 0 <= self.val_fraction < 1,
            "min_delta": 0 <= self.min_delta < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"training.{name} has an invalid value {getattr(self, name)!r}.")

    @classmethod
    def coerce(cls, value: TrainingConfig | Mapping[str, Any] | None) -> TrainingConfig:
        """Accept a config, a mapping of fields (unknown keys refused) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                "training must be a TrainingConfig or a dict of its fields; "
                f"got {type(value).__name__}."
            )
        known = {f.name for f in fields(cls)}
        for key in value:
            if key not in known:
                raise ConfigError(
                    f"unknown training setting {key!r}; expected one of {sorted(known)}."
                    f"{did_you_mean(key, known)}"
                )
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto"`` into CUDA when available, else CPU; check explicit devices exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was asked for but CUDA is not available in this torch build "
            f"({torch.__version__}); use device='cpu' or 'auto', or install a CUDA build of torch."
        )
    return dev


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """A float32 tensor of a numpy array (a contiguous copy where needed), as the networks
    take their inputs."""
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)


def validation_split(
    n_units: int, config: TrainingConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The units :func:`fit_module` holds out for validation with ``seed``, and those it trains
    on: ``(val_idx, train_idx)``, long tensors. ``val_idx`` is empty when there is no split
    (``val_fraction = 0`` or fewer than 5 units; the training loss is monitored then)."""
    return _split(n_units, config.val_fraction, torch.Generator().manual_seed(seed))


def _split(
    n_units: int, val_fraction: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    # the first draw of the loop's generator, so the batch order after it stays as it was
    perm = torch.randperm(n_units, generator=gen)
    n_val = round(val_fraction * n_units) if n_units >= 5 else 0
    if val_fraction > 0 and n_units >= 5:
        n_val = max(1, n_val)
    return perm[:n_val], perm[n_val:]


def _auto_batch_size(n_train: int) -> int:
    return int(min(256, max(16, n_train // 16)))


class BatchStream(Protocol):
    """Training data that does not fit in memory (e.g. :class:`kgcm.streaming.UnitBatches`):
    this process's training batches of an epoch, its validation batches, and a fingerprint
    naming the data (checkpoints are keyed by it)."""

    def batches(self, epoch: int) -> Iterable[Batch]: ...

    def validation(self) -> Iterable[Batch]: ...

    def fingerprint(self) -> str: ...


def fit_module(
    build: Callable[[], nn.Module],
    data: Batch | BatchStream,
    *,
    loss_fn: Callable[[nn.Module], LossFn],
    val_fn: Callable[[nn.Module], ValFn],
    config: TrainingConfig,
    seed: int,
    description: str = "training",
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Build a model and train it on ``data`` (tensors with units on the first dim).

    Parameters
    ----------
    build : makes the model; called inside the seeded context, so initial weights follow
        ``seed``.
    data : dict of tensors, each ``(n_units, ...)``; or a :class:`BatchStream`, whose own
        batches and validation units are used (``batch_size`` and ``val_fraction`` are then
        the stream's business; an epoch still stops at ``max_steps_per_epoch``).
    loss_fn : ``module -> ((batch, epoch) -> (loss, parts))``; parts are floats recorded
        per epoch.
    val_fn : ``module -> (batch -> loss)`` on held-out units, without gradients (lower is
        better).
    seed : seeds the weights, the split, the batch order and every random draw inside
        (dropout, sampling) through a forked RNG, so global random state is left as it was.

    Returns
    -------
    (module, history) : the model with the best epoch's weights, in eval mode; one dict per
        epoch with the mean of each loss part (``train_*``), ``val_loss``, ``lr`` and
        ``seconds``.
    """
    from kgcm import distributed as ddp

    rank, size = ddp.world()
    device = ddp.local_device(resolve_device(config.device))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        module = build()
        train_step, validate = loss_fn(module), val_fn(module)
        gen = torch.Generator().manual_seed(seed)
        if isinstance(data, Mapping):
            if size > 1:
                _check_same_data(data, description)
            source: _Source = _InMemory(data, config, gen, device, rank, size)
        else:
            source = _Streamed(data, device)
        module.to(device)
        optimiser = torch.optim.Adam(
            module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser, factor=config.lr_factor, patience=config.lr_patience
        )
        state = _State()
        path = _checkpoint_path(module, data, config, seed, description)
        if path is not None and state.restore(path, module, optimiser, scheduler, gen):
            if state.done:
                module.load_state_dict(state.best)
                module.eval()
                return module, state.history
        objective: Callable[[Batch, int], tuple[torch.Tensor, dict[str, float]]] = train_step
        if size > 1:
            from torch.nn.parallel import DistributedDataParallel

            objective = DistributedDataParallel(
                _Objective(module, train_step),
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        show = config.progress if config.progress is not None else sys.stderr.isatty()
        with _progress(show and rank == 0, description, config.max_epochs) as advance:
            for epoch in range(state.epoch + 1, config.max_epochs):
                started = time.perf_counter()
                module.train()
                sums: dict[str, float] = {}
                steps = 0
                for batch in _together(source.batches(epoch), source.uneven and size > 1):
                    if steps >= config.max_steps_per_epoch:
                        break
                    loss, parts = objective(batch, epoch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"{description}: the loss became {loss.item()} at epoch "
                            f"{epoch}; lower training.learning_rate or check inputs for "
                            "extreme values."
                        )
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.grad_clip:
                        nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
                    optimiser.step()
                    steps += 1
                    for key, value in parts.items():
                        sums[key] = sums.get(key, 0.0) + value
                if steps == 0 and size == 1:
                    raise InputError(f"{description}: the training data gave no batch.")
                total, count = _evaluate(module, source.validation(), validate)
                if size > 1:
                    total, count, sums, steps = _pooled(total, count, sums, steps)
                    if steps == 0:  # the same pooled count on every process: all raise
                        raise InputError(
                            f"{description}: a process of the distributed fit had no training "
                            "batch this epoch; use fewer processes or loader workers, or "
                            "smaller tiles, so every process gets blocks with units."
                        )
                val_loss = total / max(count, 1)
                scheduler.step(val_loss)
                record = {f"train_{k}": v / max(steps, 1) for k, v in sums.items()}
                record.update(
                    epoch=float(epoch),
                    val_loss=val_loss,
                    lr=float(optimiser.param_groups[0]["lr"]),
                    seconds=time.perf_counter() - started,
                )
                state.history.append(record)
                if val_loss < state.best_loss - config.min_delta * abs(state.best_loss) or (
                    state.best is None
                ):
                    state.best_loss, state.best_epoch = val_loss, epoch
                    state.best = copy.deepcopy(module.state_dict())
                advance(epoch, val_loss)
                waited = epoch - state.best_epoch
                stop = epoch + 1 >= config.min_epochs and waited >= config.patience
                state.epoch, state.done = epoch, stop or epoch + 1 == config.max_epochs
                if path is not None:
                    state.save(path, module, optimiser, scheduler, gen)
                if stop:
                    break
        assert state.best is not None  # at least one epoch ran
        module.load_state_dict(state.best)
        module.eval()
        if size > 1:
            _check_in_step(module, description)
    return module, state.history


class _Source(Protocol):
    uneven: bool  # processes of a DDP run may get different numbers of batches

    def batches(self, epoch: int) -> Iterable[Batch]: ...

    def validation(self) -> Iterable[Batch]: ...


class _InMemory:
    """Units held in memory: a validation split by unit, a permutation per epoch, and in a
    DDP run every process's share of each global batch (all get the same number)."""

    uneven = False

    def __init__(
        self,
        data: Mapping[str, torch.Tensor],
        config: TrainingConfig,
        gen: torch.Generator,
        device: torch.device,
        rank: int,
        size: int,
    ) -> None:
        n_units = next(iter(data.values())).shape[0]
        # the first draw of the loop's generator, so the batch order after it stays as it was
        val_idx, train_idx = _split(n_units, config.val_fraction, gen)
        self.train = {k: v[train_idx].to(device) for k, v in data.items()}
        val = {k: v[val_idx].to(device) for k, v in data.items()} if len(val_idx) else self.train
        if size > 1:  # each process validates a share; the sums are pooled
            val = {k: v[rank::size] for k, v in val.items()}
        self.val, self.gen, self.device, self.rank, self.size = val, gen, device, rank, size
        self.n_train = len(train_idx)
        self.batch_size = min(config.batch_size or _auto_batch_size(self.n_train), self.n_train)
        self.steps = min(math.ceil(self.n_train / self.batch_size), config.max_steps_per_epoch)

    def batches(self, epoch: int) -> Iterator[Batch]:
        order = torch.randperm(self.n_train, generator=self.gen).to(self.device)
        for step in range(self.steps):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            if self.size > 1:  # this process's share of the global batch
                if len(idx) < self.size:
                    continue
                idx = idx[self.rank :: self.size]
            yield {k: v[idx] for k, v in self.train.items()}

    def validation(self) -> Iterator[Batch]:
        n = next(iter(self.val.values())).shape[0]
        step = max(self.batch_size, 1024)
        for start in range(0, n, step):
            yield {k: v[start : start + step] for k, v in self.val.items()}


class _Streamed:
    """A :class:`BatchStream`'s batches, moved to the training device."""

    uneven = True

    def __init__(self, stream: BatchStream, device: torch.device) -> None:
        self.stream, self.device = stream, device

    def _moved(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        for batch in batches:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def batches(self, epoch: int) -> Iterator[Batch]:
        return self._moved(self.stream.batches(epoch))

    def validation(self) -> Iterator[Batch]:
        return self._moved(self.stream.validation())


def _together(batches: Iterable[Batch], uneven: bool) -> Iterator[Batch]:
    """``batches``, or in a DDP run whose processes may hold different numbers of batches
    (streamed blocks), only as many as every process has: before each step the processes
    agree (a one-number all-reduce) that each has one, so all take the same steps and their
    weights and optimiser states stay the same."""
    if not uneven:
        yield from batches
        return
    import torch.distributed as dist

    it = iter(batches)
    while True:
        batch = next(it, None)
        flag = torch.tensor([0 if batch is None else 1])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if not int(flag):
            return
        assert batch is not None
        yield batch


def _check_same_data(data: Mapping[str, torch.Tensor], description: str) -> None:
    """In-memory DDP shares each global batch out: every process must hold the same units."""
    import torch.distributed as dist

    n = next(iter(data.values())).shape[0]
    low, high = torch.tensor([n]), torch.tensor([n])
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if int(low) != int(high):
        raise InputError(
            f"{description}: the processes of a distributed fit hold {int(low)} to {int(high)} "
            "units; in memory every process must pass the same units (each trains on its "
            "share of every batch). To give each process its own data, stream it "
            "(fit_stream with kgcm.streaming.StreamedUnits)."
        )


def _check_in_step(module: nn.Module, description: str) -> None:
    """Every process of a DDP run must end with the same weights; a difference means the
    gradients were not averaged (a bug, never a user error), so it stops the run."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1).to("cpu", torch.float64) for p in module.parameters()])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(
            f"{description}: the processes of the distributed fit ended with different weights "
            f"(max difference {float((high - low).max()):.3g}); please report this as a bug."
        )


class _Objective(nn.Module):
    """The training loss of a batch as a module's forward, so DDP can wrap it: gradients of
    every parameter of ``module`` are averaged across processes in the backward pass."""

    def __init__(self, module: nn.Module, step: LossFn) -> None:
        super().__init__()
        self.module = module
        self._step = step

    def forward(self, batch: Batch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self._step(batch, epoch)


def _pooled(
    total: float, count: int, sums: dict[str, float], steps: int
) -> tuple[float, int, dict[str, float], int]:
    """Validation sums, loss-part sums and step counts pooled over the processes of a DDP
    run (a process may have run no step of a streamed epoch)."""
    import torch.distributed as dist

    values = torch.tensor([total, float(count)], dtype=torch.float64)
    dist.all_reduce(values)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (sums, steps))
    pooled: dict[str, float] = {}
    for part, _ in gathered:
        for key, value in part.items():
            pooled[key] = pooled.get(key, 0.0) + value
    return float(values[0]), int(values[1]), pooled, sum(n for _, n in gathered)


def _checkpoint_path(
    module: nn.Module,
    data: Batch | BatchStream,
    config: TrainingConfig,
    seed: int,
    description: str,
) -> Any:
    from kgcm import distributed as ddp

    folder = ddp.checkpoint_folder()
    if folder is None:
        return None
    settings = {k: v for k, v in config.to_dict().items() if k not in ("progress", "device")}
    settings["parameters"] = [tuple(p.shape) for p in module.parameters()]
    named = data if isinstance(data, Mapping) else data.fingerprint()
    return folder / f"{ddp.fit_key(description, seed, settings, named)}.pt"


@dataclass
class _State:
    """What the loop carries from epoch to epoch; all of it goes into a checkpoint."""

    epoch: int = -1
    done: bool = False
    best_loss: float = math.inf
    best_epoch: int = -1
    best: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def save(self, path: Any, module: nn.Module, optimiser: Any, scheduler: Any, gen: Any) -> None:
        """Write the checkpoint (rank 0), with every process's random state (a collective in
        a DDP run: every process calls it)."""
        from kgcm import distributed as ddp

        rank, size = ddp.world()
        rng = _rng_state()
        if size > 1:
            import torch.distributed as dist

            states: list[Any] = [None] * size
            dist.all_gather_object(states, rng)
            rng = {"per_rank": states}
        if rank == 0:
            ddp.save_checkpoint(path, {
                "loop": asdict(self), "module": module.state_dict(),
                "optimiser": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
                "generator": gen.get_state(), "rng": rng,
            })  # fmt: skip

    def restore(
        self, path: Any, module: nn.Module, optimiser: Any, scheduler: Any, gen: Any
    ) -> bool:
        """Load the checkpoint; in a DDP run rank 0 reads it and sends it to the others, so
        all decide alike even without a shared filesystem."""
        from kgcm import distributed as ddp

        rank, size = ddp.world()
        saved = ddp.load_checkpoint(path) if rank == 0 else None
        if size > 1:
            import torch.distributed as dist

            box = [saved]
            dist.broadcast_object_list(box, src=0)
            saved = box[0]
        if saved is None:
            return False
        for key, value in saved["loop"].items():
            setattr(self, key, value)
        module.load_state_dict(saved["module"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        rng = saved["rng"]
        if "per_rank" in rng:
            states = rng["per_rank"]
            rng = states[rank] if len(states) == size else states[0]
        _set_rng_state(rng)
        return True


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@torch.no_grad()
def _evaluate(module: nn.Module, batches: Iterable[Batch], val_fn: ValFn) -> tuple[float, int]:
    """Sum of the validation loss over units, and their count."""
    module.eval()
    total, count = 0.0, 0
    for batch in batches:
        size = next(iter(batch.values())).shape[0]
        total += float(val_fn(batch)) * size
        count += size
    return total, count


class _progress:
    """A rich progress bar over epochs, or nothing."""

    def __init__(self, show: bool, description: str, total: int) -> None:
        self.show, self.description, self.total = show, description, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[int, float], None]:
        if not self.show:
            return lambda epoch, loss: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("epoch {task.completed}/{task.total}"),
            TextColumn("val {task.fields[val]:.4g}"),
            TimeElapsedColumn(),
            transient=True,
        )
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total, val=float("nan"))

        def advance(epoch: int, loss: float) -> None:
            self._bar.update(task, completed=epoch + 1, val=loss)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
