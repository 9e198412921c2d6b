"""Which code produced a result: the kgcm version and the git revision of its source.

Every per-run table (``kgcm benchmark``'s and ``kgcm ablate``'s ``results.csv``) carries both in
each row, and the benchmark's resume fingerprint includes them, so a rerun after a code change
reruns its cells instead of reusing ones computed by other code.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

__all__ = ["UNKNOWN", "code_fingerprint", "code_revision"]

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
