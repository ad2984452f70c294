"""Persistent, crash-safe storage of Hub repositories for the local Hub server.

Layout under ``root`` (plain files, readable by hand)::

    blobs/<sha256>                         file contents, content-addressed, immutable
    repos/<type>s/<namespace>/<name>/
        repo.json                          id, type, private, createdAt
        refs.json                          {"main": <commit oid>, "refs/pr/1": <oid>, ...}
        commits/<oid>.json                 parents, title, message, date, full file table
    tmp/                                   staging area for atomic writes

A commit writes its blobs, then its commit file, then swaps ``refs.json`` with one
``os.replace``: a crash at any point leaves the previous revision served intact.
Each commit stores the full file table (path -> sha256, size, git oid), so reading
any revision is one small JSON read; file contents are shared between revisions.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import HfSpiderError

REPO_TYPES = ("model", "dataset", "space")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_OID_RE = re.compile(r"^[0-9a-f]{40}$")
_FRONT_MATTER_RE = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.DOTALL)
_INITIAL_GITATTRIBUTES = (b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                          b"*.parquet filter=lfs diff=lfs merge=lfs -text\n")


class HubStorageError(Exception):
    """Base error; ``code`` is the Hub's ``X-Error-Code`` and ``status`` the HTTP status to answer."""

    status = 400
    code: str | None = None


class RepoNotFound(HubStorageError):
    status, code = 404, "RepoNotFound"


class RevisionNotFound(HubStorageError):
    status, code = 404, "RevisionNotFound"


class EntryNotFound(HubStorageError):
    status, code = 404, "EntryNotFound"


class RepoExists(HubStorageError):
    status = 409


class CommitConflict(HubStorageError):
    """``parentCommit`` is not the head of the branch any more (the Hub answers 412)."""

    status = 412


class BadRequest(HubStorageError):
    status = 400


class RootInUse(HubStorageError, HfSpiderError):
    """Another server holds the root: two writers on one root lose commits (each keeps its own heads)."""


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob: what the Hub reports as ``blobId`` and ETag of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def parse_card_data(readme: bytes) -> dict[str, Any]:
    """YAML front matter of a README (the Hub's ``cardData``); ``{}`` when absent or invalid."""
    match = _FRONT_MATTER_RE.match(readme.decode("utf-8", errors="replace"))
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _lock_root(root: Path):
    """An exclusive lock on ``root`` for this server's lifetime; :class:`RootInUse` naming the holder otherwise."""
    from filelock import FileLock, Timeout

    lock = FileLock(root / "server.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = (root / "server.pid").read_text().strip()
        except OSError:
            holder = "unknown"
        raise RootInUse(f"{root} is in use by another Hub server (pid {holder}); stop it or choose another root"
                        ) from None
    (root / "server.pid").write_text(f"{os.getpid()}\n")
    return lock


def _atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int
    oid: str  # git blob sha1

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "oid": self.oid}


@dataclass(frozen=True)
class Commit:
    oid: str
    parents: tuple[str, ...]
    title: str
    message: str
    date: str
    author: str
    files: dict[str, FileEntry]


@dataclass
class RepoState:
    """In-memory view of one repository: its metadata, refs and head summary (for fast listings)."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    refs: dict[str, str]
    head: Commit | None = None
    card_data: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def tags(self) -> list[str]:
        """Tags as the Hub derives them: card ``tags``, library, licence, datasets, file formats."""
        card = self.card_data
        tags = [str(t) for t in _as_list(card.get("tags"))]
        for key in ("library_name", "pipeline_tag"):
            if isinstance(card.get(key), str):
                tags.append(card[key])
        tags += [f"license:{lic}" for lic in _as_list(card.get("license"))]
        if self.repo_type == "model":
            tags += [f"dataset:{d}" for d in _as_list(card.get("datasets"))]
        files = self.head.files if self.head else {}
        if any(p.endswith(".safetensors") for p in files):
            tags.append("safetensors")
        if any(p.endswith(".parquet") for p in files):
            tags.append("format:parquet")
        return list(dict.fromkeys(tags))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class Operation:
    """One line of a commit: ``add`` (with content), ``delete`` a file, or ``delete_folder``."""

    kind: str
    path: str
    content: bytes | None = None


class HubStorage:
    """Repositories, revisions and files under one root folder. Thread-safe."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._blobs = self.root / "blobs"
        self._repos = self.root / "repos"
        self._tmp = self.root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self._root_lock = _lock_root(self.root)  # before anything is read or cleaned up
        for d in (self._blobs, self._repos, self._tmp):
            d.mkdir(parents=True, exist_ok=True)
        for stale in self._tmp.iterdir():  # leftovers of a crash mid-write
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        self._lock = threading.RLock()
        self._repos_state: dict[tuple[str, str], RepoState] = {}
        self._load_all()

    def close(self) -> None:
        """Release the root for another server."""
        self._root_lock.release()

    # -- loading -------------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self._repos / f"{repo_type}s" / repo_id

    def _load_all(self) -> None:
        for meta_file in self._repos.glob("*s/*/*/repo.json"):
            meta = json.loads(meta_file.read_text())
            refs = json.loads((meta_file.parent / "refs.json").read_text())
            state = RepoState(meta["type"], meta["id"], meta.get("private", False), meta["createdAt"], refs)
            self._refresh_head(state)
            self._repos_state[(state.repo_type, state.repo_id)] = state

    def _refresh_head(self, state: RepoState) -> None:
        state.head = self._read_commit(state, state.refs["main"])
        readme = state.head.files.get("README.md")
        state.card_data = parse_card_data(self.read_blob(readme)) if readme else {}

    def _read_commit(self, state: RepoState, oid: str) -> Commit:
        raw = json.loads((self._repo_dir(state.repo_type, state.repo_id) / "commits" / f"{oid}.json").read_text())
        files = {p: FileEntry(p, **e) for p, e in raw["files"].items()}
        return Commit(oid, tuple(raw["parents"]), raw["title"], raw["message"], raw["date"], raw["author"], files)

    # -- repositories --------------------------------------------------------------------------
    def get(self, repo_type: str, repo_id: str) -> RepoState:
        try:
            return self._repos_state[(repo_type, repo_id)]
        except KeyError:
            raise RepoNotFound(f"Repository {repo_type}/{repo_id} not found") from None

    def list_repos(self, repo_type: str) -> list[RepoState]:
        return [s for (t, _), s in list(self._repos_state.items()) if t == repo_type]

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool = False, author: str = "") -> RepoState:
        if repo_type not in REPO_TYPES:
            raise BadRequest(f"Invalid repo type {repo_type!r}")
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(_NAME_RE.match(p) for p in parts) or ".." in repo_id:
            raise BadRequest(f"Invalid repo id {repo_id!r}: "
                             "expected 'namespace/name' of letters, digits, '-', '_', '.'")
        with self._lock:
            if (repo_type, repo_id) in self._repos_state:
                raise RepoExists(f"You already created this {repo_type} repo: {repo_id}")
            staging = self._tmp / uuid.uuid4().hex
            (staging / "commits").mkdir(parents=True)
            created = utcnow()
            state = RepoState(repo_type, repo_id, private, created, refs={})
            files = {".gitattributes": self._store_blob(_INITIAL_GITATTRIBUTES, ".gitattributes")}
            oid = self._write_commit(staging, (), "initial commit", "", author, files)
            (staging / "repo.json").write_text(
                json.dumps({"id": repo_id, "type": repo_type, "private": private, "createdAt": created})
            )
            (staging / "refs.json").write_text(json.dumps({"main": oid}))
            target = self._repo_dir(repo_type, repo_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)  # the repo appears whole or not at all
            state.refs = {"main": oid}
            self._refresh_head(state)
            self._repos_state[(repo_type, repo_id)] = state
            return state

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            self.get(repo_type, repo_id)
            trash = self._tmp / uuid.uuid4().hex
            os.replace(self._repo_dir(repo_type, repo_id), trash)
            del self._repos_state[(repo_type, repo_id)]
        shutil.rmtree(trash, ignore_errors=True)

    # -- revisions -----------------------------------------------------------------------------
    def resolve(self, state: RepoState, revision: str | None) -> Commit:
        """A branch name, ``refs/pr/N`` or a full commit oid -> the commit."""
        revision = revision or "main"
        oid = state.refs.get(revision) or state.refs.get(revision.removeprefix("refs/heads/"))
        commits = self._repo_dir(state.repo_type, state.repo_id) / "commits"
        if oid is None and _OID_RE.match(revision) and (commits / f"{revision}.json").exists():
            oid = revision
        if oid is None:
            raise RevisionNotFound(f"Invalid rev id: {revision}")
        return state.head if state.head and oid == state.head.oid else self._read_commit(state, oid)

    def history(self, state: RepoState, revision: str | None) -> Iterator[Commit]:
        commit: Commit | None = self.resolve(state, revision)
        while commit is not None:
            yield commit
            commit = self._read_commit(state, commit.parents[0]) if commit.parents else None

    def commit(
        self,
        state: RepoState,
        operations: Iterable[Operation],
        *,
        revision: str = "main",
        title: str,
        message: str = "",
        author: str = "",
        parent_commit: str | None = None,
        create_pr: bool = False,
    ) -> tuple[str, str]:
        """Apply ``operations`` on top of ``revision`` as one commit; returns (commit oid, ref updated)."""
        with self._lock:
            base = self.resolve(state, revision)
            if parent_commit is not None and parent_commit != base.oid:
                raise CommitConflict(f"A commit has happened since {parent_commit}. Please refresh and try again.")
            files = dict(base.files)
            for op in operations:
                if op.kind == "add":
                    files[op.path] = self._store_blob(op.content or b"", op.path)
                elif op.kind == "delete":
                    if op.path not in files:
                        raise EntryNotFound(f"File {op.path} not found in {revision}")
                    del files[op.path]
                elif op.kind == "delete_folder":
                    prefix = op.path.rstrip("/") + "/"
                    files = {p: e for p, e in files.items() if not p.startswith(prefix)}
            if create_pr:
                numbers = [int(r.rsplit("/", 1)[1]) for r in state.refs if r.startswith("refs/pr/")]
                ref = f"refs/pr/{max(numbers, default=0) + 1}"
            elif revision in state.refs:
                ref = revision
            else:  # committing on top of a commit oid is only possible through a PR
                raise BadRequest(f"Cannot commit to {revision!r}: not a branch")
            repo_dir = self._repo_dir(state.repo_type, state.repo_id)
            oid = self._write_commit(repo_dir, (base.oid,), title, message, author, files)
            refs = {**state.refs, ref: oid}
            _atomic_write(repo_dir / "refs.json", json.dumps(refs).encode(), self._tmp)  # the commit point
            state.refs = refs
            if ref == "main":
                self._refresh_head(state)
            return oid, ref

    def _write_commit(
        self, repo_dir: Path, parents: tuple[str, ...], title: str, message: str, author: str,
        files: dict[str, FileEntry],
    ) -> str:
        body = {
            "parents": list(parents),
            "title": title,
            "message": message,
            "date": utcnow(),
            "author": author,
            "files": {p: e.to_json() for p, e in sorted(files.items())},
        }
        raw = json.dumps(body, sort_keys=True).encode()
        oid = hashlib.sha1(b"commit %d\0" % len(raw) + raw + uuid.uuid4().bytes).hexdigest()
        _atomic_write(repo_dir / "commits" / f"{oid}.json", raw, self._tmp)
        return oid

    # -- blobs ---------------------------------------------------------------------------------
    def _store_blob(self, content: bytes, path: str) -> FileEntry:
        digest = hashlib.sha256(content).hexdigest()
        target = self._blobs / digest
        if not target.exists():
            _atomic_write(target, content, self._tmp)
        return FileEntry(path, digest, len(content), git_blob_oid(content))

    def read_blob(self, entry: FileEntry) -> bytes:
        return (self._blobs / entry.sha256).read_bytes()

    def blob_path(self, entry: FileEntry) -> Path:
        return self._blobs / entry.sha256


def decode_commit_payload(lines: Iterable[bytes]) -> tuple[dict[str, Any], list[Operation]]:
    """Parse the NDJSON body of ``POST .../commit/{rev}`` into its header and operations."""
    header: dict[str, Any] = {}
    operations: list[Operation] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
        except (ValueError, KeyError, TypeError) as e:
            raise BadRequest(f"Malformed commit payload line: {e}") from None
        path = str(value.get("path", "")).lstrip("/") if isinstance(value, dict) else ""
        if key == "header":
            header = value
        elif key == "file":
            if value.get("encoding", "base64") != "base64":
                raise BadRequest(f"Unsupported encoding {value.get('encoding')!r}")
            operations.append(Operation("add", _check_path(path), base64.b64decode(value["content"])))
        elif key == "deletedFile":
            operations.append(Operation("delete", _check_path(path)))
        elif key == "deletedFolder":
            operations.append(Operation("delete_folder", _check_path(path.rstrip("/"))))
        else:
            raise BadRequest(f"Unsupported commit operation {key!r} (this server stores every file as 'regular')")
    if "summary" not in header:
        raise BadRequest("Commit payload has no header with a summary")
    return header, operations


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or path.startswith(".git/"):
        raise BadRequest(f"Invalid path in repo: {path!r}")
    return path
