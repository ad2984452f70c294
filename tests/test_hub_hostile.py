"""The local Hub as a shared service: hostile requests against the real server and the real clients.

Each test guards one protection; ``test_disabling_a_protection_fails_a_test`` switches each protection off
in turn (by monkeypatching) and checks that a test here notices.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from conftest import invoke_cli
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from test_hub_server import commit_lost_before_its_refs

from hf_spider.localhub import server as server_module
from hf_spider.localhub import storage as storage_module
from hf_spider.localhub.server import Account, LocalHub, load_tokens
from hf_spider.localhub.storage import HubStorage, Operation

ALICE, BOB = "alice-token", "bob-token"
ACCOUNTS = {ALICE: Account("alice", ("vision-lab",)), BOB: Account("bob")}


@contextmanager
def shared_hub(tmp_path: Path, **kwargs):
    """A Hub with per-namespace tokens: alice (and her org vision-lab), bob."""
    with LocalHub(tmp_path / "hub", tokens=ACCOUNTS, **kwargs) as hub:
        yield hub


def call(hub: LocalHub, method: str, path: str, token: str | None = BOB, headers: dict[str, str] | None = None,
         **kwargs) -> httpx2.Response:
    headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx2.request(method, hub.url + path, headers=headers, timeout=10, **kwargs)


def commit_body(*files: tuple[str, str], summary: object = "c") -> bytes:
    """An NDJSON commit payload adding ``(path, base64 content)`` files."""
    lines = [{"key": "header", "value": {"summary": summary, "description": ""}}]
    lines += [{"key": "file", "value": {"path": p, "content": c, "encoding": "base64"}} for p, c in files]
    return b"\n".join(json.dumps(line).encode() for line in lines)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def raw(url: str, request: bytes, *, wait: float = 10) -> tuple[int | None, bytes, float]:
    """Send bytes as they are; (status or None, everything answered until the server closed, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return status, answer, time.monotonic() - start


# -- who may write and read ------------------------------------------------------------------------
def test_a_token_writes_only_its_namespaces(tmp_path: Path):
    with shared_hub(tmp_path) as hub:
        alice, bob = HfApi(endpoint=hub.url, token=ALICE), HfApi(endpoint=hub.url, token=BOB)
        assert alice.whoami()["name"] == "alice"
        assert [org["name"] for org in alice.whoami()["orgs"]] == ["vision-lab"]
        with pytest.raises(HfHubHTTPError) as forged:
            HfApi(endpoint=hub.url, token="forged").whoami()
        assert forged.value.response.status_code == 401
        alice.create_repo("vision-lab/shared")  # her org
        alice.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id="vision-lab/shared")
        bob.create_repo("mine")  # no organization: his own namespace
        bob.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id="bob/mine")
        head = bob.model_info("bob/mine").sha

        # Every write route, straight to the server: no token, a forged one, someone else's.
        writes = {
            "create": ("POST", "/api/repos/create", {"json": {"name": "new", "organization": "bob"}}),
            "preupload": ("POST", "/api/models/bob/mine/preupload/main", {"json": {"files": [{"path": "f.txt"}]}}),
            "commit": ("POST", "/api/models/bob/mine/commit/main", {"content": commit_body(("f.txt", b64(b"x")))}),
            "pr": ("POST", "/api/models/bob/mine/commit/main?create_pr=1",
                   {"content": commit_body(("f.txt", b64(b"x")))}),
            "delete": ("DELETE", "/api/repos/delete", {"json": {"name": "mine", "organization": "bob"}}),
        }
        for name, (method, path, kwargs) in writes.items():
            for token, status in ((None, 401), ("forged", 401), (ALICE, 403)):
                answer = call(hub, method, path, token, **kwargs)
                assert answer.status_code == status, (name, token, answer.text)
        assert bob.model_info("bob/mine").sha == head
        assert [r.ref for r in bob.list_repo_refs("bob/mine", include_pull_requests=True).pull_requests] == []
        assert {m.id for m in bob.list_models()} == {"bob/mine", "vision-lab/shared"}
        for name, (method, path, kwargs) in writes.items():  # the owner may do each of them
            assert call(hub, method, path, BOB, **kwargs).status_code == 200, name


def test_private_repos_stay_inside_their_namespace(tmp_path: Path):
    with shared_hub(tmp_path) as hub:
        alice, bob = HfApi(endpoint=hub.url, token=ALICE), HfApi(endpoint=hub.url, token=BOB)
        alice.create_repo("vision-lab/secret", private=True)
        alice.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id="vision-lab/secret")
        path = hf_hub_download("vision-lab/secret", "w.bin", endpoint=hub.url, token=ALICE,
                               cache_dir=tmp_path / "alice")
        assert Path(path).read_bytes() == b"weights"
        for token in (BOB, False):
            with pytest.raises(RepositoryNotFoundError):
                hf_hub_download("vision-lab/secret", "w.bin", endpoint=hub.url, token=token,
                                cache_dir=tmp_path / f"other-{token}")
            with pytest.raises(RepositoryNotFoundError):
                HfApi(endpoint=hub.url, token=token).model_info("vision-lab/secret")
        assert "vision-lab/secret" not in {m.id for m in bob.list_models()}
        assert "vision-lab/secret" in {m.id for m in alice.list_models()}


def test_tokens_file_gives_each_token_its_user_and_orgs(tmp_path: Path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("hf_a: {user: alice, orgs: [vision-lab]}\nhf_b: {user: bob}\n")
    assert load_tokens(tokens) == {"hf_a": Account("alice", ("vision-lab",)), "hf_b": Account("bob")}
    tokens.write_text("hf_a: alice\n")
    result = invoke_cli("hub", "serve", "--root", str(tmp_path / "hub"), "--port", "0", "--tokens", str(tokens))
    assert result.exit_code == 1 and "needs 'user'" in str(result.exception)


# -- bodies, lengths and sockets -------------------------------------------------------------------
def test_a_stranger_s_upload_is_refused_before_its_body_is_read(tmp_path: Path):
    with shared_hub(tmp_path) as hub:
        HfApi(endpoint=hub.url, token=BOB).create_repo("bob/mine")
        request = (b"POST /api/models/bob/mine/commit/main HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer forged\r\n"
                   b"Content-Length: 314572800\r\n\r\n")  # 300 MB announced, none sent
        status, answer, seconds = raw(hub.url, request, wait=5)
        assert status == 401 and seconds < 3
        assert b"Connection: close" in answer


def test_bodies_over_the_limit_get_413_and_change_nothing(tmp_path: Path):
    with shared_hub(tmp_path, max_body=64 * 1024) as hub:
        bob = HfApi(endpoint=hub.url, token=BOB)
        bob.create_repo("bob/mine")
        head = bob.model_info("bob/mine").sha
        with pytest.raises(HfHubHTTPError) as exc:
            bob.upload_file(path_or_fileobj=os.urandom(100_000), path_in_repo="big.bin", repo_id="bob/mine")
        assert exc.value.response.status_code == 413
        assert bob.model_info("bob/mine").sha == head
        chunked = (b"POST /api/models/bob/mine/commit/main HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer bob-token\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + (b"8000\r\n" + b"x" * 0x8000 + b"\r\n") * 3)
        assert raw(hub.url, chunked)[0] == 413


@pytest.mark.parametrize(("headers", "body", "status"), [
    (b"Content-Length: -1\r\n", b"", 400),
    (b"Content-Length: abc\r\n", b"", 400),
    (b"Content-Length: 1e3\r\n", b"", 400),
    (b"Transfer-Encoding: chunked\r\n", b"zz\r\nxx\r\n0\r\n\r\n", 400),
    (b"Transfer-Encoding: chunked\r\n", b"-1\r\nxx\r\n0\r\n\r\n", 400),
    (b"Transfer-Encoding: chunked\r\n", b"2\r\nxxxx\r\n0\r\n\r\n", 400),
    (b"", b"", 411),
])
def test_malformed_lengths_get_an_answer_and_free_the_thread(tmp_path: Path, headers: bytes, body: bytes,
                                                             status: int):
    with shared_hub(tmp_path) as hub:
        HfApi(endpoint=hub.url, token=BOB).create_repo("bob/mine")
        request = (b"POST /api/models/bob/mine/commit/main HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer bob-token\r\n"
                   + headers + b"\r\n" + body)
        answered, _, seconds = raw(hub.url, request)
        assert answered == status and seconds < 3
        assert call(hub, "GET", "/api/models/bob/mine").status_code == 200


def test_a_silent_client_is_cut_off_after_the_socket_timeout(tmp_path: Path):
    with shared_hub(tmp_path, socket_timeout=1) as hub:
        HfApi(endpoint=hub.url, token=BOB).create_repo("bob/mine")
        half_body = (b"POST /api/models/bob/mine/commit/main HTTP/1.1\r\nHost: hub\r\n"
                     b"Authorization: Bearer bob-token\r\nContent-Length: 100\r\n\r\n{\"key\"")
        for request in (b"", b"GET /api/whoami-v2 HTTP/1.1\r\n", half_body):  # silent before, in, after headers
            _, _, seconds = raw(hub.url, request, wait=10)
            assert 0.9 < seconds < 4, request


# -- payloads and paths ----------------------------------------------------------------------------
def test_malformed_payloads_get_400_and_store_nothing(tmp_path: Path):
    with shared_hub(tmp_path) as hub:
        bob = HfApi(endpoint=hub.url, token=BOB)
        bob.create_repo("bob/mine")
        head = bob.model_info("bob/mine").sha
        commit = "/api/models/bob/mine/commit/main"
        cases = [
            ("POST", commit, commit_body(("f.txt", "!!!!QUJD$$$$"))),  # characters outside the alphabet
            ("POST", commit, commit_body(("f.txt", "QUJ"))),  # bad padding
            ("POST", commit, commit_body(("f.txt", b64(b"x")), summary=12)),
            ("POST", commit, b'{"key": "header", "value": [1]}'),
            ("POST", commit, commit_body() + b'\n{"key": "file", "value": {"path": "f.txt", "content": 5}}'),
            ("POST", commit, commit_body() + b'\n{"key": "file", "value": {"path": 3, "content": "eA=="}}'),
            ("POST", commit, b"[" * 100_000 + b"]" * 100_000),
            ("POST", commit, b"\xff\xfe not UTF-8"),
            ("POST", "/api/repos/create", json.dumps({"name": 12}).encode()),
            ("POST", "/api/models/bob/mine/preupload/main", b'{"files": "f.txt"}'),
            ("POST", "/api/models/bob/mine/preupload/main", b"[" * 100_000),
            ("POST", "/api/models/bob/mine/paths-info/main", b"paths=%ff"),
            ("GET", "/api/models?limit=abc", b""),
            ("GET", "/api/models?cursor=-1", b""),
        ]
        for method, path, body in cases:
            answer = call(hub, method, path, content=body)
            assert answer.status_code == 400, (path, body[:60], answer.text)
        assert bob.model_info("bob/mine").sha == head


@pytest.mark.parametrize("path", ["a\x00b.txt", "a\nb.txt", "a\\b.txt", ".git/config", "x/.git/hooks/post",
                                  ".cache/huggingface/x", "a//b.txt", "./a.txt", "a/../b.txt", "x" * 1001])
def test_paths_are_validated_as_the_hub_does(tmp_path: Path, path: str):
    with shared_hub(tmp_path) as hub:
        bob = HfApi(endpoint=hub.url, token=BOB)
        bob.create_repo("bob/mine")
        bob.upload_file(path_or_fileobj=b"ok", path_in_repo="ok.txt", repo_id="bob/mine")
        answer = call(hub, "POST", "/api/models/bob/mine/commit/main", content=commit_body((path, b64(b"x"))))
        assert answer.status_code == 400
        folder = snapshot_download("bob/mine", endpoint=hub.url, token=BOB, cache_dir=tmp_path / "cache")
        assert sorted(p.name for p in Path(folder).iterdir()) == [".gitattributes", "ok.txt"]


# -- answers ---------------------------------------------------------------------------------------
def test_ranges_follow_rfc_9110(tmp_path: Path):
    with shared_hub(tmp_path) as hub:
        bob = HfApi(endpoint=hub.url, token=BOB)
        bob.create_repo("bob/mine")
        bob.upload_file(path_or_fileobj=bytes(range(256)), path_in_repo="b.bin", repo_id="bob/mine")
        url = "/bob/mine/resolve/main/b.bin"
        expected = {
            "bytes=10-19": (206, bytes(range(10, 20)), "bytes 10-19/256"),
            "bytes=250-1000": (206, bytes(range(250, 256)), "bytes 250-255/256"),
            "bytes=-6": (206, bytes(range(250, 256)), "bytes 250-255/256"),
            "bytes=0-0": (206, b"\x00", "bytes 0-0/256"),
            "bytes=5-2": (200, bytes(range(256)), None),  # invalid: ignored (§14.1.1, §14.2)
            "items=0-1": (200, bytes(range(256)), None),  # another unit: ignored
            "bytes=0-1,4-5": (200, bytes(range(256)), None),  # several ranges: this server ignores them
            "bytes=256-": (416, b"", "bytes */256"),  # unsatisfiable (§15.5.17)
            "bytes=-0": (416, b"", "bytes */256"),
        }
        for header, (status, content, content_range) in expected.items():
            answer = call(hub, "GET", url, headers={"Range": header})
            assert (answer.status_code, answer.content, answer.headers.get("Content-Range")) == (
                status, content, content_range), header
            head = call(hub, "HEAD", url, headers={"Range": header})
            assert head.status_code == status and head.content == b""


def test_errors_are_utf8_and_never_show_server_paths(tmp_path: Path):
    with shared_hub(tmp_path) as hub:
        answer = call(hub, "GET", "/api/models/%E6%97%A5%E6%9C%AC/modèle")
        assert answer.status_code == 404 and "日本/modèle" in answer.json()["error"]
        bob = HfApi(endpoint=hub.url, token=BOB)
        bob.create_repo("bob/mine")
        bob.upload_file(path_or_fileobj=b"lost", path_in_repo="f.txt", repo_id="bob/mine")
        blob = tmp_path / "hub" / "blobs" / hashlib.sha256(b"lost").hexdigest()
        blob.unlink()  # a disk fault
        answer = call(hub, "GET", "/bob/mine/resolve/main/f.txt")
        assert answer.status_code == 500
        everything = answer.text + json.dumps(dict(answer.headers))
        assert str(tmp_path) not in everything and "blobs" not in everything


# -- storage ---------------------------------------------------------------------------------------
def test_a_damaged_repo_is_skipped_at_startup(tmp_path: Path):
    with shared_hub(tmp_path) as hub:
        bob = HfApi(endpoint=hub.url, token=BOB)
        for name in ("good", "bad"):
            bob.create_repo(f"bob/{name}")
    (tmp_path / "hub" / "repos" / "models" / "bob" / "bad" / "refs.json").write_text("")
    with shared_hub(tmp_path) as hub:
        bob = HfApi(endpoint=hub.url, token=BOB)
        assert {m.id for m in bob.list_models()} == {"bob/good"}
        assert list(hub.server.storage.damaged) == ["repos/models/bob/bad"]
        assert str(tmp_path) not in hub.server.storage.damaged["repos/models/bob/bad"]


def test_commits_fsync_files_and_folders(tmp_path: Path, monkeypatch):
    storage = HubStorage(tmp_path / "hub")
    repo = storage.create_repo("model", "org/durable")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    storage.commit(repo, [Operation("add", "f.txt", b"durable")], title="c")
    root = tmp_path.resolve() / "hub"
    repo_dir = root / "repos" / "models" / "org" / "durable"
    for folder in (root / "blobs", repo_dir / "commits", repo_dir):  # the new names: blob, commit, refs.json
        assert str(folder) in synced
    assert sum(s.startswith(str(root / "tmp")) for s in synced) == 3  # blob, commit and refs, before their rename
    storage.close()


def test_gc_removes_what_interrupted_commits_and_deleted_repos_leave(tmp_path: Path):
    storage = HubStorage(tmp_path / "hub")
    repo = storage.create_repo("model", "org/kept")
    storage.commit(repo, [Operation("add", "f.txt", b"v1")], title="v1")
    storage.commit(repo, [Operation("add", "g.txt", b"v2")], title="v2", create_pr=True)
    commit_lost_before_its_refs(storage, repo, [Operation("add", "f.txt", b"never acknowledged")])
    gone = storage.create_repo("model", "org/gone")
    storage.commit(gone, [Operation("add", "h.txt", b"deleted with its repo")], title="h")
    storage.delete_repo("model", "org/gone")

    report = storage.gc()
    assert (report.commits_removed, report.blobs_removed) == (1, 2)
    assert report.bytes_freed == len(b"never acknowledged") + len(b"deleted with its repo")
    live = {e.sha256 for ref in repo.refs for e in storage.resolve(repo, ref).files.values()}
    assert {b.name for b in (tmp_path / "hub" / "blobs").iterdir()} == live
    assert storage.read_blob(storage.resolve(repo, "refs/pr/1").files["g.txt"]) == b"v2"
    assert storage.gc().blobs_removed == 0
    storage.close()

    result = invoke_cli("hub", "gc", "--root", str(tmp_path / "hub"))
    assert result.exit_code == 0 and "Removed 0 unreachable commits and 0 orphan blobs" in result.stdout
    with LocalHub(tmp_path / "hub"):
        result = invoke_cli("hub", "gc", "--root", str(tmp_path / "hub"))
        assert result.exit_code == 1 and "in use by another Hub server" in str(result.exception)


def test_a_blob_is_whole_or_absent_when_the_writer_dies(tmp_path: Path, monkeypatch):
    storage = HubStorage(tmp_path / "hub")
    repo = storage.create_repo("model", "org/torn")
    content = os.urandom(3 * 2**20)
    real_write, writes = os.write, []

    def dying_write(fd: int, data) -> int:
        writes.append(len(data))
        if len(writes) == 2:  # the process dies after its first MiB
            raise OSError("killed mid-write")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", dying_write)
    with pytest.raises(OSError, match="mid-write"):
        storage.commit(repo, [Operation("add", "w.bin", content)], title="w")
    monkeypatch.undo()
    storage.close()

    restarted = HubStorage(tmp_path / "hub")
    for blob in (tmp_path / "hub" / "blobs").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    repo = restarted.get("model", "org/torn")
    restarted.commit(repo, [Operation("add", "w.bin", content)], title="again")
    assert restarted.read_blob(restarted.resolve(repo, "main").files["w.bin"]) == content
    restarted.close()


# -- each protection is guarded --------------------------------------------------------------------
def _skip_token_check(route: str, pr: bool | None = None) -> Callable:
    def disable(monkeypatch) -> None:
        real = server_module._Handler._require_writer

        def unchecked(self, namespace):
            if self.route == route and (pr is None or self._flag("create_pr") == pr):
                return self.account or Account("intruder", every_namespace=True)
            return real(self, namespace)

        monkeypatch.setattr(server_module._Handler, "_require_writer", unchecked)

    return disable


def _public_downloads(monkeypatch) -> None:
    real = server_module._Handler._can_read
    monkeypatch.setattr(server_module._Handler, "_can_read", lambda self, repo: self.route == "resolve" or real(
        self, repo))


def _no_path_check(monkeypatch) -> None:
    monkeypatch.setattr(storage_module, "_check_path", lambda path: path)


def _write_in_place(path: Path, data: bytes, tmp_dir: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for start in range(0, len(data), 2**20):
            os.write(fd, data[start : start + 2**20])
    finally:
        os.close(fd)


PROTECTIONS = {  # what to switch off -> tests, called as guard(tmp_path, monkeypatch), of which one must fail
    "token check on create": (_skip_token_check("create_repo"), [test_a_token_writes_only_its_namespaces]),
    "token check on delete": (_skip_token_check("delete_repo"), [test_a_token_writes_only_its_namespaces]),
    "token check on commit": (_skip_token_check("commit", pr=False), [test_a_token_writes_only_its_namespaces]),
    "token check on preupload": (_skip_token_check("preupload"), [test_a_token_writes_only_its_namespaces]),
    "token check on PR": (_skip_token_check("commit", pr=True), [test_a_token_writes_only_its_namespaces]),
    "privacy on downloads": (_public_downloads, [test_private_repos_stay_inside_their_namespace]),
    "_check_path": (_no_path_check, [lambda tmp, mp: test_paths_are_validated_as_the_hub_does(tmp, "a\\b.txt")]),
    "atomic blob writes": (lambda mp: mp.setattr(storage_module, "_atomic_write", _write_in_place),
                           [test_a_blob_is_whole_or_absent_when_the_writer_dies]),
}


@pytest.mark.parametrize("protection", PROTECTIONS)
def test_disabling_a_protection_fails_a_test(protection: str, tmp_path: Path, monkeypatch):
    disable, guards = PROTECTIONS[protection]
    disable(monkeypatch)
    failures = []
    for i, guard in enumerate(guards):
        with pytest.MonkeyPatch.context() as guard_monkeypatch:
            try:
                if guard.__code__.co_argcount == 2:
                    guard(tmp_path / str(i), guard_monkeypatch)
                else:
                    guard(tmp_path / str(i))
            except (Exception, pytest.fail.Exception) as e:
                failures.append(e)
    assert failures, f"with the {protection} switched off, every test guarding it still passes"
