"""Which code and which files produced a result.

Code: the kgcm version and the git revision of its source. Every per-run table (``kgcm
benchmark``'s and ``kgcm ablate``'s ``results.csv``) carries both in each row, and the
benchmark's resume fingerprint includes them, so a rerun after a code change reruns its cells
instead of reusing ones computed by other code.

Files: ``kgcm prepare`` records every input file of every source (and the grid/mask files a
source's options name) with its path, size and full SHA-256 in ``kgcm_inputs.json`` inside the
store (:func:`record_inputs`), and the SHA-256 of that document in the store's
``kgcm_inputs_sha256`` attribute; :func:`read_inputs` reads it back, checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgcm._io import file_hash

__all__ = [
    "INPUTS",
    "INPUTS_ATTR",
    "UNKNOWN",
    "InputFile",
    "code_fingerprint",
    "code_revision",
    "read_inputs",
    "record_inputs",
]

#: the revision outside a git checkout (an installed wheel) or without a git executable
UNKNOWN = "unknown"

_PACKAGE = Path(__file__).resolve().parent


def _git(args: list[str], cwd: Path) -> str | None:
    """stdout of ``git args`` run in ``cwd``; None when git is missing, fails or hangs."""
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _state(package: Path) -> tuple[str, str]:
    """(revision, digest of the uncommitted changes to ``package``) of the checkout holding it.

    Not cached: a long run asks once (the benchmark passes the answer to its workers), and a
    cached answer would hide an edit made since."""
    head = _git(["rev-parse", "HEAD"], package)
    if not head or not head.strip():
        return UNKNOWN, ""
    revision = head.strip()
    # changes to the package's own files (tracked and new) make the tree dirty; edits to docs,
    # configs or results elsewhere in the checkout do not change the code that ran
    status = _git(["status", "--porcelain", "--", "."], package)
    if status is None:
        return UNKNOWN, ""
    if not status.strip():
        return revision, ""
    diff = _git(["diff", "HEAD", "--", "."], package) or ""
    untracked = _git(["ls-files", "--others", "--exclude-standard", "--", "."], package) or ""
    digest = hashlib.sha256()
    digest.update(diff.encode())
    for name in sorted(untracked.split()):
        path = package / name
        digest.update(name.encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return f"{revision}+dirty", digest.hexdigest()[:16]


def code_revision(package: str | Path | None = None) -> str:
    """The git commit of the code, ``"<commit>+dirty"`` when the package's files differ from
    it, or ``"unknown"`` outside git.

    Parameters
    ----------
    package : path, optional
        The source folder to describe (default: the installed ``kgcm`` package).
    """
    return _state(Path(package).resolve() if package else _PACKAGE)[0]


def code_fingerprint(package: str | Path | None = None) -> dict[str, str]:
    """The code's identity for a resume fingerprint: kgcm version, revision and, for a dirty
    tree, a digest of its uncommitted changes (two different edits give two fingerprints)."""
    from kgcm import __version__

    revision, changes = _state(Path(package).resolve() if package else _PACKAGE)
    out = {"kgcm_version": __version__, "code_revision": revision}
    if changes:
        out["code_changes"] = changes
    return out


# --------------------------------------------------------------------------------------------
# Input files of a prepared store

#: the record of a prepared store's input files, a JSON document inside the store
INPUTS = "kgcm_inputs.json"
#: the store attribute holding the SHA-256 of that document
INPUTS_ATTR = "kgcm_inputs_sha256"
_FORMAT = "kgcm-inputs/1"
#: how often the hash cache is saved while hashing (seconds): at most this much work is redone
#: after an interruption
_SAVE_EVERY_S = 2.0


@dataclass(frozen=True)
class InputFile:
    """One input of a prepare run.

    Attributes
    ----------
    source : the source's name.
    role : ``"data"`` for a product file, else the reader option naming it (``"grid"``,
        ``"mask"``, ...).
    given : the config's entry (a path or a glob pattern).
    path : the file as that entry names it (relative to the config's folder when the entry is).
    resolved : the absolute path with links resolved.
    """

    source: str
    role: str
    given: str
    path: str
    resolved: Path


def _content(path: Path, advance: Callable[[int], None]) -> dict[str, Any]:
    """Size and SHA-256 of a file, or of a folder (a Zarr store): its size is the sum of its
    files' and its SHA-256 that of the lines ``relative path, size, SHA-256`` of every file in
    sorted order, so any change to any file changes it."""
    if not path.is_dir():
        return {"size": path.stat().st_size, "sha256": file_hash(path, advance)}
    lines, total = [], 0
    for p in sorted(path.rglob("*")):
        if p.is_file():
            size = p.stat().st_size
            lines.append(f"{p.relative_to(path).as_posix()}\t{size}\t{file_hash(p, advance)}\n")
            total += size
    listing = "".join(lines).encode()
    return {"size": total, "sha256": hashlib.sha256(listing).hexdigest(), "files": len(lines)}


def _size_on_disk(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or damaged: hash again, nothing is trusted blindly
    entries = data.get("entries") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) and data.get("format") == _FORMAT else {}


def record_inputs(
    files: Sequence[InputFile],
    fingerprints: Sequence[Any],
    cache: Path,
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> bytes:
    """The ``kgcm_inputs.json`` document of ``files``: for each, its source, role, paths, size
    in bytes and the SHA-256 of its whole content, streamed in blocks of 1 MiB.

    Each file is hashed once: the hashes are kept in ``cache`` (a JSON file, saved atomically
    every few seconds and at the end) under the file's resolved path and its cheap fingerprint
    (``fingerprints[i]``: size, mtime and the hash of its first and last MiB), so a resumed run
    rehashes only files it had not finished or that changed since.

    Parameters
    ----------
    files : the inputs, in the order the document lists them.
    fingerprints : one cheap fingerprint (JSON-serialisable) per file.
    cache : where the hashes are kept between runs.
    progress : draw a progress bar over the bytes to hash.

    Returns
    -------
    The document's bytes (deterministic: the same inputs give the same bytes).
    """
    from kgcm._io import atomic_write_text
    from kgcm._progress import progress_bar

    known = _load_cache(cache)
    keys = [str(f.resolved) for f in files]
    fps = [json.loads(json.dumps(fp)) for fp in fingerprints]  # compared as JSON reads them back
    entries = {k: known[k] for k in keys if isinstance(known.get(k), dict)}
    todo, seen = [], set()
    for i, (k, fp) in enumerate(zip(keys, fps, strict=True)):
        # a file listed twice (sources sharing files or a grid file) is hashed once
        if k not in seen and entries.get(k, {}).get("fingerprint") != fp:
            todo.append(i)
        seen.add(k)

    def save() -> None:
        atomic_write_text(cache, json.dumps({"format": _FORMAT, "entries": entries}) + "\n")

    if todo:
        nbytes = sum(_size_on_disk(files[i].resolved) for i in todo)
        log(
            f"hashing {len(todo)} of {len(files)} input files ({nbytes / 2**20:.1f} MiB; "
            f"{len(files) - len(todo)} known from an earlier run)"
        )
        saved = time.monotonic()
        try:
            with progress_bar(progress, "hashing input files", nbytes, nbytes=True) as advance:
                for i in todo:
                    content = _content(files[i].resolved, advance)
                    entries[keys[i]] = {"fingerprint": fps[i], **content}
                    if time.monotonic() - saved > _SAVE_EVERY_S:
                        save()
                        saved = time.monotonic()
        finally:
            save()  # an interrupted run keeps the files it finished
    rows = []
    for f, k in zip(files, keys, strict=True):
        content = {n: v for n, v in entries[k].items() if n != "fingerprint"}
        rows.append(
            {
                "source": f.source,
                "role": f.role,
                "given": f.given,
                "path": f.path,
                "resolved": k,
                **content,
            }
        )
    document = {"format": _FORMAT, "algorithm": "sha256", "files": rows}
    return (json.dumps(document, indent=1) + "\n").encode()


def read_inputs(store: str | os.PathLike[str], attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The input record of a prepared store, or None for a store written before kgcm recorded
    one. ``attrs`` are the store's attributes; the document's SHA-256 must match theirs.

    Raises
    ------
    DataError
        When the document is damaged or differs from the one the store was written with.
    """
    from kgcm.errors import DataError

    path = Path(store) / INPUTS
    if not path.is_file():
        return None
    data = path.read_bytes()
    expected = attrs.get(INPUTS_ATTR)
    if expected != hashlib.sha256(data).hexdigest():
        raise DataError(
            f"{path} does not match the SHA-256 the store recorded ({expected or 'none'}): it was "
            f"edited or copied from another store. Run kgcm prepare again."
        )
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); run kgcm prepare again.") from exc
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise DataError(
            f"{path} is not a kgcm input record (format {_FORMAT!r}); run kgcm prepare again."
        )
    return document
