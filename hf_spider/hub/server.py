"""A local, persistent server speaking the Hugging Face Hub HTTP API.

It serves the routes the official clients call (``huggingface_hub``, ``timm``'s ``hf-hub:``,
``transformers.from_pretrained``, ``datasets.load_dataset``) so that hf_spider, its tests and
its demo run the real client code paths offline: point ``HF_ENDPOINT`` at :attr:`LocalHub.url`.

Every file is stored as a "regular" git file (the preupload answer says so), which makes the
clients send contents inline in the commit; there is no LFS or Xet storage protocol.

    >>> with LocalHub("./hubdata") as hub:          # doctest: +SKIP
    ...     os.environ["HF_ENDPOINT"] = hub.url      # before importing huggingface_hub

From the shell: ``hf_spider hub serve --root ./hubdata --port 8080 [--token T]``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from .candidates import count_parameters
from .storage import (
    BadRequest,
    Commit,
    EntryNotFound,
    HubStorage,
    HubStorageError,
    RepoExists,
    RepoNotFound,
    RepoState,
    decode_commit_payload,
)

__all__ = ["HubServer", "LocalHub"]

logger = logging.getLogger(__name__)

LOCAL_USER = "local-user"
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_Route = tuple[str, re.Pattern[str], str]

# Routes on the raw (still URL-quoted) path; revisions arrive quoted ("refs%2Fpr%2F1").
_ROUTES: list[_Route] = [
    (m, re.compile(p), name)
    for m, p, name in [
        ("GET", r"^/api/whoami-v2$", "whoami"),
        ("POST", r"^/api/validate-yaml$", "validate_yaml"),
        ("POST", r"^/api/repos/create$", "create_repo"),
        ("DELETE", r"^/api/repos/delete$", "delete_repo"),
        ("GET", r"^/api/(?P<t>models|datasets|spaces)$", "list_repos"),
        ("GET", r"^/api/(?P<t>models|datasets|spaces)/(?P<o>[^/]+)/(?P<n>[^/]+)(?:/revision/(?P<rev>[^/]+))?$",
         "repo_info"),
        ("POST", r"^/api/(?P<t>models|datasets|spaces)/(?P<o>[^/]+)/(?P<n>[^/]+)/preupload/(?P<rev>[^/]+)$",
         "preupload"),
        ("POST", r"^/api/(?P<t>models|datasets|spaces)/(?P<o>[^/]+)/(?P<n>[^/]+)/commit/(?P<rev>[^/]+)$", "commit"),
        ("GET", r"^/api/(?P<t>models|datasets|spaces)/(?P<o>[^/]+)/(?P<n>[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$",
         "tree"),
        ("POST", r"^/api/(?P<t>models|datasets|spaces)/(?P<o>[^/]+)/(?P<n>[^/]+)/paths-info/(?P<rev>[^/]+)$",
         "paths_info"),
        ("GET", r"^/api/(?P<t>models|datasets|spaces)/(?P<o>[^/]+)/(?P<n>[^/]+)/refs$", "refs"),
        ("GET", r"^/api/(?P<t>models|datasets|spaces)/(?P<o>[^/]+)/(?P<n>[^/]+)/commits/(?P<rev>[^/]+)$", "commits"),
        ("GET", r"^/(?:(?P<t>datasets|spaces)/)?(?P<o>[^/]+)/(?P<n>[^/]+)/resolve/"
                r"(?P<rev>refs%2F[^/]+|refs/(?:pr|convert)/[^/]+|[^/]+)/(?P<path>.+)$",
         "resolve"),
    ]
]


class HubServer(ThreadingHTTPServer):
    """The HTTP server; state lives in a :class:`HubStorage` under ``root``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, root: str | os.PathLike[str], *, port: int = 0, token: str | None = None, page_size: int = 1000
    ) -> None:
        self.storage = HubStorage(root)
        self.token = token
        self.page_size = page_size
        self.parameter_counts: dict[str, dict[str, int] | None] = {}  # by file sha256
        try:
            super().__init__(("127.0.0.1", port), _Handler)
        except OSError:  # the port is taken: release the root
            self.storage.close()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def server_close(self) -> None:
        super().server_close()
        self.storage.close()


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """A request's body, whether sent with ``Content-Length`` or chunked (as the clients stream uploads)."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        while handler.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


_T = TypeVar("_T", bound="ServerThread")


class ServerThread:
    """An HTTP server answering from a daemon thread: ``start()``/``stop()``, or a ``with`` block."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self._http = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)

    def start(self: _T) -> _T:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def __enter__(self: _T) -> _T:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalHub(ServerThread):
    """Run a :class:`HubServer` in a background thread: ``with LocalHub(root) as hub: hub.url``."""

    def __init__(
        self, root: str | os.PathLike[str], *, port: int = 0, token: str | None = None, page_size: int = 1000
    ) -> None:
        self.server = HubServer(root, port=port, token=token, page_size=page_size)
        super().__init__(self.server, "hf_spider-local-hub")

    @property
    def url(self) -> str:
        return self.server.url


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls
    server: HubServer
    server_version = "hf_spider-local-hub"

    # -- plumbing ------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        self.body = read_body(self)  # always drain the body, or keep-alive connections break
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        lookup = "GET" if method == "HEAD" else method
        try:
            for route_method, pattern, name in _ROUTES:
                match = pattern.match(url.path)
                if match and route_method == lookup:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    getattr(self, f"_{name}")(**params)
                    return
            self._error(HTTPStatus.NOT_FOUND, f"No route for {method} {url.path}")
        except HubStorageError as e:
            self._error(e.status, str(e), code=e.code)
        except Exception as e:  # a bug in the server must not kill the connection thread silently
            logger.exception("Internal error on %s %s", method, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"Internal error: {e}")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message.splitlines()[0][:300]}
        if code:
            headers["X-Error-Code"] = code
        self._json({"error": message}, int(status), headers)

    def _json_body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            raise BadRequest("Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("Request body must be a JSON object")
        return data

    def _require_write(self) -> None:
        """Writes need the server's token when it has one; a wrong or missing token is a 401."""
        if not self._authorized():
            raise _Unauthorized("Invalid credentials in Authorization header")

    def _authorized(self) -> bool:
        expected = self.server.token
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return expected is None or hmac.compare_digest(given.encode(), expected.encode())

    def _repo(self, t: str, o: str, n: str) -> RepoState:
        """The repo, or RepoNotFound; private repos are invisible without the token (as on the Hub)."""
        repo = self.server.storage.get(_API_TYPES.get(t, t or "model"), f"{o}/{n}")
        if repo.private and not self._authorized():
            raise RepoNotFound(f"Repository {o}/{n} not found")
        return repo

    def _flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")

    # -- account and validation ----------------------------------------------------------------
    def _whoami(self) -> None:
        if self.server.token is not None:
            self._require_write()
        self._json({
            "type": "user", "id": LOCAL_USER, "name": LOCAL_USER, "fullname": "Local Hub user", "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
        })

    def _validate_yaml(self) -> None:
        self._json({"errors": [], "warnings": []})

    # -- repositories --------------------------------------------------------------------------
    def _create_repo(self) -> None:
        self._require_write()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or LOCAL_USER}/{body.get('name')}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        url = f"{self.server.url}/{_TYPE_PREFIX.get(repo_type, '')}{repo_id}"
        try:
            self.server.storage.create_repo(repo_type, repo_id, private=private, author=LOCAL_USER)
        except RepoExists as e:  # the Hub's 409 still carries the url (``exist_ok=True`` reads it)
            self._json({"error": str(e), "url": url}, e.status, {"X-Error-Message": str(e)})
            return
        self._json({"url": url, "name": repo_id})

    def _delete_repo(self) -> None:
        self._require_write()
        body = self._json_body()
        repo_id = f"{body.get('organization') or LOCAL_USER}/{body.get('name')}"
        self.server.storage.delete_repo(body.get("type") or "model", repo_id)
        self._json({})

    def _list_repos(self, t: str) -> None:
        q = self.query
        repos = self.server.storage.list_repos(_API_TYPES[t])
        if not self._authorized():
            repos = [r for r in repos if not r.private]
        if author := q.get("author", [None])[-1]:
            repos = [r for r in repos if r.namespace == author]
        if search := q.get("search", [None])[-1]:
            repos = [r for r in repos if search.lower() in r.repo_id.lower()]
        for wanted in q.get("filter", []):
            repos = [r for r in repos if wanted in r.tags or wanted == r.repo_id]
        # The Hub sorts by the requested key, newest first; without one we list by id.
        sort_keys: dict[str, Callable[[RepoState], Any]] = {
            "lastModified": lambda r: r.head.date if r.head else "",
            "createdAt": lambda r: r.created_at,
        }
        sort = q.get("sort", [""])[-1]
        if sort in sort_keys:
            repos.sort(key=sort_keys[sort], reverse=True)
        else:
            repos.sort(key=lambda r: r.repo_id)
        # Pages of at most ``page_size``, chained by a GitHub-style ``Link: <...>; rel="next"`` header.
        limit = int(q["limit"][-1]) if "limit" in q else len(repos)
        offset = int(q.get("cursor", ["0"])[-1])
        end = min(offset + self.server.page_size, limit, len(repos))
        page = repos[offset:end]
        headers = {}
        if end < min(limit, len(repos)):
            next_query = [(k, v) for k, vs in q.items() if k != "cursor" for v in vs] + [("cursor", end)]
            headers["Link"] = f'<{self.server.url}/api/{t}?{urlencode(next_query)}>; rel="next"'
        full = self._flag("full") or "siblings" in q.get("expand", [])
        self._json([self._info(r, r.head, siblings=full, card=full or self._flag("cardData")) for r in page],
                   headers=headers)

    def _repo_info(self, t: str, o: str, n: str, rev: str | None = None) -> None:
        repo = self._repo(t, o, n)
        self._json(self._info(repo, self.server.storage.resolve(repo, rev), siblings=True, card=True))

    def _info(self, repo: RepoState, commit: Commit | None, *, siblings: bool, card: bool) -> dict[str, Any]:
        assert commit is not None
        info: dict[str, Any] = {
            "_id": repo.repo_id, "id": repo.repo_id, "author": repo.namespace, "sha": commit.oid,
            "lastModified": commit.date, "createdAt": repo.created_at, "private": repo.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": repo.tags,
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            if parameters := self._parameter_counts(commit):
                info["safetensors"] = {"parameters": parameters, "total": sum(parameters.values())}
            for key in ("library_name", "pipeline_tag"):
                if isinstance(repo.card_data.get(key), str):
                    info[key] = repo.card_data[key]
        if card:
            info["cardData"] = repo.card_data
        if siblings:
            info["siblings"] = [{"rfilename": p, "size": e.size, "blobId": e.oid} for p, e in commit.files.items()]
        return info

    def _parameter_counts(self, commit: Commit) -> dict[str, int]:
        """Parameters per dtype over the top-level ``*.safetensors`` files, as the Hub reports them
        (``model_info(...).safetensors``); empty when there are none or one is unreadable."""
        known = self.server.parameter_counts
        per_file = []
        for path, entry in commit.files.items():
            if path.endswith(".safetensors") and "/" not in path:
                if entry.sha256 not in known:
                    known[entry.sha256] = count_parameters(self.server.storage.blob_path(entry))
                per_file.append(known[entry.sha256])
        if any(counts is None for counts in per_file):
            return {}
        return dict(sum((Counter(counts) for counts in per_file), Counter()))

    def _refs(self, t: str, o: str, n: str) -> None:
        repo = self._repo(t, o, n)
        refs = [{"name": r.removeprefix("refs/heads/"), "ref": f"refs/heads/{r}", "targetCommit": oid}
                for r, oid in repo.refs.items() if not r.startswith("refs/pr/")]
        prs = [{"name": r, "ref": r, "targetCommit": oid} for r, oid in repo.refs.items() if r.startswith("refs/pr/")]
        payload: dict[str, Any] = {"branches": refs, "tags": [], "converts": []}
        if self._flag("include_prs"):
            payload["pullRequests"] = prs
        self._json(payload)

    def _commits(self, t: str, o: str, n: str, rev: str) -> None:
        repo = self._repo(t, o, n)
        self._json([
            {"id": c.oid, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": c.author}]}
            for c in self.server.storage.history(repo, rev)
        ])

    # -- files ---------------------------------------------------------------------------------
    def _tree(self, t: str, o: str, n: str, rev: str, path: str = "") -> None:
        repo = self._repo(t, o, n)
        commit = self.server.storage.resolve(repo, rev)
        path = path.strip("/")
        recursive = self._flag("recursive")
        prefix = f"{path}/" if path else ""
        if path and path in commit.files:
            raise EntryNotFound(f"{path} is a file, not a folder")
        entries: dict[str, dict[str, Any]] = {}
        for p, e in commit.files.items():
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # folders along the way
                if recursive or depth == 1:
                    folder = prefix + "/".join(parts[:depth])
                    entries.setdefault(folder, {"type": "directory", "oid": _folder_oid(commit, folder), "size": 0,
                                                "path": folder})
            if recursive or len(parts) == 1:
                entries[p] = {"type": "file", "oid": e.oid, "size": e.size, "path": p}
        if path and not entries:
            raise EntryNotFound(f"Folder {path} not found at {rev}")
        self._json(sorted(entries.values(), key=lambda x: x["path"]))

    def _paths_info(self, t: str, o: str, n: str, rev: str) -> None:
        repo = self._repo(t, o, n)
        commit = self.server.storage.resolve(repo, rev)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = self._json_body().get("paths", [])
        else:
            paths = parse_qs(self.body.decode()).get("paths", [])
        out = []
        for p in (p.strip("/") for p in paths):
            if p in commit.files:
                out.append({"type": "file", "path": p, "oid": commit.files[p].oid, "size": commit.files[p].size})
            elif any(f.startswith(p + "/") for f in commit.files):
                out.append({"type": "directory", "path": p, "oid": _folder_oid(commit, p), "size": 0})
        self._json(out)

    def _resolve(self, o: str, n: str, rev: str, path: str, t: str = "") -> None:
        repo = self._repo(t, o, n)
        commit = self.server.storage.resolve(repo, rev)
        entry = commit.files.get(path)
        if entry is None:
            raise EntryNotFound(f"{path} not found in {repo.repo_id}@{rev}")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.oid}"', "Accept-Ranges": "bytes",
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}"}
        data = b"" if self.command == "HEAD" else self.server.storage.read_blob(entry)
        rng = re.match(r"^bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        if rng and (rng.group(1) or rng.group(2)):
            start, end = _byte_range(rng.group(1), rng.group(2), entry.size)
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
            if self.command == "HEAD":
                self._head(206, end - start + 1, headers)
            else:
                self._send(206, data[start : end + 1], headers, "application/octet-stream")
            return
        if self.command == "HEAD":
            self._head(200, entry.size, headers)
        else:
            self._send(200, data, headers, "application/octet-stream")

    def _head(self, status: int, length: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    # -- writes --------------------------------------------------------------------------------
    def _preupload(self, t: str, o: str, n: str, rev: str) -> None:
        self._require_write()
        repo = self._repo(t, o, n)
        try:
            current = self.server.storage.resolve(repo, rev).files
        except HubStorageError:  # a new branch / PR: nothing to compare with
            current = {}
        files = self._json_body().get("files", [])
        self._json({"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": current[f["path"]].oid if f["path"] in current else None}
            for f in files
        ]})

    def _commit(self, t: str, o: str, n: str, rev: str) -> None:
        self._require_write()
        repo = self._repo(t, o, n)
        header, operations = decode_commit_payload(self.body.splitlines())
        oid, ref = self.server.storage.commit(
            repo, operations, revision=rev, title=header["summary"], message=header.get("description", ""),
            author=LOCAL_USER, parent_commit=header.get("parentCommit"), create_pr=self._flag("create_pr"),
        )
        base = f"{self.server.url}/{_TYPE_PREFIX[repo.repo_type]}{repo.repo_id}"
        payload = {"success": True, "commitOid": oid, "commitUrl": f"{base}/commit/{oid}"}
        if ref.startswith("refs/pr/"):
            payload["pullRequestUrl"] = f"{base}/discussions/{ref.rsplit('/', 1)[1]}"
        self._json(payload)


class _Unauthorized(HubStorageError):
    status = 401


def _folder_oid(commit: Commit, folder: str) -> str:
    listing = "".join(f"{p}:{e.oid}\n" for p, e in sorted(commit.files.items()) if p.startswith(folder + "/"))
    return hashlib.sha1(listing.encode()).hexdigest()


def _byte_range(first: str, last: str, size: int) -> tuple[int, int]:
    if not first:  # suffix range: the last N bytes
        return max(size - int(last), 0), size - 1
    return int(first), min(int(last) if last else size - 1, size - 1)

