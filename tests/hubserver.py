"""A local, standard-library-only Hugging Face Hub look-alike for the test suite.

huggingface.co is unreachable from the test machines, so tests that push or pull models run the *real*,
unmodified ``huggingface_hub`` / ``timm`` code against :class:`LocalHub`, a ``ThreadingHTTPServer`` bound to
``127.0.0.1`` on a free port.  Point ``huggingface_hub`` at it with :func:`patch_huggingface_hub` (the
``local_hub`` fixture in ``tests/conftest.py`` does this for you).

Implemented endpoints (``{type}`` is ``models``, ``datasets`` or ``spaces``; ``{prefix}`` is ``""``,
``datasets/`` or ``spaces/``; revisions are URL-quoted branch names such as ``main`` or full commit shas):

=====================================================================  ==========================================
``GET  /api/whoami-v2``                                                user name and orgs (``whoami``)
``POST /api/repos/create`` / ``DELETE /api/repos/delete``              ``create_repo`` (409 if it exists) /
                                                                       ``delete_repo``
``GET  /api/{type}/{repo_id}[/revision/{rev}]``                        ``model_info`` / ``repo_info``
``POST /api/{type}/{repo_id}/preupload/{rev}``                         upload mode of each file (see below)
``POST /api/{type}/{repo_id}/commit/{rev}``                            NDJSON commit: ``header``, ``file``,
                                                                       ``lfsFile``, ``deletedFile``,
                                                                       ``deletedFolder`` lines
``GET  /api/{type}/{repo_id}/tree/{rev}[/{path}]``                     ``list_repo_tree`` / ``list_repo_files``
                                                                       (one page, no ``Link`` header)
``POST /api/{type}/{repo_id}/paths-info/{rev}``                        ``get_paths_info``
``GET  /api/{type}/{repo_id}/commits/{rev}``, ``.../refs``             ``list_repo_commits``, ``list_repo_refs``
``POST|DELETE /api/{type}/{repo_id}/branch/{branch}``                  ``create_branch`` / ``delete_branch``
``GET|HEAD /{prefix}{repo_id}/resolve/{rev}/{path}``                   file download, ``Range`` supported
``POST /{prefix}{repo_id}.git/info/lfs/objects/batch``                 LFS batch API (basic transfer, upload)
``PUT /lfs-objects/{sha256}``, ``POST /lfs-objects/{sha256}/verify``   LFS object upload target and verify
``POST /api/validate-yaml``, ``GET /api/agent-harnesses``              always-OK stubs
=====================================================================  ==========================================

Semantics worth knowing:

* Every commit is an immutable snapshot with a unique 40-hex sha; branches are pointers to commits, so any
  revision (branch name, ``refs/heads/<branch>`` or full commit sha) can be read, and re-pushing creates a new
  commit.  ``create_repo`` makes an initial commit holding a ``.gitattributes`` file, as the Hub does.
* Upload mode: by default ``preupload`` answers ``"regular"`` for every file, so file contents travel base64
  encoded inside the commit payload and no LFS/Xet storage is needed.  This is what makes the server work with
  ``hf_xet`` installed: ``huggingface_hub`` only routes ``"lfs"`` files through Xet.  Pass
  ``LocalHub(lfs_threshold=N)`` to answer ``"lfs"`` for files of ``N`` bytes or more; the client must then use
  the legacy LFS protocol, i.e. run with ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``.  Xet itself
  is not implemented.
* Pull requests (``create_pr=True``) and tags are not implemented (501 / 404).
* Errors carry the ``X-Error-Code`` / ``X-Error-Message`` headers ``huggingface_hub`` maps to its exception
  classes (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).
* With ``LocalHub(token=...)``, write endpoints need ``Authorization: Bearer <token>`` (401 otherwise), a wrong
  token is rejected on every endpoint, and private repos are hidden from anonymous readers.
* Failures can be injected with :meth:`LocalHub.fail_next`; every request is recorded in
  :attr:`LocalHub.requests`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pytest

__all__ = [
    "DEFAULT_BRANCH",
    "GITATTRIBUTES",
    "HubError",
    "LocalHub",
    "disable_retry_sleep",
    "patch_huggingface_hub",
    "set_hf_offline",
]

DEFAULT_BRANCH = "main"
REPO_TYPES = ("model", "dataset", "space")
_PLURAL_TO_TYPE = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_SHA_RE = re.compile(r"[0-9a-f]{40}")

#: Content of the ``.gitattributes`` file of the initial commit of every repo (abridged Hub default).
GITATTRIBUTES = (
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.ckpt filter=lfs diff=lfs merge=lfs -text\n"
    "*.h5 filter=lfs diff=lfs merge=lfs -text\n"
    "*.onnx filter=lfs diff=lfs merge=lfs -text\n"
    "*.pt filter=lfs diff=lfs merge=lfs -text\n"
    "*.pth filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
)


# ----------------------------------------------------------------------------------------------------- helpers


class HubError(Exception):
    """An error answered to the client as an HTTP error with Hub-style error headers."""

    def __init__(
        self, status: int, message: str, error_code: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = dict(headers or {})


def git_blob_oid(data: bytes) -> str:
    """Return the git object id (sha1 of ``blob <len>\\0<data>``) of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """Return the git-lfs pointer file that stands for a blob of ``size`` bytes with hash ``sha256``."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now_iso() -> str:
    """Return the current UTC time in the Hub's ISO-8601 format (millisecond precision, ``Z`` suffix)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _is_true(value: str | None) -> bool:
    """Interpret a query-string or form flag (``1``/``true``/``yes``) as a boolean."""
    return value is not None and value.strip().lower() in {"1", "true", "yes", "on"}


def _header_safe(text: str) -> str:
    """Make ``text`` usable as a single-line latin-1 HTTP header value."""
    return " ".join(text.split()).encode("latin-1", "replace").decode("latin-1")[:1000]


# ------------------------------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class FileEntry:
    """A file of a commit: its size, hashes and whether it is stored as an LFS object."""

    size: int
    sha256: str
    blob_oid: str
    lfs: bool = False

    @classmethod
    def from_bytes(cls, data: bytes, lfs: bool = False) -> FileEntry:
        """Describe ``data`` (without storing it)."""
        return cls(len(data), hashlib.sha256(data).hexdigest(), git_blob_oid(data), lfs)

    @property
    def git_oid(self) -> str:
        """The git blob id the Hub reports: of the content, or of the LFS pointer for LFS files."""
        return git_blob_oid(lfs_pointer(self.sha256, self.size)) if self.lfs else self.blob_oid

    def lfs_info(self) -> dict[str, Any] | None:
        """Return the ``lfs`` object of tree listings, or ``None`` for regular files."""
        if not self.lfs:
            return None
        return {"oid": self.sha256, "size": self.size, "pointerSize": len(lfs_pointer(self.sha256, self.size))}

    def to_json(self) -> dict[str, Any]:
        """Serialize for the state file."""
        return {"size": self.size, "sha256": self.sha256, "blob_oid": self.blob_oid, "lfs": self.lfs}


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot of a repository."""

    sha: str
    parents: tuple[str, ...]
    title: str
    message: str
    date: str
    files: Mapping[str, FileEntry]

    def to_json(self) -> dict[str, Any]:
        """Serialize for the state file."""
        return {
            "parents": list(self.parents),
            "title": self.title,
            "message": self.message,
            "date": self.date,
            "files": {path: entry.to_json() for path, entry in self.files.items()},
        }

    @classmethod
    def from_json(cls, sha: str, data: Mapping[str, Any]) -> Commit:
        """Inverse of :meth:`to_json`."""
        files = {path: FileEntry(**entry) for path, entry in data["files"].items()}
        return cls(sha, tuple(data["parents"]), data["title"], data["message"], data["date"], files)


@dataclass(frozen=True)
class CommitOp:
    """One operation of a commit payload: ``add`` (with ``entry``), ``delete`` or ``delete_folder``."""

    kind: str
    path: str
    entry: FileEntry | None = None


@dataclass
class Repo:
    """A repository: its visibility, branches (name -> commit sha) and every commit ever made."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    @property
    def url_path(self) -> str:
        """Path of the repo's web page, e.g. ``datasets/org/name``."""
        return _URL_PREFIX[self.repo_type] + self.repo_id

    def resolve(self, revision: str) -> Commit:
        """Return the commit a branch name, ``refs/heads/<branch>`` or full commit sha points to."""
        branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
        if branch in self.branches:
            return self.commits[self.branches[branch]]
        if _SHA_RE.fullmatch(revision) and revision in self.commits:
            return self.commits[revision]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def branch_name(self, revision: str) -> str:
        """Return the branch a commit must go to, or raise ``RevisionNotFound``."""
        branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
        if branch not in self.branches:
            message = f"Invalid rev id: {revision} (commits must target an existing branch)"
            raise HubError(404, message, "RevisionNotFound")
        return branch

    def history(self, revision: str) -> list[Commit]:
        """Return the first-parent history of ``revision``, newest first."""
        commit: Commit | None = self.resolve(revision)
        out: list[Commit] = []
        while commit is not None:
            out.append(commit)
            commit = self.commits[commit.parents[0]] if commit.parents else None
        return out

    def last_commit_for(self, revision: str, path: str) -> Commit:
        """Return the most recent commit of ``revision``'s history that changed ``path``."""
        history = self.history(revision)
        current = history[0].files.get(path)
        last = history[0]
        for commit in history[1:]:
            if commit.files.get(path) != current:
                break
            last = commit
        return last

    def to_json(self) -> dict[str, Any]:
        """Serialize for the state file."""
        return {
            "repo_type": self.repo_type,
            "repo_id": self.repo_id,
            "private": self.private,
            "created_at": self.created_at,
            "branches": dict(self.branches),
            "commits": {sha: commit.to_json() for sha, commit in self.commits.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Repo:
        """Inverse of :meth:`to_json`."""
        commits = {sha: Commit.from_json(sha, c) for sha, c in data["commits"].items()}
        branches = dict(data["branches"])
        return cls(data["repo_type"], data["repo_id"], data["private"], data["created_at"], branches, commits)


# ------------------------------------------------------------------------------------------------------ store


class HubStore:
    """Thread-safe repository storage: content-addressed blobs on disk plus a JSON state file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self._state_file = root / "state.json"
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self.repos: dict[tuple[str, str], Repo] = {}
        if self._state_file.exists():
            state = json.loads(self._state_file.read_text())
            for data in state["repos"]:
                repo = Repo.from_json(data)
                self.repos[(repo.repo_type, repo.repo_id)] = repo

    # -- blobs

    def put_blob(self, data: bytes) -> FileEntry:
        """Store ``data`` (idempotent) and return its description as a regular file."""
        entry = FileEntry.from_bytes(data)
        path = self.blob_path(entry.sha256)
        if not path.exists():
            tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return entry

    def blob_path(self, sha256: str) -> Path:
        """Where the blob with hash ``sha256`` lives."""
        return self.blob_dir / sha256

    def has_blob(self, sha256: str) -> bool:
        """Whether a blob with hash ``sha256`` is stored."""
        return re.fullmatch(r"[0-9a-f]{64}", sha256) is not None and self.blob_path(sha256).exists()

    def read_blob(self, sha256: str) -> bytes:
        """Return the content of a stored blob."""
        return self.blob_path(sha256).read_bytes()

    # -- repos

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        """Return a repo or raise ``RepoNotFound``."""
        with self._lock:
            repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        """Create a repo with an initial ``.gitattributes`` commit on ``main``; 409 if it exists."""
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            repo = Repo(repo_type, repo_id, private, _now_iso())
            entry = self.put_blob(GITATTRIBUTES.encode())
            initial = self._new_commit(repo, (), "initial commit", "", {".gitattributes": entry})
            repo.branches[DEFAULT_BRANCH] = initial.sha
            self.repos[(repo_type, repo_id)] = repo
            self._save()
            return repo

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        """Delete a repo (its blobs stay, they are content-addressed)."""
        with self._lock:
            self.get_repo(repo_type, repo_id)
            del self.repos[(repo_type, repo_id)]
            self._save()

    def commit(
        self,
        repo: Repo,
        revision: str,
        ops: Sequence[CommitOp],
        title: str,
        message: str = "",
        parent_commit: str | None = None,
    ) -> Commit:
        """Apply ``ops`` on top of the head of branch ``revision`` and advance the branch."""
        with self._lock:
            branch = repo.branch_name(revision)
            head = repo.commits[repo.branches[branch]]
            if parent_commit and not head.sha.startswith(parent_commit.lower()):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for op in ops:
                _apply_op(files, op)
            commit = self._new_commit(repo, (head.sha,), title, message, files)
            repo.branches[branch] = commit.sha
            self._save()
            return commit

    def create_branch(self, repo: Repo, branch: str, starting_point: str | None) -> None:
        """Create ``branch`` at ``starting_point`` (default: head of ``main``); 409 if it exists."""
        with self._lock:
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            repo.branches[branch] = repo.resolve(starting_point or DEFAULT_BRANCH).sha
            self._save()

    def delete_branch(self, repo: Repo, branch: str) -> None:
        """Delete a branch other than ``main``."""
        with self._lock:
            if branch == DEFAULT_BRANCH:
                raise HubError(403, "Cannot delete the default branch")
            if repo.branches.pop(branch, None) is None:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            self._save()

    def _new_commit(
        self, repo: Repo, parents: tuple[str, ...], title: str, message: str, files: Mapping[str, FileEntry]
    ) -> Commit:
        """Create, register and return a commit with a fresh unique sha."""
        date = _now_iso()
        seed = json.dumps(
            [
                repo.repo_type,
                repo.repo_id,
                parents,
                title,
                message,
                date,
                time.time_ns(),
                next(self._counter),
                sorted((path, entry.sha256) for path, entry in files.items()),
            ]
        )
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parents, title, message, date, dict(files))
        repo.commits[commit.sha] = commit
        return commit

    def _save(self) -> None:
        """Persist the repo metadata atomically (blobs are already on disk)."""
        state = {"repos": [repo.to_json() for repo in self.repos.values()]}
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._state_file)


def _apply_op(files: dict[str, FileEntry], op: CommitOp) -> None:
    """Apply one commit operation to a ``path -> FileEntry`` mapping in place."""
    if op.kind == "add":
        assert op.entry is not None
        files[op.path] = op.entry
    elif op.kind == "delete":
        if files.pop(op.path, None) is None:
            raise HubError(404, f"A file with this name doesn't exist: {op.path}", "EntryNotFound")
    elif op.kind == "delete_folder":
        prefix = op.path.strip("/") + "/"
        doomed = [path for path in files if path.startswith(prefix)]
        if not doomed:
            raise HubError(404, f"A folder with this name doesn't exist: {op.path}", "EntryNotFound")
        for path in doomed:
            del files[path]


def parse_commit_payload(body: bytes, store: HubStore) -> tuple[dict[str, Any], list[CommitOp]]:
    """Parse the NDJSON body of ``/commit``: return the header value and the operations, storing new blobs."""
    header: dict[str, Any] | None = None
    ops: list[CommitOp] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        key, value = item.get("key"), item.get("value", {})
        if key == "header":
            header = value
        elif key == "file":
            ops.append(_regular_file_op(value, store))
        elif key == "lfsFile":
            ops.append(_lfs_file_op(value, store))
        elif key == "deletedFile":
            ops.append(CommitOp("delete", value["path"]))
        elif key == "deletedFolder":
            ops.append(CommitOp("delete_folder", value["path"]))
        else:
            raise HubError(400, f"Unknown commit operation key: {key!r}")
    if header is None:
        raise HubError(400, "Commit payload has no header line")
    return header, ops


def _regular_file_op(value: Mapping[str, Any], store: HubStore) -> CommitOp:
    """Decode a ``file`` line (inline base64 content) into an ``add`` operation."""
    if value.get("encoding", "base64") != "base64":
        raise HubError(400, f"Unsupported encoding: {value.get('encoding')!r}")
    data = base64.b64decode(value["content"])
    return CommitOp("add", value["path"], store.put_blob(data))


def _lfs_file_op(value: Mapping[str, Any], store: HubStore) -> CommitOp:
    """Turn an ``lfsFile`` line into an ``add`` operation; the LFS object must already be uploaded."""
    oid = value["oid"]
    if value.get("algo", "sha256") != "sha256" or not store.has_blob(oid):
        raise HubError(422, f"LFS object {oid} for {value['path']} was not uploaded")
    size = store.blob_path(oid).stat().st_size
    if "size" in value and int(value["size"]) != size:
        raise HubError(422, f"LFS object {oid} has size {size}, not {value['size']}")
    data = store.read_blob(oid)
    return CommitOp("add", value["path"], FileEntry(size, oid, git_blob_oid(data), lfs=True))


# ---------------------------------------------------------------------------------------------- HTTP plumbing


@dataclass
class Request:
    """A parsed HTTP request, as seen by route handlers."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        """First value of query-string parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body decoded as JSON (``{}`` when empty)."""
        try:
            return json.loads(self.body) if self.body.strip() else {}
        except ValueError as exc:
            raise HubError(400, f"Invalid JSON body: {exc}") from exc


@dataclass
class Response:
    """What a route handler answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


def error_response(error: HubError) -> Response:
    """Render a :class:`HubError` the way the Hub does (JSON body + ``X-Error-*`` headers)."""
    headers = {"X-Error-Message": _header_safe(error.message), **error.headers}
    if error.error_code:
        headers["X-Error-Code"] = error.error_code
    return json_response({"error": error.message}, error.status, headers)


@dataclass
class _FailureRule:
    """A pending injected failure (see :meth:`LocalHub.fail_next`)."""

    path_substring: str
    status: int
    remaining: int
    method: str | None
    message: str
    headers: dict[str, str]

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request."""
        return self.remaining > 0 and self.path_substring in path and (self.method in (None, method))


_REPO = r"(?P<plural>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
_WEB_REPO = r"(?:(?P<prefix>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+?)"

#: (HTTP methods, path regex, handler method name of :class:`_Handler`)
_ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], str]] = [
    (methods, re.compile(pattern), name)
    for methods, pattern, name in [
        (("GET",), r"/api/whoami-v2", "whoami"),
        (("GET",), r"/api/agent-harnesses", "agent_harnesses"),
        (("POST",), r"/api/validate-yaml", "validate_yaml"),
        (("POST",), r"/api/repos/create", "create_repo"),
        (("DELETE", "POST"), r"/api/repos/delete", "delete_repo"),
        (("GET",), rf"/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
        (("POST",), rf"/api/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
        (("POST",), rf"/api/{_REPO}/commit/(?P<rev>[^/]+)", "commit"),
        (("GET",), rf"/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
        (("POST",), rf"/api/{_REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
        (("GET",), rf"/api/{_REPO}/commits/(?P<rev>[^/]+)", "commits"),
        (("GET",), rf"/api/{_REPO}/refs", "refs"),
        (("POST", "DELETE"), rf"/api/{_REPO}/branch/(?P<branch>[^/]+)", "branch"),
        (("POST",), rf"/{_WEB_REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
        (("PUT",), r"/lfs-objects/(?P<oid>[0-9a-f]{64})", "lfs_put"),
        (("POST",), r"/lfs-objects/(?P<oid>[0-9a-f]{64})/verify", "lfs_verify"),
        (("GET", "HEAD"), rf"/{_WEB_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ]
]


class _Server(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that knows its :class:`LocalHub` and its open connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: LocalHub) -> None:
        super().__init__(address, _Handler)
        self.hub = hub
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Shut down every open keep-alive connection so handler threads exit."""
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to ``h_<name>`` methods; keeps quiet and speaks HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "LocalHub/1.0"
    timeout = 60
    server: _Server

    # -- connection bookkeeping and logging

    def setup(self) -> None:
        """Register the connection so :meth:`LocalHub.stop` can close it."""
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Silence the default per-request stderr logging."""

    # -- entry points

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    @property
    def hub(self) -> LocalHub:
        """The hub this handler serves."""
        return self.server.hub

    @property
    def store(self) -> HubStore:
        """The hub's storage."""
        return self.server.hub.store

    def _dispatch(self) -> None:
        """Read the request, record it, apply injected failures, route it and write the response."""
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        split = urlsplit(self.path)
        request = Request(self.command, split.path, parse_qs(split.query), self.headers, body)
        self.hub.record_request(request.method, request.path)
        rule = self.hub.take_failure(request.method, request.path)
        if rule is not None:
            self._send(error_response(HubError(rule.status, rule.message, headers=rule.headers)))
            return
        self._send(self._route(request))

    def _route(self, request: Request) -> Response:
        """Find and run the handler of ``request``; turn exceptions into HTTP errors."""
        for methods, pattern, name in _ROUTES:
            match = pattern.fullmatch(request.path)
            if match and request.method in methods:
                request.params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                try:
                    return getattr(self, f"h_{name}")(request)
                except HubError as error:
                    return error_response(error)
                except Exception as exc:  # noqa: BLE001 - report any server bug to the client and the test
                    self.hub.server_errors.append(traceback.format_exc())
                    return error_response(HubError(500, f"LocalHub internal error: {exc!r}"))
        return error_response(HubError(404, f"LocalHub has no route for {request.method} {request.path}"))

    def _read_body(self) -> bytes:
        """Read the whole request body (``Content-Length`` or chunked) so keep-alive stays in sync."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        """Decode a ``Transfer-Encoding: chunked`` body."""
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: Response) -> None:
        """Write ``response`` (no body for ``HEAD``, but the full ``Content-Length``)."""
        self.send_response(response.status)
        headers = {"Content-Length": str(len(response.body)), **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    # -- auth

    def _token_state(self) -> str:
        """``"valid"``, ``"missing"`` or ``"invalid"`` (always ``"valid"`` when the hub has no token)."""
        if self.hub.token is None:
            return "valid"
        header = self.headers.get("Authorization")
        if not header:
            return "missing"
        return "valid" if header == f"Bearer {self.hub.token}" else "invalid"

    def _require_token(self) -> None:
        """Reject requests without the hub's token."""
        state = self._token_state()
        if state == "invalid":
            raise HubError(401, "Invalid credentials in Authorization header")
        if state == "missing":
            raise HubError(401, "You must be authenticated to access this resource (no Authorization header)")

    def _repo(self, request: Request, write: bool = False) -> Repo:
        """The repo named by the route, after auth checks (private repos are hidden from anonymous readers)."""
        if write:
            self._require_token()
        elif self._token_state() == "invalid":
            raise HubError(401, "Invalid credentials in Authorization header")
        plural = request.params.get("plural") or request.params.get("prefix") or "models"
        repo = self.store.get_repo(_PLURAL_TO_TYPE[plural], request.params["repo"])
        if repo.private and self._token_state() != "valid":
            raise HubError(401, f"Repository not found: {repo.repo_id}", "RepoNotFound")
        return repo

    @staticmethod
    def _reject_pull_requests(request: Request) -> None:
        """Pull requests are out of scope of this server."""
        if _is_true(request.arg("create_pr")):
            raise HubError(501, "LocalHub does not implement pull requests (create_pr=True)")

    # -- account and misc endpoints

    def h_whoami(self, request: Request) -> Response:
        """``GET /api/whoami-v2``."""
        self._require_token()
        orgs = [{"type": "org", "name": org, "fullname": org, "roleInOrg": "admin"} for org in self.hub.orgs]
        return json_response(
            {
                "type": "user",
                "id": hashlib.sha1(self.hub.user.encode()).hexdigest()[:24],
                "name": self.hub.user,
                "fullname": self.hub.user,
                "email": f"{self.hub.user}@localhost",
                "emailVerified": True,
                "isPro": False,
                "orgs": orgs,
                "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
            }
        )

    def h_agent_harnesses(self, request: Request) -> Response:
        """``GET /api/agent-harnesses`` (fetched once by ``huggingface_hub`` to build its user agent)."""
        return json_response({"standardEnvVars": [], "harnesses": {}})

    def h_validate_yaml(self, request: Request) -> Response:
        """``POST /api/validate-yaml``: accept every model card."""
        return json_response({"errors": [], "warnings": []})

    # -- repo management

    def h_create_repo(self, request: Request) -> Response:
        """``POST /api/repos/create``."""
        self._require_token()
        payload = request.json()
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {repo_type}")
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        try:
            repo = self.store.create_repo(repo_type, repo_id, private)
        except HubError as error:
            if error.status == 409:
                url = f"{self.hub.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}"
                return json_response({"error": error.message, "url": url}, 409, {"X-Error-Message": error.message})
            raise
        url = f"{self.hub.endpoint}/{repo.url_path}"
        return json_response({"url": url, "name": repo_id, "id": hashlib.sha1(url.encode()).hexdigest()[:24]})

    def h_delete_repo(self, request: Request) -> Response:
        """``DELETE /api/repos/delete`` (JSON body with ``name``, ``organization``, ``type``)."""
        self._require_token()
        payload = request.json()
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        self.store.delete_repo(payload.get("type") or "model", repo_id)
        return json_response({})

    def h_repo_info(self, request: Request) -> Response:
        """``GET /api/{type}/{repo_id}[/revision/{rev}]`` (``model_info``, ``dataset_info``, ``repo_info``)."""
        repo = self._repo(request)
        commit = repo.resolve(request.params.get("rev", DEFAULT_BRANCH))
        with_blobs = _is_true(request.arg("blobs"))
        siblings = [_sibling(path, entry, with_blobs) for path, entry in sorted(commit.files.items())]
        return json_response(
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.sha,
                "lastModified": commit.date,
                "createdAt": repo.created_at,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(entry.size for entry in commit.files.values()),
            }
        )

    def h_refs(self, request: Request) -> Response:
        """``GET /api/{type}/{repo_id}/refs``."""
        repo = self._repo(request)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha} for name, sha in repo.branches.items()
        ]
        return json_response({"branches": branches, "tags": [], "converts": [], "pullRequests": []})

    def h_commits(self, request: Request) -> Response:
        """``GET /api/{type}/{repo_id}/commits/{rev}`` (single page)."""
        repo = self._repo(request)
        items = [
            {"id": c.sha, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": self.hub.user}]}
            for c in repo.history(request.params["rev"])
        ]
        return json_response(items)

    def h_branch(self, request: Request) -> Response:
        """``POST`` (create) or ``DELETE`` ``/api/{type}/{repo_id}/branch/{branch}``."""
        repo = self._repo(request, write=True)
        branch = request.params["branch"]
        if request.method == "DELETE":
            self.store.delete_branch(repo, branch)
        else:
            self.store.create_branch(repo, branch, request.json().get("startingPoint"))
        return json_response({})

    # -- uploads

    def h_preupload(self, request: Request) -> Response:
        """``POST /api/{type}/{repo_id}/preupload/{rev}``: tell the client how to upload each file."""
        repo = self._repo(request, write=True)
        self._reject_pull_requests(request)
        commit = repo.resolve(request.params["rev"])
        files = []
        for item in request.json().get("files", []):
            mode = self.hub.upload_mode(int(item.get("size", 0)))
            existing = commit.files.get(item["path"])
            oid = None if existing is None else (existing.sha256 if mode == "lfs" else existing.blob_oid)
            files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return json_response({"files": files, "commitOid": commit.sha})

    def h_commit(self, request: Request) -> Response:
        """``POST /api/{type}/{repo_id}/commit/{rev}``: create a commit from an NDJSON payload."""
        repo = self._repo(request, write=True)
        self._reject_pull_requests(request)
        header, ops = parse_commit_payload(request.body, self.store)
        commit = self.store.commit(
            repo,
            request.params["rev"],
            ops,
            title=header.get("summary") or "Commit",
            message=header.get("description") or "",
            parent_commit=header.get("parentCommit"),
        )
        url = f"{self.hub.endpoint}/{repo.url_path}/commit/{commit.sha}"
        return json_response({"success": True, "commitOid": commit.sha, "commitUrl": url, "hookOutput": ""})

    def h_lfs_batch(self, request: Request) -> Response:
        """``POST /{prefix}{repo_id}.git/info/lfs/objects/batch`` (upload operation, basic transfer)."""
        self._repo(request, write=True)
        payload = request.json()
        if payload.get("operation") != "upload":
            raise HubError(501, "LocalHub only implements the LFS 'upload' operation")
        objects = [self._lfs_object(obj["oid"], int(obj["size"])) for obj in payload.get("objects", [])]
        lfs_json = {"Content-Type": "application/vnd.git-lfs+json"}
        return json_response({"transfer": "basic", "objects": objects}, headers=lfs_json)

    def _lfs_object(self, oid: str, size: int) -> dict[str, Any]:
        """One object of an LFS batch answer: no ``actions`` when the blob is already stored."""
        item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
        if not self.store.has_blob(oid):
            href = f"{self.hub.endpoint}/lfs-objects/{oid}"
            item["actions"] = {
                "upload": {"href": href, "header": {}},
                "verify": {"href": f"{href}/verify", "header": {}},
            }
        return item

    def h_lfs_put(self, request: Request) -> Response:
        """``PUT /lfs-objects/{sha256}``: the storage URL of the LFS upload (like S3: no auth needed)."""
        oid = request.params["oid"]
        entry = self.store.put_blob(request.body) if hashlib.sha256(request.body).hexdigest() == oid else None
        if entry is None:
            raise HubError(400, f"Uploaded content does not match sha256 {oid}")
        return Response(200, b"", {"ETag": f'"{oid}"'})

    def h_lfs_verify(self, request: Request) -> Response:
        """``POST /lfs-objects/{sha256}/verify``."""
        if not self.store.has_blob(request.params["oid"]):
            raise HubError(404, f"LFS object {request.params['oid']} not found")
        return json_response({})

    # -- reads

    def h_tree(self, request: Request) -> Response:
        """``GET /api/{type}/{repo_id}/tree/{rev}[/{path}]`` with ``recursive`` and ``expand``."""
        repo = self._repo(request)
        revision = request.params["rev"]
        commit = repo.resolve(revision)
        base = request.params.get("path", "").strip("/")
        entries = _tree_entries(commit.files, base, _is_true(request.arg("recursive")))
        if base and not entries:
            raise HubError(404, f"Path not found: {base}", "EntryNotFound", headers={"X-Repo-Commit": commit.sha})
        expand = _is_true(request.arg("expand"))
        return json_response([self._tree_item(repo, commit, path, expand) for path in entries])

    def h_paths_info(self, request: Request) -> Response:
        """``POST /api/{type}/{repo_id}/paths-info/{rev}`` (form or JSON body with ``paths`` and ``expand``)."""
        repo = self._repo(request)
        commit = repo.resolve(request.params["rev"])
        if "json" in request.headers.get("Content-Type", ""):
            payload = request.json()
            paths, expand = list(payload.get("paths", [])), bool(payload.get("expand"))
        else:
            form = parse_qs(request.body.decode())
            paths, expand = form.get("paths", []), _is_true((form.get("expand") or ["false"])[0])
        dirs = _directories(commit.files)
        found = [p.strip("/") for p in paths if p.strip("/") in commit.files or p.strip("/") in dirs]
        return json_response([self._tree_item(repo, commit, path, expand) for path in found])

    def _tree_item(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        """A tree-listing entry for a file or a directory of ``commit``."""
        entry = commit.files.get(path)
        if entry is None:
            prefix = path + "/"
            listing = sorted((p, e.git_oid) for p, e in commit.files.items() if p.startswith(prefix))
            item: dict[str, Any] = {
                "type": "directory",
                "oid": hashlib.sha1(repr(listing).encode()).hexdigest(),
                "size": 0,
                "path": path,
            }
        else:
            item = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
            if entry.lfs:
                item["lfs"] = entry.lfs_info()
        if expand and entry is not None:
            last = repo.last_commit_for(commit.sha, path)
            item["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
        return item

    def h_resolve(self, request: Request) -> Response:
        """``GET``/``HEAD /{prefix}{repo_id}/resolve/{rev}/{path}`` with the headers ``hf_hub_download`` needs."""
        repo = self._repo(request)
        commit = repo.resolve(request.params["rev"])
        path = request.params["path"]
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": commit.sha})
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{entry.git_oid}"',
            "X-Repo-Commit": commit.sha,
            "Content-Disposition": f'attachment; filename="{_header_safe(path.rsplit("/", 1)[-1])}"',
        }
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        data = self.store.read_blob(entry.sha256)
        return _ranged(data, request.headers.get("Range"), headers)


def _sibling(path: str, entry: FileEntry, with_blobs: bool) -> dict[str, Any]:
    """A ``siblings`` item of ``model_info`` (sizes and blob ids only with ``blobs=True``, like the Hub)."""
    item: dict[str, Any] = {"rfilename": path}
    if with_blobs:
        item.update({"size": entry.size, "blobId": entry.git_oid})
        if entry.lfs:
            item["lfs"] = {
                "sha256": entry.sha256,
                "size": entry.size,
                "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
            }
    return item


def _directories(files: Mapping[str, FileEntry]) -> set[str]:
    """Every directory path that contains at least one file."""
    dirs: set[str] = set()
    for path in files:
        parts = path.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return dirs


def _tree_entries(files: Mapping[str, FileEntry], base: str, recursive: bool) -> list[str]:
    """Paths (files and directories) listed by a tree request on directory ``base`` (``""`` = root)."""
    prefix = f"{base}/" if base else ""
    candidates = set(files) | _directories(files)
    out = []
    for path in candidates:
        if not path.startswith(prefix) or path == base:
            continue
        if recursive or "/" not in path[len(prefix) :]:
            out.append(path)
    return sorted(out)


def _ranged(data: bytes, range_header: str | None, headers: dict[str, str]) -> Response:
    """Serve ``data`` whole, or the single ``bytes=start-[end]`` / ``bytes=-suffix`` range asked for."""
    if not range_header:
        return Response(200, data, headers)
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
    total = len(data)
    if match is None or match.groups() == ("", ""):
        return Response(416, b"", {**headers, "Content-Range": f"bytes */{total}"})
    start_s, end_s = match.groups()
    if start_s:
        start, end = int(start_s), min(int(end_s) if end_s else total - 1, total - 1)
    else:
        start, end = max(total - int(end_s), 0), total - 1
    if start >= total or start > end:
        return Response(416, b"", {**headers, "Content-Range": f"bytes */{total}"})
    return Response(206, data[start : end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{total}"})


# ------------------------------------------------------------------------------------------------- public API


class LocalHub:
    """A Hub-compatible HTTP server running in a background thread.

    Args:
        root: Directory holding blobs and ``state.json``; a temporary directory (deleted on :meth:`stop`) when
            ``None``.  Reusing a directory restores its repos, e.g. to simulate a server restart.
        token: When set, write endpoints require ``Authorization: Bearer <token>``.
        user: Name returned by ``whoami`` and namespace of repos created without an organization.
        orgs: Organizations listed by ``whoami`` (any namespace is accepted by ``create_repo``).
        lfs_threshold: Files of at least this many bytes are uploaded as LFS (``None``: everything regular).

    Example:
        >>> with LocalHub(token="hf_x") as hub:
        ...     hub.fail_next("/commit/", status=500, times=1)
        ...     ...  # point huggingface_hub at hub.endpoint, push, assert on hub.requests
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        token: str | None = None,
        user: str = "local-user",
        orgs: Sequence[str] = ("ltzoo", "org"),
        lfs_threshold: int | None = None,
    ) -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="localhub-")) if root is None else Path(root)
        self.store = HubStore(self.root)
        self.token = token
        self.user = user
        self.orgs = tuple(orgs)
        self.lfs_threshold = lfs_threshold
        #: Every request seen, as ``(method, path)`` (path without the query string), in arrival order.
        self.requests: list[tuple[str, str]] = []
        #: Tracebacks of unexpected exceptions raised by handlers (answered as HTTP 500).
        self.server_errors: list[str] = []
        self._failures: list[_FailureRule] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> LocalHub:
        """Bind ``127.0.0.1`` on a free port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="LocalHub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and delete the temporary root (if the hub created it)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = self._thread = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("LocalHub is not running; use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- failure injection and request log

    def fail_next(
        self,
        path_substring: str,
        status: int = 500,
        times: int = 1,
        *,
        method: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path contains ``path_substring`` with HTTP ``status``.

        ``method`` restricts the rule to one HTTP method; ``headers`` are added to the error response (e.g.
        ``{"X-Error-Code": "RepoNotFound"}``).  Rules are consumed in registration order.
        """
        rule = _FailureRule(
            path_substring,
            status,
            times,
            method.upper() if method else None,
            message or f"Injected failure (HTTP {status})",
            dict(headers or {}),
        )
        with self._lock:
            self._failures.append(rule)

    def clear_failures(self) -> None:
        """Drop all pending injected failures."""
        with self._lock:
            self._failures.clear()

    def pending_failures(self) -> int:
        """How many injected failures have not been served yet."""
        with self._lock:
            return sum(rule.remaining for rule in self._failures)

    def request_count(self, path_substring: str = "", method: str | None = None) -> int:
        """Number of recorded requests whose path contains ``path_substring`` (and with ``method``, if given)."""
        return sum(1 for m, p in list(self.requests) if path_substring in p and (method is None or m == method.upper()))

    def record_request(self, method: str, path: str) -> None:
        """Log a request (called by the handler)."""
        with self._lock:
            self.requests.append((method, path))

    def take_failure(self, method: str, path: str) -> _FailureRule | None:
        """Consume and return the first injected failure matching the request, if any."""
        with self._lock:
            for rule in self._failures:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    return rule
        return None

    def upload_mode(self, size: int) -> str:
        """The ``uploadMode`` answered by ``preupload`` for a file of ``size`` bytes."""
        if self.lfs_threshold is not None and size > 0 and size >= self.lfs_threshold:
            return "lfs"
        return "regular"

    # -- server-side inspection for assertions

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        """The stored repo (raises :class:`HubError` if missing)."""
        return self.store.get_repo(repo_type, repo_id)

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        """Whether the repo exists on the server."""
        return (repo_type, repo_id) in self.store.repos

    def head(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> str:
        """Commit sha that ``revision`` resolves to."""
        return self.repo(repo_id, repo_type).resolve(revision).sha

    def history(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> list[Commit]:
        """First-parent commit history of ``revision``, newest first (includes the initial commit)."""
        return self.repo(repo_id, repo_type).history(revision)

    def files(self, repo_id: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> dict[str, FileEntry]:
        """``path -> FileEntry`` of ``revision``."""
        return dict(self.repo(repo_id, repo_type).resolve(revision).files)

    def read_file(self, repo_id: str, path: str, revision: str = DEFAULT_BRANCH, repo_type: str = "model") -> bytes:
        """Content of ``path`` at ``revision``."""
        entry = self.files(repo_id, revision, repo_type).get(path)
        if entry is None:
            raise KeyError(f"{path} not in {repo_id}@{revision}")
        return self.store.read_blob(entry.sha256)


# --------------------------------------------------------------------------- pointing huggingface_hub at a hub


def patch_huggingface_hub(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: str | os.PathLike[str], token: str | None
) -> None:
    """Point an already-imported ``huggingface_hub`` (and new subprocesses) at ``endpoint`` and ``hf_home``.

    ``huggingface_hub`` reads its environment once, at import time, into ``huggingface_hub.constants``; some
    modules copied values at import (``hf_api.api`` is an ``HfApi`` whose ``endpoint`` is fixed, and the
    module-level ``model_info``/``create_repo``/... functions are its bound methods; ``utils._cache_manager``
    and ``utils._cache_assets`` copied cache paths; ``utils.tqdm`` copied the progress-bar switch).  This patches
    the environment *and* those copies, all through ``monkeypatch`` so everything is undone after the test.
    Offline mode is switched off; use :func:`set_hf_offline` to turn it on.
    """
    import huggingface_hub
    from huggingface_hub import constants, hf_api
    from huggingface_hub.utils import _cache_assets, _cache_manager
    from huggingface_hub.utils import tqdm as hf_tqdm

    home = Path(hf_home)
    home.mkdir(parents=True, exist_ok=True)
    hub_cache, assets, xet = str(home / "hub"), str(home / "assets"), str(home / "xet")
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": hub_cache,
        "HF_ASSETS_CACHE": assets,
        "HF_XET_CACHE": xet,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_OFFLINE": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HUGGINGFACE_HUB_CACHE", "HUGGINGFACE_ASSETS_CACHE", "TRANSFORMERS_OFFLINE", "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)

    constant_values: dict[str, Any] = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(getattr(constants, "HF_URL_HOSTS", frozenset())) | {"127.0.0.1"},
        "HF_HOME": str(home),
        "HF_HUB_CACHE": hub_cache,
        "HUGGINGFACE_HUB_CACHE": hub_cache,
        "HF_ASSETS_CACHE": assets,
        "HUGGINGFACE_ASSETS_CACHE": assets,
        "HF_XET_CACHE": xet,
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(home / ".check_for_update_done"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_PROGRESS_BARS": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
    }
    for name, value in constant_values.items():
        monkeypatch.setattr(constants, name, value, raising=False)
    monkeypatch.setattr(
        huggingface_hub, "HUGGINGFACE_CO_URL_TEMPLATE", constant_values["HUGGINGFACE_CO_URL_TEMPLATE"], raising=False
    )
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", hub_cache, raising=False)
    monkeypatch.setattr(_cache_assets, "HF_ASSETS_CACHE", assets, raising=False)
    monkeypatch.setattr(hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", True, raising=False)


def set_hf_offline(monkeypatch: pytest.MonkeyPatch, offline: bool = True) -> None:
    """Switch ``huggingface_hub`` offline mode (``HF_HUB_OFFLINE``) in the environment and in its constants.

    ``huggingface_hub.constants.is_offline_mode()`` returns the ``HF_HUB_OFFLINE`` constant read at import
    time; while it is true, every request through ``get_session()`` raises ``OfflineModeIsEnabled`` and
    downloads are served from the cache only.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


class _NoSleepTime:
    """Stand-in for the ``time`` module that records ``sleep`` calls instead of sleeping."""

    def __init__(self, sleeps: list[float]) -> None:
        self._sleeps = sleeps

    def sleep(self, seconds: float) -> None:
        """Record ``seconds`` and return immediately."""
        self._sleeps.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def disable_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make ``huggingface_hub``'s HTTP back-off (``http_backoff``: up to 5 retries on 408/429/5xx, sleeping
    1, 2, 4, 8, 8 s) retry without sleeping.  Returns the list the skipped sleep durations are appended to."""
    from huggingface_hub.utils import _http

    sleeps: list[float] = []
    monkeypatch.setattr(_http, "time", _NoSleepTime(sleeps))
    return sleeps
