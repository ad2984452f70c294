"""``scan`` and ``publish_embedding`` through a misbehaving network, and the local Hub through crashes.

    uv run python benchmarks/faults.py [--repos 200] [--rates 0 0.2] [--repeats 3] [--pushes 20]
                                       [--kills 20] [--upload-mb 50] [--cases network servers kills]

A local Hub runs as its own process with ``--repos`` tagged repos (4% with a corrupt embedding file, 4% with
none, the rest a valid N=16 embedding). A :class:`~hf_spider.testing.faults.FaultyProxy` in front of it drops,
delays, truncates, 5xx-es or 429-s a share (``--rates``) of the requests. For each rate:

- ``hf_spider scan --json`` runs ``--repeats`` times as a subprocess through the proxy, with fresh caches
  and another seed each time: requests, faults injected by kind, repos indexed, valid repos reported as
  failed downloads, crashes (non-zero exit), lost entries (a repo neither indexed nor reported), corrupt
  entries (an indexed vector that differs from the published one), wall time (median).
- ``publish_embedding`` pushes to ``--pushes`` fresh repos through the proxy: landed whole (exactly one
  new commit holding the file and the card), failed cleanly (an error, the repo unchanged), duplicate
  commits, half commits.

Then the local Hub server itself (``servers`` and ``kills`` cases):

- **Two servers, one root**: a second ``hub serve`` on the root of a running one must refuse to start, name
  the first one's pid, and leave it serving.
- **Kill during commit**: ``--kills`` times, an ``--upload-mb`` file is uploaded and the server is
  SIGKILLed at a random moment of that upload, then restarted. Half the kills fall uniformly over 1.2 times
  a calibrated upload (most of which is the client encoding and sending); the other half fall uniformly
  over the server's write phase (from its first staging file in ``tmp/`` to the answer, also calibrated).
  Counted on the restarted server: commits acknowledged and present, acknowledged and lost (must be 0),
  not acknowledged (landed or not), unreadable repos (must be 0); after ``hf_spider hub gc``, the orphan
  blobs left (must be 0), counted independently by walking every ref's commits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _hubproc import free_port, start_server
from rich.console import Console
from rich.table import Table

BASELINE = "bench/baseline"
DIM = 16
CARD = b"---\nlicense: mit\ntags:\n- hf-spider\n---\n# bench model\n\nOwner text.\n"


def metadata(repo: str) -> dict[str, str]:
    return {"format_version": "1", "baseline": BASELINE, "baseline_revision": "a" * 40, "reference": "bench/ref",
            "reference_split": "train", "reference_fingerprint": "b" * 64, "model": repo, "model_revision": "c" * 40,
            "model_weights": "d" * 64, "steps": "100", "seed": "0", "fidelity_to": "0.5", "fidelity_from": "0.5",
            "tool_version": "bench", "created_at": "2026-01-01T00:00:00+00:00"}


def publish_zoo(api, repos: int) -> tuple[dict[str, np.ndarray], set[str]]:
    """``repos`` tagged repos; returns the valid vectors and the repos with a corrupt or no embedding."""
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import CommitOperationAdd

    from hf_spider.formats.embedding import embedding_path, serialize_embedding

    def publish(i: int) -> tuple[str, np.ndarray | None]:
        repo = f"scan/m-{i:04d}"
        api.create_repo(repo)
        vector = np.random.default_rng(i).random(DIM, dtype=np.float32)
        data = serialize_embedding(vector, metadata(repo))
        operations = [CommitOperationAdd("README.md", CARD)]
        if i % 25 != 13:  # 4% publish nothing
            operations.append(CommitOperationAdd(embedding_path(BASELINE), data[:-5] if i % 25 == 3 else data))
        api.create_commit(repo, operations=operations, commit_message="publish")
        return repo, vector if i % 25 not in (3, 13) else None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(publish, range(repos)))
    return {r: v for r, v in results if v is not None}, {r for r, v in results if v is None}


def scan_once(proxy_url: str, workdir: Path, valid: dict[str, np.ndarray], invalid: set[str]) -> dict:
    """One ``hf_spider scan`` subprocess with fresh caches; its outcome counted against what was published."""
    from hf_spider.hub.scan import load_local_index

    home = Path(tempfile.mkdtemp(dir=workdir))
    env = {**os.environ, "HF_ENDPOINT": proxy_url, "HF_HOME": str(home / "hf"), "HF_SPIDER_CACHE": str(home / "c"),
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "hf_spider.cli", "scan", "--baseline", BASELINE, "--author", "scan",
                          "--json"], capture_output=True, text=True, env=env, timeout=3600, check=False)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        return {"seconds": seconds, "crash": 1, "indexed": 0, "failed": 0, "lost": len(valid) + len(invalid),
                "corrupt": 0}
    out = json.loads(run.stdout)
    indexed = {e["repo_id"] for e in out["embeddings"]}
    reported = indexed | set(out["skipped"])
    (folder,) = (home / "c" / "index").glob("*/*")
    index = load_local_index(folder)
    return {"seconds": seconds, "crash": 0, "indexed": len(indexed),
            "failed": sum(1 for r in valid if out["skipped"].get(r, "").startswith("download failed")),
            "lost": len((set(valid) | invalid) - reported),
            "corrupt": sum(1 for r in indexed if r not in valid or not np.array_equal(index[r]["vector"], valid[r]))}


def push_all(api, pushes: int, rate: float) -> Counter:
    """``publish_embedding`` to ``pushes`` fresh repos through the proxy; outcomes counted on the Hub itself."""
    from hf_spider.errors import HubUnavailableError
    from hf_spider.formats.embedding import embedding_path
    from hf_spider.hub.embeddings import publish_embedding

    outcomes: Counter = Counter()
    for i in range(pushes):
        repo = f"push-{rate:g}/m-{i:03d}"
        api.create_repo(repo)
        api.upload_file(path_or_fileobj=CARD.replace(b"- hf-spider\n", b""), path_in_repo="README.md", repo_id=repo)
        before = [c.commit_id for c in api.list_repo_commits(repo)]
        try:
            publish_embedding(repo, np.full(DIM, 0.5, np.float32), metadata(repo))
            error = None
        except HubUnavailableError as e:
            error = e
        after = [c.commit_id for c in api.list_repo_commits(repo)]
        new = len(after) - len(before)
        files = {s.rfilename for s in api.model_info(repo).siblings}
        card = Path(api.hf_hub_download(repo, "README.md")).read_text()
        whole = embedding_path(BASELINE) in files and "hf_spider model embedding" in card and "Owner text." in card
        if new > 1:
            outcomes["duplicate commits"] += 1
        elif new == 1 and not whole:
            outcomes["half commits"] += 1
        elif new == 1 and error is None:
            outcomes["landed whole"] += 1
        elif new == 0 and error is not None:
            outcomes["failed cleanly"] += 1
        else:
            outcomes["wrong report"] += 1  # landed but reported failed, or reported landed but absent
    return outcomes


def two_servers(workdir: Path) -> dict[str, object]:
    """A second ``hub serve`` on a running server's root: refused, naming the first, which keeps serving."""
    from huggingface_hub import HfApi

    root, port = workdir / "two-servers", free_port()
    first = start_server(root, port)
    try:
        api = HfApi(endpoint=f"http://127.0.0.1:{port}", token="bench")
        api.create_repo("two/servers")
        second = subprocess.run([sys.executable, "-m", "hf_spider.cli", "hub", "serve", "--root", str(root),
                                 "--port", str(free_port())], capture_output=True, text=True, timeout=60, check=False)
        api.upload_file(path_or_fileobj=b"after", path_in_repo="after.txt", repo_id="two/servers")
        still_serving = "after.txt" in api.list_repo_files("two/servers")
    finally:
        first.terminate()
        first.wait(timeout=30)
    return {"second exit code": second.returncode, "names the first pid": f"pid {first.pid}" in second.stderr,
            "first still serving": still_serving, "message": " ".join(second.stderr.split()).replace(str(root), "ROOT")}


def kill_loop(workdir: Path, kills: int, megabytes: int, seed: int = 0) -> dict[str, int]:
    """SIGKILL the server at random moments of uploads; what the restarted server holds, then what gc leaves."""
    from huggingface_hub import HfApi

    from hf_spider.localhub.storage import git_blob_oid

    root, port, rng = workdir / "kills", free_port(), random.Random(seed)
    api = HfApi(endpoint=f"http://127.0.0.1:{port}", token="bench")
    server = start_server(root, port)
    api.create_repo("kill/loop")
    start = time.perf_counter()
    with _WritesWatch(root) as watch:
        api.upload_file(path_or_fileobj=os.urandom(megabytes << 20), path_in_repo="calibration.bin",
                        repo_id="kill/loop")
        upload_seconds = time.perf_counter() - start
        write_seconds = time.perf_counter() - watch.first_write(timeout=0)
    acknowledged: dict[str, str] = {}  # path -> git blob oid of what the server said it committed
    counts = Counter({key: 0 for key in ("acknowledged, present", "acknowledged, lost", "not acknowledged, landed",
                                         "not acknowledged, absent", "unreadable repos")})
    for i in range(kills):
        content, path = os.urandom(megabytes << 20), f"upload-{i:03d}.bin"
        outcome: dict[str, object] = {}

        def upload(content=content, path=path, outcome=outcome) -> None:
            try:
                api.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id="kill/loop")
                outcome["ack"] = True
            except Exception as e:  # the server died under it: any client error is "not acknowledged"
                outcome["error"] = type(e).__name__

        with _WritesWatch(root) as watch:
            uploader = threading.Thread(target=upload)
            uploader.start()
            if i % 2:  # during the server's write phase
                while not watch.first_write(timeout=0.01) and uploader.is_alive():
                    pass
                time.sleep(rng.uniform(0, write_seconds))
            else:
                time.sleep(rng.uniform(0, 1.2 * upload_seconds))
        server.send_signal(signal.SIGKILL)
        server.wait()
        uploader.join()
        if outcome.get("ack"):
            acknowledged[path] = git_blob_oid(content)
        server = start_server(root, port)
        try:  # a damaged repo would be skipped at startup: not found
            files = {s.rfilename: s.blob_id for s in api.model_info("kill/loop", files_metadata=True).siblings}
        except Exception:
            counts["unreadable repos"] += 1
            files = {}
        counts["not acknowledged, landed"] += not outcome.get("ack") and files.get(path) == git_blob_oid(content)
        counts["not acknowledged, absent"] += not outcome.get("ack") and path not in files
    for path, oid in acknowledged.items():
        counts["acknowledged, present" if files.get(path) == oid else "acknowledged, lost"] += 1
    server.terminate()
    server.wait(timeout=30)
    blobs_before = len(list((root / "blobs").iterdir()))
    gc = subprocess.run([sys.executable, "-m", "hf_spider.cli", "hub", "gc", "--root", str(root)],
                        capture_output=True, text=True, timeout=600, check=True)
    counts["orphan blobs before gc"] = blobs_before - len(_live_blobs(root))
    counts["orphan blobs after gc"] = len(list((root / "blobs").iterdir())) - len(_live_blobs(root))
    counts["corrupt blobs"] = sum(hashlib.sha256(b.read_bytes()).hexdigest() != b.name
                                  for b in (root / "blobs").iterdir())
    print(gc.stdout.strip())
    return {"kills": kills, "MB": megabytes, "upload s": round(upload_seconds, 1),
            "server write s": round(write_seconds, 2), **counts}


class _WritesWatch:
    """Notes when the server first stages a file under ``root/tmp`` (polling every millisecond)."""

    def __init__(self, root: Path) -> None:
        self._tmp, self._seen, self._stop = root / "tmp", threading.Event(), threading.Event()
        self._at = 0.0
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set() and not self._seen.is_set():
            if any(self._tmp.glob("*.tmp")):
                self._at = time.perf_counter()
                self._seen.set()
            time.sleep(0.001)

    def first_write(self, timeout: float | None = None) -> float:
        """When the first staged file appeared (0.0 if none within ``timeout``)."""
        self._seen.wait(timeout)
        return self._at

    def __enter__(self) -> _WritesWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _live_blobs(root: Path) -> set[str]:
    """Blobs named by a commit some ref reaches, read from the storage files directly (not through gc's code)."""
    live = set()
    for refs_file in root.glob("repos/*/*/*/refs.json"):
        todo, seen = list(json.loads(refs_file.read_text()).values()), set()
        while todo:
            oid = todo.pop()
            if oid in seen:
                continue
            seen.add(oid)
            commit = json.loads((refs_file.parent / "commits" / f"{oid}.json").read_text())
            live.update(entry["sha256"] for entry in commit["files"].values())
            todo += commit["parents"]
    return live


def network_cases(args: argparse.Namespace, workdir: Path, console: Console) -> None:
    hub_port, proxy_port = free_port(), free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    os.environ.update(HF_ENDPOINT=proxy_url)
    from huggingface_hub import HfApi  # after HF_ENDPOINT is set: publish_embedding goes through the proxy

    from hf_spider.testing.faults import KINDS, FaultyProxy

    server = start_server(workdir / "hub", hub_port)
    hub_url = f"http://127.0.0.1:{hub_port}"
    api = HfApi(endpoint=hub_url)
    rows = []
    try:
        valid, invalid = publish_zoo(api, args.repos)
        for rate in args.rates:
            scans, requests, faults = [], 0, Counter()
            for repeat in range(args.repeats):
                with FaultyProxy(hub_url, rate=rate, seed=repeat, port=proxy_port) as proxy:
                    scans.append(scan_once(proxy_url, workdir, valid, invalid))
                requests += proxy.requests
                faults += proxy.injected
            with FaultyProxy(hub_url, rate=rate, seed=100, port=proxy_port) as proxy:
                pushes = push_all(api, args.pushes, rate)
            rows.append((rate, requests, faults, scans, pushes, proxy.requests, proxy.injected))
    finally:
        server.terminate()
        server.wait(timeout=30)

    table = Table(title=f"hf_spider scan of {args.repos} repos ({len(valid)} valid, {len(invalid)} corrupt or empty) "
                        f"through a faulty proxy, {args.repeats} runs per rate (totals; wall time: median)")
    for col in ("fault rate", "requests", *KINDS, "indexed", "failed dl", "crashes", "lost", "corrupt", "wall s"):
        table.add_column(col, justify="right")
    for rate, requests, faults, scans, *_ in rows:
        table.add_row(f"{rate:.0%}", str(requests), *(str(faults[k]) for k in KINDS),
                      str(sum(s["indexed"] for s in scans)), str(sum(s["failed"] for s in scans)),
                      str(sum(s["crash"] for s in scans)), str(sum(s["lost"] for s in scans)),
                      str(sum(s["corrupt"] for s in scans)), f"{statistics.median(s['seconds'] for s in scans):.1f}")
    console.print(table)
    pushes_table = Table(title=f"publish_embedding to {args.pushes} repos through the faulty proxy")
    outcomes = ("landed whole", "failed cleanly", "duplicate commits", "half commits", "wrong report")
    for col in ("fault rate", "requests", "faults", *outcomes):
        pushes_table.add_column(col, justify="right")
    for rate, *_, pushes, requests, injected in rows:
        pushes_table.add_row(f"{rate:.0%}", str(requests), str(sum(injected.values())),
                             *(str(pushes[o]) for o in outcomes))
    console.print(pushes_table)


def print_row(console: Console, title: str, row: dict[str, object]) -> None:
    table = Table(title=title)
    for col in row:
        table.add_column(col, justify="right")
    table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--upload-mb", type=int, default=50)
    parser.add_argument("--cases", nargs="+", choices=["network", "servers", "kills"],
                        default=["network", "servers", "kills"])
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="hf_spider-bench-faults-"))
    os.environ.update(HF_HOME=str(workdir / "hf_home"), HF_TOKEN="bench", HF_HUB_DISABLE_PROGRESS_BARS="1",
                      HF_HUB_DISABLE_TELEMETRY="1")
    console = Console(width=200)
    try:
        if "network" in args.cases:
            network_cases(args, workdir, console)
        if "servers" in args.cases:
            print_row(console, "Two `hub serve` on one root", two_servers(workdir))
        if "kills" in args.cases:
            print_row(console, f"Local Hub SIGKILLed at random moments of {args.kills} uploads of {args.upload_mb} MB, "
                               "restarted each time; orphans counted by walking every ref",
                      kill_loop(workdir, args.kills, args.upload_mb))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
