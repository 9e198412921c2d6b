"""Atomic outputs: a reader never sees a half-written file or a folder mixing two runs.

Files are written beside their target and renamed into place (:func:`atomic_path`). Folders
are transactions (:func:`output_folder`): locked against a second run, staged in a hidden
sibling, sealed with a marker listing every file's hash, and moved into place only when
complete; kgcm replaces only outputs it wrote itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kgcm.errors import ConfigError, DataError, KgcmError, OutputError

__all__ = [
    "MARKER",
    "OutputLock",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_name",
    "check_replaceable",
    "clean_leftovers",
    "file_hash",
    "output_file",
    "output_folder",
    "read_marker",
    "replace_folder",
    "verify_folder",
    "write_marker",
]


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


# --------------------------------------------------------------------------------------------
# Output folders as transactions

#: written last into every output folder kgcm commits: kind, version and every file's hash
MARKER = "manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}$")


def check_name(name: str, what: str) -> str:
    """Refuse a name from a config that would not be one plain path component.

    Dataset names and estimator labels become folder names; ``../x``, ``a/b``, an empty name or
    a leading dot would write outside the output folder or hide the files.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise ConfigError(
            f"{what} {name!r} cannot be used as a folder name; use 1-100 letters, digits and "
            f". _ + = - (starting with a letter or digit, no '..', no '/')."
        )
    return name


def _oserror(exc: OSError, target: Path, doing: str) -> OutputError:
    reason = exc.strerror or exc.__class__.__name__
    return OutputError(
        f"cannot write the output {os.fspath(target)!r}: {doing} failed ({reason}"
        f"{': ' + os.fspath(exc.filename) if exc.filename else ''}). Choose a writable "
        f"--out (a folder you may create files in), or fix the permissions."
    )


def _ensure_parent(target: Path) -> None:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(
            f"cannot write {os.fspath(target)!r}: a part of its parent path is a file, not a "
            f"folder ({exc.filename}). Choose another --out."
        ) from exc
    except OSError as exc:
        raise _oserror(exc, target, "creating its parent folder") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot write {os.fspath(target)!r}: its folder {os.fspath(parent)!r} is not "
            f"writable. Choose a writable --out, or fix the permissions."
        )


class OutputLock:
    """An exclusive lock on one output path, held by this process.

    The lock file ``.<name>.lock`` beside the output records the holder (pid, host, start). It is
    an ``flock``: the kernel releases it when the holder exits, however it exits, so a lock left
    by a killed run is stale and taken over, never honoured.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = Path(target)
        self.path = self.target.parent / f".{self.target.name}.lock"
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        _ensure_parent(self.target)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _oserror(exc, self.target, "creating its lock file") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                holder = holder or "a process that is starting"
                raise OutputError(
                    f"{os.fspath(self.target)!r} is in use by another kgcm run ({holder}); wait "
                    f"for it to finish or choose another --out."
                ) from None
            # the file may have been removed by its previous holder between open and flock:
            # then this lock guards nothing and we start again
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # unlink while holding the lock: a waiter that opened the old file sees the inode change
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The marker of a folder kgcm wrote (kind, version, files), or None when it has none."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"kind": "?", "damaged": True}
    return data if isinstance(data, dict) else {"kind": "?", "damaged": True}


def file_hash(path: str | os.PathLike[str], advance: Callable[[int], None] | None = None) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks; ``advance(n)`` is told the
    bytes of each block (a progress bar)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            if advance is not None:
                advance(len(block))
    return h.hexdigest()


def _listing(folder: Path, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    paths = sorted(folder.rglob("*")) if names is None else [folder / n for n in sorted(names)]
    missing = [p.name for p in paths if names is not None and not p.is_file()]
    if missing:  # a file the manifest is to vouch for was never written
        raise OutputError(
            f"{folder}: cannot list {missing} in the manifest: not written. The output is "
            f"incomplete; run the command again."
        )
    files = {}
    for p in paths:
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != MARKER:
            files[rel] = {"size": p.stat().st_size, "sha256": file_hash(p)}
    return files


def write_marker(
    folder: str | os.PathLike[str], kind: str, *, files: bool | Iterable[str] = True
) -> None:
    """Write the marker (last): ``kind``, the kgcm version and, with ``files``, every file's
    size and hash (the manifest that :func:`verify_folder` checks); ``files`` may instead name
    the only files to list (a Zarr store's chunks are too many to hash, its small documents
    are not)."""
    from kgcm import __version__

    folder = Path(folder)
    info: dict[str, Any] = {"kind": kind, "kgcm_version": __version__}
    if files is True:
        info["files"] = _listing(folder)
    elif files is not False:
        info["files"] = _listing(folder, files)
    atomic_write_text(folder / MARKER, json.dumps(info, indent=1) + "\n")


def verify_folder(
    folder: str | os.PathLike[str], kind: str, names: Iterable[str] = ()
) -> dict[str, Any] | None:
    """Check that ``folder`` is a complete kgcm ``kind`` output: the files ``names`` (all listed
    ones when empty) have the size and hash its manifest recorded. Returns the marker, or None
    for a folder written before markers existed (nothing to check against)."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        return None
    if marker.get("damaged") or marker.get("kind") != kind:
        raise DataError(
            f"{os.fspath(folder)!r} is not a kgcm {kind} output (its {MARKER} says "
            f"{marker.get('kind')!r}); point to the folder the {kind} command wrote."
        )
    listed = marker.get("files") or {}
    for name in names or listed:
        entry = listed.get(name)
        path = folder / name
        if entry is None or not path.is_file():
            raise DataError(
                f"{os.fspath(path)!r} is missing from the {kind} output or was not written with "
                f"it; the folder is incomplete or mixed. Run the {kind} command again."
            )
        if path.stat().st_size != entry["size"] or file_hash(path) != entry["sha256"]:
            raise DataError(
                f"{os.fspath(path)!r} differs from the file the {kind} run wrote (size or "
                f"SHA-256 changed): it was damaged or edited. Run the {kind} command again."
            )
    return marker


def check_replaceable(target: str | os.PathLike[str], kind: str, *, overwrite: bool) -> None:
    """Refuse to replace anything kgcm did not write as a ``kind`` output.

    An absent path or an empty folder is fine; a kgcm ``kind`` folder only with ``overwrite``;
    a regular file, a link, a non-empty folder without kgcm's marker, or another kind never.
    """
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        what = "a symbolic link" if target.is_symlink() else "a file, not a folder"
        raise OutputError(
            f"the output {os.fspath(target)!r} exists and is {what}; kgcm writes a folder there "
            f"and replaces only folders it wrote itself. Choose another --out."
        )
    if not target.exists():
        return
    try:
        empty = next(target.iterdir(), None) is None
    except OSError as exc:
        raise _oserror(exc, target, "listing it") from exc
    if empty:
        return
    marker = read_marker(target)
    if marker is None and kind == "prepare" and (target / ".zattrs").is_file():
        # stores written before markers existed carry the prepare config in their attributes
        with contextlib.suppress(OSError, ValueError):
            if "kgcm_prepare_config" in json.loads((target / ".zattrs").read_text()):
                marker = {"kind": "prepare"}
    if marker is None and kind in ("demo", "fit") and (target / "run.json").is_file():
        # run folders written before markers existed: their run.json names the kgcm version
        with contextlib.suppress(OSError, ValueError):
            if "kgcm_version" in json.loads((target / "run.json").read_text()):
                marker = {"kind": kind}
    if marker is None:
        raise OutputError(
            f"the output {os.fspath(target)!r} is a folder holding files kgcm did not write (no "
            f"{MARKER}); kgcm replaces only its own outputs. Choose another --out, or empty "
            f"that folder yourself."
        )
    if marker.get("kind") != kind:
        raise OutputError(
            f"the output {os.fspath(target)!r} holds a kgcm {marker.get('kind')!r} output, not a "
            f"{kind!r} one; choose another --out."
        )
    if not overwrite:
        raise OutputError(
            f"the output {os.fspath(target)!r} exists already; choose another output or allow "
            f"replacing it (overwrite = true, CLI --overwrite)."
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a))


def replace_folder(staging: Path, target: Path) -> None:
    """Move the complete folder ``staging`` onto ``target``; the old ``target`` is removed.

    Readers see the old folder or the new one, never a mix: the swap is one
    ``renameat2(RENAME_EXCHANGE)`` where the kernel has it, else two renames (a reader between
    them finds no folder, never half of one).
    """
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
    if _exchange(staging, target):
        # the old folder now has the staging name: move it out of the way before deleting it,
        # so a run killed while deleting never leaves half a folder under a name a rerun trusts
        os.replace(staging, old)
    else:
        os.replace(target, old)
        os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(target: Path) -> None:
    """Remove staging folders of killed runs on this output (the caller holds its lock)."""
    for pattern in (f".{target.name}.*.partial", f".{target.name}.*.old"):
        for p in target.parent.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def output_folder(
    target: str | os.PathLike[str],
    kind: str,
    *,
    overwrite: bool = True,
    keep_existing: bool = False,
) -> Iterator[Path]:
    """Write an output folder as a transaction; yields the staging folder to write into.

    - the output is locked for the whole run (a second run gets a clear "in use" error);
    - only an absent path, an empty folder or a kgcm ``kind`` output is replaced
      (:func:`check_replaceable`);
    - everything is written into a fresh hidden sibling, and the marker with every file's hash
      is written last; only then is the folder moved into place (:func:`replace_folder`). A run
      that fails or is killed leaves the old output as it was (its staging folder is removed
      now, or by the next run on that output);
    - ``keep_existing`` starts the staging folder with the current files (hard links, no copy),
      for commands that add files to an output (``kgcm effect`` into a fit run).
    """
    target = Path(target)
    lock = OutputLock(target).acquire()
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        check_replaceable(target, kind, overwrite=overwrite)
        clean_leftovers(target)
        try:
            if keep_existing and target.is_dir():
                shutil.copytree(target, staging, copy_function=_link_or_copy, symlinks=True)
                (staging / MARKER).unlink(missing_ok=True)
            else:
                staging.mkdir()
        except OSError as exc:
            raise _oserror(exc, target, "creating its staging folder") from exc
        try:
            yield staging
            write_marker(staging, kind)
            replace_folder(staging, target)
        except OSError as exc:
            if isinstance(exc, KgcmError) or not _inside(exc, staging, target):
                raise
            raise _oserror(exc, target, "writing it") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        lock.release()


def _inside(exc: OSError, *folders: Path) -> bool:
    name = exc.filename
    if not name:
        return False
    return any(os.fspath(name).startswith(os.fspath(f)) for f in folders)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextlib.contextmanager
def output_file(target: str | os.PathLike[str], is_ours: Callable[[Path], bool]) -> Iterator[Path]:
    """Write one output file atomically under the output's lock; yields the temporary path.

    An existing path is replaced only if it is a regular file that ``is_ours`` recognises as
    written by kgcm; a folder, a link, a device or someone else's file is refused.
    """
    target = Path(target)
    lock = OutputLock(target).acquire()
    try:
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise OutputError(
                f"the output {os.fspath(target)!r} exists and is not a regular file; choose "
                f"another output path."
            )
        if target.exists() and not is_ours(target):
            raise OutputError(
                f"the output {os.fspath(target)!r} exists and was not written by this kgcm "
                f"command; kgcm replaces only its own outputs. Choose another path, or remove "
                f"that file yourself."
            )
        try:
            with atomic_path(target) as tmp:
                yield tmp
        except OSError as exc:
            if isinstance(exc, KgcmError) or not _inside(exc, target.parent):
                raise
            raise _oserror(exc, target, "writing it") from exc
    finally:
        lock.release()
