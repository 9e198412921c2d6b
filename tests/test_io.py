"""Atomic writes: all or nothing, usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from kgcm._io import atomic_path, atomic_write_text


def test_atomic_write_and_permissions(tmp_path) -> None:
    path = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert path.read_text() == "hello"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_failed_write_leaves_old_file_and_no_temp(tmp_path) -> None:
    target = tmp_path / "b.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
