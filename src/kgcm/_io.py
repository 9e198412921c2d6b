"""Atomic file writes: a reader never sees a half-written output."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only on success.

    The temporary name keeps the suffix so libraries that dispatch on it (NetCDF, PNG) work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a fresh unique name that the writer creates itself, so the file gets the usual
    # permissions (mkstemp would make it owner-only)
    tmp_path = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp{target.suffix}"
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write(path: str | os.PathLike[str], writer: Callable[[Path], object]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _write(path, lambda p: p.write_bytes(data))
