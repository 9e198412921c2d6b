"""Training on several processes with PyTorch's own DDP, and per-epoch checkpoints.

Launch
------
``kgcm fit --nproc N`` starts N processes on this machine through PyTorch's launcher
(``torch.distributed.run``, the engine behind ``torchrun``), each running the same ``kgcm fit``.
Any other launch that sets the standard environment variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) works the same, e.g. on two nodes::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29400 -m kgcm fit -c fit.toml -o runs/fit

:func:`init_from_env` joins the process group: gloo on CPU, NCCL when the training device is a
GPU (each process on ``cuda:LOCAL_RANK``).

What each process does
----------------------
Every process reads the same data and takes the same validation split and batch order (the
same seed); within each global batch, process ``r`` of ``N`` trains on units ``r, r + N, ...``.
:class:`torch.nn.parallel.DistributedDataParallel` averages the gradients, so every process
holds the same weights after each step; validation losses and the recorded loss parts are
summed over processes, so early stopping and the learning-rate schedule decide the same on all.
Only rank 0 writes outputs and checkpoints; the model it saves loads and predicts in one
process like any other.

Checkpoints
-----------
Inside :func:`checkpoints`, :func:`kgcm.estimators.training.fit_module` writes its whole state
(weights, optimiser, schedule, best weights so far, history, random states) after every epoch
to one file per fit, keyed by a hash of the fit's settings, shapes and data. A fit started again
with the same key continues after the last finished epoch and ends with exactly the weights an
uninterrupted fit would have; a finished fit is read back without training.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from kgcm.errors import ConfigError

__all__ = ["checkpoints", "init_from_env", "launch", "world"]

_CHECKPOINTS: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "kgcm_checkpoints", default=None
)
_STAMP: contextvars.ContextVar[str] = contextvars.ContextVar("kgcm_checkpoint_stamp", default="")
#: what is being fitted (the estimator's class and every parameter), hashed into the
#: checkpoint key, so a fit with other settings never resumes from this one
_IDENTITY: contextvars.ContextVar[str] = contextvars.ContextVar("kgcm_fit_identity", default="")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched() -> bool:
    """True when a launcher set ``WORLD_SIZE`` above 1 for this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> bool:
    """Join the process group the launcher described in the environment (see module docs).

    Returns True when this call initialised it (the caller then destroys it at the end), False
    when there is nothing to join (``WORLD_SIZE`` unset or 1) or it is already initialised.
    """
    import torch.distributed as dist

    if not launched() or dist.is_initialized():
        return False
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but {', '.join(missing)} is not set: "
            "start distributed runs with `kgcm fit --nproc N` or `torchrun ... -m kgcm fit`, "
            "which set them."
        )
    gpu = device != "cpu" and torch.cuda.is_available()
    if gpu and ":" in device:
        raise ConfigError(
            f"device {device!r} names one GPU, but a distributed run puts each process on its "
            "own (cuda:LOCAL_RANK); set training.device = 'cuda' or 'auto'."
        )
    # NCCL for the gradients on GPUs; gloo beside it for the small CPU tensors the loop pools
    backend = "cpu:gloo,cuda:nccl" if gpu else "gloo"
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def local_device(device: torch.device) -> torch.device:
    """A CUDA device without an index becomes ``cuda:LOCAL_RANK`` in a launched run."""
    if device.type == "cuda" and device.index is None and launched():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m kgcm *argv`` in ``nproc`` processes on this machine with PyTorch's
    launcher (standalone rendezvous on a free local port); returns when all have ended."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1; got {nproc}.")
    from torch.distributed.run import parse_args, run

    args = parse_args(
        ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "-m", "kgcm", *argv]
    )
    try:
        run(args)
    except Exception as exc:  # ChildFailedError: the failing rank's error is already printed
        print(f"a training process failed: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def checkpoints(folder: str | os.PathLike[str] | None, stamp: str = "") -> Iterator[Path | None]:
    """Within this block, every neural fit checkpoints into ``folder`` after each epoch and
    resumes from it (module docs); ``None`` turns checkpointing off. ``stamp`` (e.g. a hash of
    the run's config) is written as ``folder/stamp`` with the first checkpoint."""
    path = None if folder is None else Path(folder)
    token = _CHECKPOINTS.set(path)
    token_stamp = _STAMP.set(stamp)
    try:
        yield path
    finally:
        _CHECKPOINTS.reset(token)
        _STAMP.reset(token_stamp)


@contextlib.contextmanager
def fitting(identity: str) -> Iterator[None]:
    """Name what the fits inside this block belong to (``BaseEstimator.fit`` sets the
    estimator's class and parameters); checkpoint keys include it."""
    token = _IDENTITY.set(identity)
    try:
        yield
    finally:
        _IDENTITY.reset(token)


def estimator_identity(est: Any) -> str:
    """An estimator's class and parameters, as checkpoint keys see them: the training loop's
    ``progress`` and ``device`` left out (they do not change what is learned)."""
    params = dict(est.get_params())
    training = params.get("training")
    if training is not None and not isinstance(training, Mapping):
        training = training.to_dict()
    if isinstance(training, Mapping):
        params["training"] = {k: v for k, v in training.items() if k not in ("progress", "device")}
    return f"{type(est).__name__}{sorted(params.items())}"


def checkpoint_folder() -> Path | None:
    """The folder set by the innermost :func:`checkpoints`, or None."""
    return _CHECKPOINTS.get()


def fit_key(
    description: str, seed: int, settings: dict[str, Any], data: Mapping[str, Any] | str
) -> str:
    """A hash naming one fit: its description, seed, training settings, the model's parameter
    shapes and the data (every tensor's shape, sums and a strided sample of its values, or a
    stream's fingerprint)."""
    h = hashlib.sha256()
    h.update(repr((_IDENTITY.get(), description, seed, sorted(settings.items()))).encode())
    if isinstance(data, str):
        h.update(data.encode())
        return h.hexdigest()[:20]
    for name in sorted(data):
        t = data[name].detach()
        h.update(name.encode())
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        flat = t.reshape(-1)  # a view where the tensor is contiguous: no copy of the data
        sample = flat[:: max(1, flat.numel() // 4096)].to("cpu", torch.float64)
        sums = [float(torch.sum(flat, dtype=torch.float64))]
        if flat.is_floating_point():
            sums.append(float(torch.linalg.vector_norm(flat, dtype=torch.float64)))
        h.update(sample.numpy().tobytes() + repr(sums).encode())
    return h.hexdigest()[:20]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (rank 0 only)."""
    from kgcm._io import atomic_write_bytes

    if world()[0] != 0:
        return
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = path.parent / "stamp"
    if _STAMP.get() and not stamp.is_file():
        atomic_write_bytes(stamp, _STAMP.get().encode())
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state saved at ``path``, or None when there is none."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
