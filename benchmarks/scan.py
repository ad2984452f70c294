"""``scan`` at scale: discover and validate thousands of published embeddings on the local Hub.

    uv run python benchmarks/scan.py [--repos 10000] [--dim 512] [--workers 16]

Publishes ``--repos`` model repos, each tagged ``hf-spider`` with a valid embedding file (N = ``--dim``),
on a local Hub running as its own process; then times a cold ``scan`` (empty index: list, download
and validate every file, ``--workers`` concurrent downloads) and a warm one (nothing changed: one
listing, no download). Prints repos/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _hubproc import free_port, start_server
from rich.console import Console
from rich.table import Table

BASELINE = "bench/baseline"


def metadata(repo: str) -> dict[str, str]:
    return {"format_version": "1", "baseline": BASELINE, "baseline_revision": "0" * 40, "reference": "bench/ref",
            "reference_split": "train", "reference_fingerprint": "f" * 64, "model": repo, "model_revision": "0" * 40,
            "model_weights": "w", "steps": "4000", "seed": "0", "fidelity_to": "0.9", "fidelity_from": "0.9",
            "tool_version": "bench", "created_at": "2026-11-22T00:00:00+00:00"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--workers", type=int, default=16, help="concurrent downloads in scan")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="hf_spider-bench-scan-"))
    port = free_port()
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(workdir / "hf_home"), HF_TOKEN="bench",
                      HF_SPIDER_CACHE=str(workdir / "cache"), HF_HUB_DISABLE_PROGRESS_BARS="1",
                      HF_HUB_DISABLE_TELEMETRY="1")
    from huggingface_hub import CommitOperationAdd, HfApi  # after HF_ENDPOINT is set

    from hf_spider.formats.embedding import embedding_path, serialize_embedding
    from hf_spider.hub.scan import scan

    server = start_server(workdir / "hub", port)
    api = HfApi()
    card = b"---\ntags:\n- hf-spider\n---\n# bench model\n"

    def publish(i: int) -> None:
        repo = f"org{i % 100}/model-{i:05d}"
        api.create_repo(repo)
        vector = np.random.default_rng(i).random(args.dim, dtype=np.float32)
        api.create_commit(repo, operations=[
            CommitOperationAdd(embedding_path(BASELINE), serialize_embedding(vector, metadata(repo))),
            CommitOperationAdd("README.md", card)], commit_message="embedding")

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(publish, range(args.repos)))
        publish_s = time.perf_counter() - start
        index = workdir / "index"
        start = time.perf_counter()
        cold = scan(BASELINE, index_dir=index, max_workers=args.workers, progress=False)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        warm = scan(BASELINE, index_dir=index, max_workers=args.workers, progress=False)
        warm_s = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)

    table = Table(title=f"scan of {args.repos:,} repos with embeddings (N={args.dim}), local Hub on loopback, "
                        f"{os.cpu_count()} CPUs, {args.workers} concurrent downloads")
    for col in ("run", "seconds", "repos/s", "downloaded", "valid", "skipped"):
        table.add_column(col, justify="left" if col == "run" else "right")
    table.add_row("publish (8 threads)", f"{publish_s:.1f}", f"{args.repos / publish_s:,.0f}", "", "", "")
    for name, result, seconds in (("cold scan", cold, cold_s), ("warm scan (unchanged)", warm, warm_s)):
        table.add_row(name, f"{seconds:.1f}", f"{args.repos / seconds:,.0f}", str(result.downloaded),
                      str(len(result.entries)), str(len(result.skipped)))
    Console(width=130).print(table)


if __name__ == "__main__":
    main()
