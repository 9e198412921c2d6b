"""The code revision recorded with results: a commit, '+dirty' for local edits, 'unknown'."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import kgcm
from kgcm import provenance

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs a git executable")


def _git(*args: str, cwd) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_commit_dirty_and_unknown(tmp_path) -> None:
    repo = tmp_path / "repo"
    package = repo / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (repo / "README").write_text("docs\n")
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "one", cwd=repo)
    head = _git("rev-parse", "HEAD", cwd=repo).strip()

    assert provenance.code_revision(package) == head
    assert provenance.code_fingerprint(package) == {
        "kgcm_version": kgcm.__version__,
        "code_revision": head,
    }
    # an edit outside the package (docs, results) leaves the code clean
    (repo / "README").write_text("more docs\n")
    assert provenance.code_revision(package) == head
    # an edit of the package's own file makes it dirty; two edits, two fingerprints
    (package / "a.py").write_text("x = 2\n")
    assert provenance.code_revision(package) == f"{head}+dirty"
    first = provenance.code_fingerprint(package)
    (package / "a.py").write_text("x = 3\n")
    second = provenance.code_fingerprint(package)
    assert first["code_revision"] == second["code_revision"] == f"{head}+dirty"
    assert first["code_changes"] != second["code_changes"]
    # a new, untracked module counts too
    (package / "a.py").write_text("x = 1\n")
    assert provenance.code_revision(package) == head
    (package / "b.py").write_text("y = 1\n")
    assert provenance.code_revision(package) == f"{head}+dirty"
    # outside any git checkout
    outside = tmp_path / "plain"
    outside.mkdir()
    assert provenance.code_revision(outside) == provenance.UNKNOWN == "unknown"
    assert provenance.code_fingerprint(outside)["code_revision"] == "unknown"
