"""`ltzoo.runfolder.provenance.git_commit`: the commit of the code that trained, '-dirty' only when that code
changed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ltzoo.runfolder.provenance import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def test_dirty_only_when_the_code_changes(tmp_path: Path):
    (tmp_path / "ltzoo").mkdir()
    (tmp_path / "ltzoo" / "engine.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("table\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    sha = _git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(tmp_path) == sha
    (tmp_path / "README.md").write_text("a new table, written by a benchmark between its runs\n")
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert git_commit(tmp_path) == sha
    (tmp_path / "ltzoo" / "engine.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == sha + "-dirty"


def test_none_outside_a_checkout(tmp_path: Path):
    assert git_commit(tmp_path) is None
