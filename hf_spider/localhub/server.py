"""A local, persistent server speaking the Hugging Face Hub HTTP API.

It serves the routes the official clients call (``huggingface_hub``, ``timm``'s ``hf-hub:``,
``transformers.from_pretrained``, ``datasets.load_dataset``) so that hf_spider, its tests and
its demo run the real client code paths offline: point ``HF_ENDPOINT`` at :attr:`LocalHub.url`.

Every file is stored as a "regular" git file (the preupload answer says so), which makes the
clients send contents inline in the commit; there is no LFS or Xet storage protocol.

    >>> with LocalHub("./hubdata") as hub:          # doctest: +SKIP
    ...     os.environ["HF_ENDPOINT"] = hub.url      # before importing huggingface_hub

From the shell: ``hf_spider hub serve --root ./hubdata --port 8080 [--token T | --tokens tokens.yaml]``.

Who may write: with neither ``token`` nor ``tokens`` the server is open (every request acts as
``local-user``, for tests on one machine); ``token`` is one token that writes every namespace; ``tokens``
maps each token to an :class:`Account` (a user and its orgs), which writes, and reads private repos,
in those namespaces only. Authentication is checked before a request's body is read, bodies are
bounded (``max_body``) and sockets time out (``socket_timeout``), so it can serve a trusted network.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from ..errors import InvalidInputError
from ..formats.weights import count_parameters
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

__all__ = ["Account", "HubServer", "LocalHub", "load_tokens"]

logger = logging.getLogger(__name__)

LOCAL_USER = "local-user"
_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_Route = tuple[str, re.Pattern[str], str]
DEFAULT_MAX_BODY = 2 << 30  # bytes; a commit carries its files base64-encoded, so about 1.5 GB of files
DEFAULT_SOCKET_TIMEOUT = 60.0  # seconds a connection may stay silent mid-request
# Routes that change a repo: the token is checked before their body is read.
WRITE_ROUTES = frozenset({"create_repo", "delete_repo", "preupload", "commit"})

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


@dataclass(frozen=True)
class Account:
    """Who a token acts as: a user and its orgs, the namespaces it writes (``every_namespace``: all)."""

    name: str
    orgs: tuple[str, ...] = ()
    every_namespace: bool = False

    def can_write(self, namespace: str) -> bool:
        return self.every_namespace or namespace == self.name or namespace in self.orgs


OPEN_ACCOUNT = Account(LOCAL_USER, every_namespace=True)


def load_tokens(path: str | os.PathLike[str]) -> dict[str, Account]:
    """Read a tokens file (YAML or JSON): ``{token: {"user": name, "orgs": [org, ...]}}``."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InvalidInputError(f"Cannot read the tokens file {path}: {e}") from None
    if not isinstance(data, dict) or not data:
        raise InvalidInputError(f"{path}: expected a mapping of tokens to {{user: NAME, orgs: [ORG, ...]}}")
    accounts = {}
    for token, entry in data.items():
        orgs = entry.get("orgs") or [] if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("user"), str) or not isinstance(orgs, list):
            raise InvalidInputError(f"{path}: token {str(token)[:4]}… needs 'user' (a name) and optional 'orgs' "
                                    "(a list)")
        accounts[str(token)] = Account(entry["user"], tuple(str(o) for o in orgs))
    return accounts


class HubServer(ThreadingHTTPServer):
    """The HTTP server; state lives in a :class:`HubStorage` under ``root``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        port: int = 0,
        token: str | None = None,
        tokens: Mapping[str, Account] | None = None,
        page_size: int = 1000,
        max_body: int = DEFAULT_MAX_BODY,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> None:
        self.storage = HubStorage(root)
        self.accounts: dict[str, Account] | None = None  # None: an open server
        if token is not None or tokens is not None:
            self.accounts = {**(tokens or {}), **({token: OPEN_ACCOUNT} if token is not None else {})}
        self.page_size = page_size
        self.max_body = max_body
        self.socket_timeout = socket_timeout
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
    """Run a :class:`HubServer` in a background thread: ``with LocalHub(root) as hub: hub.url``.

    Keyword arguments are :class:`HubServer`'s.
    """

    def __init__(self, root: str | os.PathLike[str], **kwargs: Any) -> None:
        self.server = HubServer(root, **kwargs)
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
    def setup(self) -> None:
        self.timeout = self.server.socket_timeout  # a silent client releases its thread
        super().setup()

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
        self.body_read, self.route = False, ""
        url = urlsplit(self.path)
        try:
            self.query = parse_qs(url.query, errors="strict")
            self.route, params = _route(method, url.path)
            self.account = self._account()
            if self.route in WRITE_ROUTES:
                self._require_writer(params.get("o"))  # before the body: a stranger's upload is never read
            self.body = self._read_body()
            getattr(self, f"_{self.route}")(**params)
        except HubStorageError as e:
            self._error(e.status, str(e), code=e.code)
        except TimeoutError:  # the client went silent mid-body: nothing sensible to answer
            self.close_connection = True
        except UnicodeDecodeError:
            self._error(HTTPStatus.BAD_REQUEST, "The request is not valid UTF-8")
        except Exception:  # a bug in the server must not kill the connection thread silently
            logger.exception("Internal error on %s %s", method, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error (details in the server's log)")

    def _read_body(self) -> bytes:
        body = read_body(self, limit=self.server.max_body)
        self.body_read = True
        return body

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        if not self.body_read:  # answered before reading the body: the connection cannot be reused
            self.close_connection = True
            headers = {**(headers or {}), "Connection": "close"}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode(), headers,
                   "application/json; charset=utf-8")

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        # Headers are Latin-1 on the wire: the full message, in UTF-8, is in the body.
        headers = {"X-Error-Message": message.splitlines()[0][:300].encode("latin-1", "replace").decode("latin-1")}
        if code:
            headers["X-Error-Code"] = code
        self._json({"error": message}, int(status), headers)

    def _json_body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except (ValueError, RecursionError):
            raise BadRequest("Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("Request body must be a JSON object")
        return data

    def _account(self) -> Account | None:
        """The account of the request's token; None without a (valid) one. An open server trusts everyone."""
        if self.server.accounts is None:
            return OPEN_ACCOUNT
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip().encode()
        for token, account in self.server.accounts.items():
            if hmac.compare_digest(given, token.encode()):
                return account
        return None

    def _require_writer(self, namespace: str | None) -> Account:
        """The request's account, if it may write ``namespace`` (any, when None); 401 without one, 403 outside."""
        if self.account is None:
            raise _HttpError(401, "Invalid credentials in Authorization header")
        if namespace is not None and not self.account.can_write(namespace):
            raise _HttpError(403, f"{self.account.name} cannot write to the namespace {namespace!r}")
        return self.account

    def _can_read(self, repo: RepoState) -> bool:
        return not repo.private or (self.account is not None and self.account.can_write(repo.namespace))

    def _repo(self, t: str, o: str, n: str) -> RepoState:
        """The repo, or RepoNotFound; private repos are invisible outside their namespace (as on the Hub)."""
        repo = self.server.storage.get(_API_TYPES.get(t, t or "model"), f"{o}/{n}")
        if not self._can_read(repo):
            raise RepoNotFound(f"Repository {o}/{n} not found")
        return repo

    def _flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")

    def _int(self, name: str, default: int) -> int:
        value = self.query.get(name, [str(default)])[-1]
        if not value.isdigit() or not value.isascii():
            raise BadRequest(f"Query parameter {name!r} must be a non-negative integer")
        return int(value)

    # -- account and validation ----------------------------------------------------------------
    def _whoami(self) -> None:
        account = self._require_writer(None)
        self._json({
            "type": "user", "id": account.name, "name": account.name, "fullname": account.name,
            "orgs": [{"type": "org", "name": org} for org in account.orgs],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
        })

    def _validate_yaml(self) -> None:
        self._json({"errors": [], "warnings": []})

    # -- repositories --------------------------------------------------------------------------
    def _create_repo(self) -> None:
        body = self._json_body()
        repo_type, repo_id = self._repo_named_in(body)
        private = bool(body.get("private")) or body.get("visibility") == "private"
        url = f"{self.server.url}/{_TYPE_PREFIX.get(repo_type, '')}{repo_id}"
        try:
            self.server.storage.create_repo(repo_type, repo_id, private=private, author=self._require_writer(None).name)
        except RepoExists as e:  # the Hub's 409 still carries the url (``exist_ok=True`` reads it)
            self._json({"error": str(e), "url": url}, e.status, {"X-Error-Message": str(e)})
            return
        self._json({"url": url, "name": repo_id})

    def _delete_repo(self) -> None:
        repo_type, repo_id = self._repo_named_in(self._json_body())
        if not self._can_read(self.server.storage.get(repo_type, repo_id)):
            raise RepoNotFound(f"Repository {repo_id} not found")
        self.server.storage.delete_repo(repo_type, repo_id)
        self._json({})

    def _repo_named_in(self, body: dict[str, Any]) -> tuple[str, str]:
        """(type, id) of a create/delete body, once the account may write its namespace."""
        repo_type, name, organization = body.get("type") or "model", body.get("name"), body.get("organization")
        if not all(isinstance(v, str) for v in (repo_type, name, organization or "")):
            raise BadRequest("Expected a JSON object with a string 'name' and optional 'organization' and 'type'")
        namespace = organization or self._require_writer(None).name
        self._require_writer(namespace)
        return repo_type, f"{namespace}/{name}"

    def _list_repos(self, t: str) -> None:
        q = self.query
        repos = [r for r in self.server.storage.list_repos(_API_TYPES[t]) if self._can_read(r)]
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
        limit = self._int("limit", len(repos))
        offset = self._int("cursor", 0)
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
            paths = parse_qs(self.body.decode(), errors="strict").get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise BadRequest("'paths' must be a list of strings")
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
        try:
            byte_range = _byte_range(self.headers.get("Range", ""), entry.size)
        except _HttpError as e:  # 416: the only refusal _byte_range raises
            self._send(e.status, b"", {**headers, "Content-Range": f"bytes */{entry.size}"})
            return
        data = b"" if self.command == "HEAD" else self.server.storage.read_blob(entry)
        if byte_range:
            start, end = byte_range
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
        repo = self._repo(t, o, n)
        try:
            current = self.server.storage.resolve(repo, rev).files
        except HubStorageError:  # a new branch / PR: nothing to compare with
            current = {}
        files = self._json_body().get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                                  for f in files):
            raise BadRequest("'files' must be a list of objects with a string 'path'")
        self._json({"files": [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
             "oid": current[f["path"]].oid if f["path"] in current else None}
            for f in files
        ]})

    def _commit(self, t: str, o: str, n: str, rev: str) -> None:
        repo = self._repo(t, o, n)
        header, operations = decode_commit_payload(self.body.splitlines())
        oid, ref = self.server.storage.commit(
            repo, operations, revision=rev, title=header["summary"], message=header.get("description", ""),
            author=self._require_writer(o).name, parent_commit=header.get("parentCommit"),
            create_pr=self._flag("create_pr"),
        )
        base = f"{self.server.url}/{_TYPE_PREFIX[repo.repo_type]}{repo.repo_id}"
        payload = {"success": True, "commitOid": oid, "commitUrl": f"{base}/commit/{oid}"}
        if ref.startswith("refs/pr/"):
            payload["pullRequestUrl"] = f"{base}/discussions/{ref.rsplit('/', 1)[1]}"
        self._json(payload)


class _HttpError(HubStorageError):
    """A request refused with an HTTP ``status`` that carries no Hub error code (401, 403, 404 route, 411, 413,
    416)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_MAX_LINE = 1024  # a chunk-size line or trailer longer than this is not HTTP


def read_body(handler: BaseHTTPRequestHandler, *, limit: int) -> bytes:
    """A request's body, sent with ``Content-Length`` or chunked (as the clients stream uploads), of at most
    ``limit`` bytes: 400 for a malformed length or chunk size, 411 for no length on POST/PUT, 413 over the limit."""
    rfile = handler.rfile
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks, total = [], 0
        while size := _chunk_size(rfile.readline(_MAX_LINE)):
            total += size
            if total > limit:
                raise _HttpError(413, f"Request body over the limit of {limit} bytes")
            chunks.append(_read_exactly(rfile, size))
            if rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n"):
                raise BadRequest("Malformed chunked body: a chunk is longer than its size")
        while rfile.readline(_MAX_LINE).strip():  # trailers
            pass
        return b"".join(chunks)
    declared = handler.headers.get("Content-Length")
    if declared is None:
        if handler.command in ("POST", "PUT"):
            raise _HttpError(411, "A body needs Content-Length or chunked Transfer-Encoding")
        return b""
    if not declared.strip().isdigit() or not declared.isascii():
        raise BadRequest(f"Invalid Content-Length: {declared[:40]!r}")
    if int(declared) > limit:
        raise _HttpError(413, f"Request body of {int(declared)} bytes is over the limit of {limit} bytes")
    return _read_exactly(rfile, int(declared))


def _read_exactly(rfile: Any, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise BadRequest("The request body ended before its declared length")
    return data


def _route(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The handler name and URL parameters of a request; 404 when no route matches."""
    lookup = "GET" if method == "HEAD" else method
    for route_method, pattern, name in _ROUTES:
        if route_method == lookup and (match := pattern.match(path)):
            return name, {k: unquote(v, errors="strict") for k, v in match.groupdict().items() if v is not None}
    raise _HttpError(404, f"No route for {method} {path}")


def _chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (hex, optional ``;extensions``); 400 for anything else."""
    digits = line.split(b";")[0].strip()
    if not digits or len(digits) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
        raise BadRequest(f"Malformed chunk size: {line[:40]!r}")
    return int(digits, 16)


def _folder_oid(commit: Commit, folder: str) -> str:
    listing = "".join(f"{p}:{e.oid}\n" for p, e in sorted(commit.files.items()) if p.startswith(folder + "/"))
    return hashlib.sha1(listing.encode()).hexdigest()


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) bytes a ``Range`` header asks for (RFC 9110 §14.1.2); None to send the whole file.

    A range the server does not support (another unit, several ranges) or an invalid one (``bytes=5-2``)
    is ignored, as §14.2 allows; a valid one that starts past the end is 416.
    """
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or not (match[1] or match[2]):
        return None
    if not match[1]:  # suffix range: the last N bytes
        if int(match[2]) == 0 or size == 0:
            raise _HttpError(416, "Range Not Satisfiable")
        return max(size - int(match[2]), 0), size - 1
    first, last = int(match[1]), int(match[2] or size - 1)
    if match[2] and last < first:
        return None
    if first >= size:
        raise _HttpError(416, "Range Not Satisfiable")
    return first, min(last, size - 1)
