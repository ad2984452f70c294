"""``scan`` at scale: discover and validate thousands of published embeddings on the local Hub, repo by repo
and from an index.

    uv run python benchmarks/scan.py [--repos 10000] [--index-rows 100000] [--dim 512] [--workers 16]

Publishes ``--repos`` model repos, each tagged ``hf-spider`` with a valid embedding file (N = ``--dim``),
on a local Hub running as its own process; then, in one run:

- a cold ``scan`` (empty local index and Hub cache: list, download and validate every file, ``--workers``
  concurrent downloads) and a warm one (nothing changed: one listing, no download);
- ``index build --push`` of those repos (it scans them too, from its own empty state) and a cold
  ``scan --index`` of it (one snapshot download, every row re-validated, the local index written);
- a cold ``scan --index`` of an index of ``--index-rows`` rows (the built index's rows repeated under new repo
  ids, pushed as a dataset: the rows need no repos behind them until ``select`` checks its top K).

Prints seconds, repos/s and the index's speed-up over the per-repo cold scan.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _hubproc import serve_local_hub
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
    parser.add_argument("--index-rows", type=int, default=100_000)
    args = parser.parse_args()

    workdir, server = serve_local_hub("scan")
    from huggingface_hub import CommitOperationAdd, HfApi  # after HF_ENDPOINT is set

    from hf_spider.formats.embedding import embedding_path, serialize_embedding
    from hf_spider.formats.index import IndexRow, read_index_shard, write_index_shards
    from hf_spider.hub.index import build_index, scan_index
    from hf_spider.hub.scan import scan

    api = HfApi()
    card = b"---\ntags:\n- hf-spider\n---\n# bench model\n"

    def publish(i: int) -> None:
        repo = f"org{i % 100}/model-{i:05d}"
        api.create_repo(repo)
        vector = np.random.default_rng(i).random(args.dim, dtype=np.float32)
        api.create_commit(repo, operations=[
            CommitOperationAdd(embedding_path(BASELINE), serialize_embedding(vector, metadata(repo))),
            CommitOperationAdd("README.md", card)], commit_message="embedding")

    def cold_index_scan(repo: str):
        """scan --index with nothing cached: no Hub cache of the index, no local index."""
        shutil.rmtree(workdir / "hf_home" / "hub" / f"datasets--{repo.replace('/', '--')}", ignore_errors=True)
        shutil.rmtree(workdir / "index-from-index", ignore_errors=True)
        start = time.perf_counter()
        result = scan_index(repo, BASELINE, index_dir=workdir / "index-from-index", progress=False)
        return result, time.perf_counter() - start

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

        shutil.rmtree(workdir / "hf_home" / "hub", ignore_errors=True)  # the build downloads every file afresh
        start = time.perf_counter()
        build_index("bench/index", BASELINE, max_workers=args.workers, progress=False)
        build_s = time.perf_counter() - start
        indexed, indexed_s = cold_index_scan("bench/index")

        folder = Path(api.snapshot_download("bench/index", repo_type="dataset"))
        rows = [r for shard in sorted(folder.glob("data/*.parquet")) for r in read_index_shard(shard)]
        copies = -(-args.index_rows // len(rows))  # the built index's rows, repeated under new repo ids
        big = [IndexRow(f"{r.repo_id}-{c}", r.commit, r.last_modified, r.file_sha256,
                        {**r.metadata, "model": f"{r.repo_id}-{c}"}, r.vector) for c in range(copies) for r in rows]
        write_index_shards(big[: args.index_rows], workdir / "big")
        (workdir / "big" / "README.md").write_bytes((folder / "README.md").read_bytes())
        api.create_repo("bench/big-index", repo_type="dataset")
        api.upload_folder(repo_id="bench/big-index", repo_type="dataset", folder_path=workdir / "big")
        big_result, big_s = cold_index_scan("bench/big-index")
    finally:
        server.terminate()
        server.wait(timeout=30)

    table = Table(title=f"scan of {args.repos:,} repos with embeddings (N={args.dim}), local Hub on loopback, "
                        f"{os.cpu_count()} CPUs, {args.workers} concurrent downloads")
    for col in ("run", "embeddings", "seconds", "repos/s", "downloaded", "valid", "skipped", "repos/s vs cold scan"):
        table.add_column(col, justify="left" if col == "run" else "right")
    table.add_row("publish (8 threads)", f"{args.repos:,}", f"{publish_s:.1f}", f"{args.repos / publish_s:,.0f}",
                  "", "", "", "")
    table.add_row("index build --push (from empty)", f"{args.repos:,}", f"{build_s:.1f}",
                  f"{args.repos / build_s:,.0f}", "", "", "", "")
    for name, result, seconds in (("cold scan, repo by repo", cold, cold_s), ("warm scan (unchanged)", warm, warm_s),
                                  ("cold scan --index", indexed, indexed_s),
                                  ("cold scan --index, repeated rows", big_result, big_s)):
        n = len(result.entries) + len(result.skipped)
        table.add_row(name, f"{n:,}", f"{seconds:.2f}", f"{n / seconds:,.0f}", str(result.downloaded),
                      f"{len(result.entries):,}", str(len(result.skipped)),
                      f"{n / seconds / (args.repos / cold_s):.1f}x" if result is not cold else "")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
