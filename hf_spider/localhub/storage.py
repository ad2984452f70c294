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
Every file is written to ``tmp/``, fsynced, renamed into place, and its folder fsynced,
so an acknowledged commit survives a power cut. Each commit stores the full file table
(path -> sha256, size, git oid), so reading any revision is one small JSON read; file
contents are shared between revisions. Blobs of commits that never landed (a crash
mid-commit, a deleted repo) are removed by :meth:`HubStorage.gc`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import logging
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

logger = logging.getLogger(__name__)

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


_CHUNK = 1 << 20


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (a file's own fsync does not cover its name)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        for start in range(0, len(view), _CHUNK):
            chunk = view[start : start + _CHUNK]
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    """``path`` holds either its old contents or all of ``data``, never a part, whenever the process dies."""
    tmp = tmp_dir / f"{uuid.uuid4().hex}.tmp"
    _write_durably(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass(frozen=True)
class GcReport:
    commits_removed: int
    blobs_removed: int
    bytes_freed: int


def _blobs_named_in(commits_dir: Path) -> set[str]:
    """The blobs the readable commit files of a folder name."""
    named = set()
    for path in commits_dir.glob("*.json"):
        try:
            named.update(e["sha256"] for e in json.loads(path.read_text())["files"].values())
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return named


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
        self.damaged: dict[str, str] = {}  # repo folder (relative to root) -> why it was skipped
        self._load_all()

    def close(self) -> None:
        """Release the root for another server."""
        self._root_lock.release()

    # -- loading -------------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self._repos / f"{repo_type}s" / repo_id

    def _load_all(self) -> None:
        for repo_dir in sorted(self._repos.glob("*s/*/*")):
            try:
                state = self._load_repo(repo_dir)
            except (OSError, ValueError, KeyError, TypeError) as e:  # one damaged repo must not stop the server
                where = str(repo_dir.relative_to(self.root))
                self.damaged[where] = f"{type(e).__name__}: {e}".replace(str(self.root), ".")
                logger.warning("Skipping damaged repository %s (%s)", where, self.damaged[where])
                continue
            self._repos_state[(state.repo_type, state.repo_id)] = state

    def _load_repo(self, repo_dir: Path) -> RepoState:
        meta = json.loads((repo_dir / "repo.json").read_text())
        refs = json.loads((repo_dir / "refs.json").read_text())
        if not isinstance(refs, dict) or "main" not in refs:
            raise ValueError("refs.json has no main branch")
        state = RepoState(meta["type"], meta["id"], bool(meta.get("private", False)), meta["createdAt"], refs)
        if self._repo_dir(state.repo_type, state.repo_id) != repo_dir:
            raise ValueError(f"repo.json names {state.repo_type} {state.repo_id}, another folder")
        self._refresh_head(state)
        return state

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
            meta = {"id": repo_id, "type": repo_type, "private": private, "createdAt": created}
            _write_durably(staging / "repo.json", json.dumps(meta).encode())
            _write_durably(staging / "refs.json", json.dumps({"main": oid}).encode())
            _fsync_dir(staging)
            target = self._repo_dir(repo_type, repo_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)  # the repo appears whole or not at all
            for folder in (target.parent, target.parent.parent, self._repos):  # new folders' names too
                _fsync_dir(folder)
            state.refs = {"main": oid}
            self._refresh_head(state)
            self._repos_state[(repo_type, repo_id)] = state
            return state

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            self.get(repo_type, repo_id)
            trash = self._tmp / uuid.uuid4().hex
            repo_dir = self._repo_dir(repo_type, repo_id)
            os.replace(repo_dir, trash)
            _fsync_dir(repo_dir.parent)
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

    # -- garbage -------------------------------------------------------------------------------
    def gc(self) -> GcReport:
        """Remove commit files no ref reaches and blobs no remaining commit names.

        They are what an interrupted commit (blobs and commit file written, ``refs.json`` not) or a
        deleted repository leaves behind. A damaged repository's commit files and blobs are kept.
        """
        with self._lock:
            live: set[str] = set()
            dead_commits = []
            for state in self._repos_state.values():
                reachable = self._reachable(state)
                live.update(e.sha256 for commit in reachable.values() for e in commit.files.values())
                commits_dir = self._repo_dir(state.repo_type, state.repo_id) / "commits"
                dead_commits += [f for f in commits_dir.glob("*.json") if f.stem not in reachable]
            for where in self.damaged:
                live.update(_blobs_named_in(self.root / where / "commits"))
            dead_blobs = [b for b in self._blobs.iterdir() if b.name not in live]
            report = GcReport(len(dead_commits), len(dead_blobs), sum(b.stat().st_size for b in dead_blobs))
            for path in dead_commits + dead_blobs:
                path.unlink()
            for folder in {p.parent for p in dead_commits + dead_blobs}:
                _fsync_dir(folder)
        return report

    def _reachable(self, state: RepoState) -> dict[str, Commit]:
        """Every commit some ref of ``state`` leads to, by oid."""
        seen: dict[str, Commit] = {}
        todo = list(state.refs.values())
        while todo:
            oid = todo.pop()
            if oid not in seen:
                seen[oid] = self._read_commit(state, oid)
                todo.extend(seen[oid].parents)
        return seen

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
    """Parse the NDJSON body of ``POST .../commit/{rev}`` into its header and operations.

    Anything but the documented shape is a :class:`BadRequest`: non-JSON, nesting too deep to parse,
    a field of the wrong type, base64 with characters outside the alphabet or wrong padding, a bad path.
    """
    header: dict[str, Any] = {}
    operations: list[Operation] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            raise BadRequest(f"Commit payload line {number} is not valid JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise BadRequest(f"Commit payload line {number} is not an object with 'key' and an object 'value'")
        key, value = item.get("key"), item["value"]
        if key == "header":
            if not isinstance(value.get("summary"), str) or not isinstance(value.get("description", ""), str):
                raise BadRequest("Commit header needs a string 'summary' (and 'description', if any)")
            if not isinstance(value.get("parentCommit", ""), (str, type(None))):
                raise BadRequest("Commit header 'parentCommit' must be a commit id")
            header = value
        elif key == "file":
            if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                raise BadRequest(f"Commit payload line {number}: a file needs base64 'content'")
            try:
                content = base64.b64decode(value["content"], validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"Commit payload line {number}: 'content' is not valid base64") from None
            operations.append(Operation("add", _check_path(value.get("path")), content))
        elif key == "deletedFile":
            operations.append(Operation("delete", _check_path(value.get("path"))))
        elif key == "deletedFolder":
            folder = value.get("path")
            folder = folder.rstrip("/") if isinstance(folder, str) else folder
            operations.append(Operation("delete_folder", _check_path(folder)))
        else:
            raise BadRequest(f"Unsupported commit operation {key!r} (this server stores every file as 'regular')")
    if "summary" not in header:
        raise BadRequest("Commit payload has no header with a summary")
    return header, operations


_BAD_PATH_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\\]")
_FORBIDDEN_FOLDERS = (".git", ".cache")  # as huggingface_hub refuses them


def _check_path(path: object) -> str:
    """A file path in a repo, as the Hub accepts it: relative, ``/``-separated, no empty, ``.`` or ``..``
    part, no ``.git`` or ``.cache`` folder, no control characters or backslashes, at most 1000 bytes."""
    if isinstance(path, str):
        path = path.removeprefix("/")
    if (
        not isinstance(path, str)
        or not 0 < len(path.encode("utf-8", "replace")) <= 1000
        or _BAD_PATH_CHARACTERS.search(path)
        or any(0xD800 <= ord(c) <= 0xDFFF for c in path)  # lone surrogates: not UTF-8
        or any(part in ("", ".", "..", *_FORBIDDEN_FOLDERS) for part in path.split("/"))
    ):
        raise BadRequest(f"Invalid path in repo: {path!r}")
    return path
