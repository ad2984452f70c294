"""Throughput and latency of the local Hub server, driven by the real huggingface_hub client.

    uv run python benchmarks/hub_server.py [--files 1000] [--repos 1000] [--repeats 3]

The server runs as its own process (``hf_spider hub serve``) on loopback, as users run it.
Prints one table: uploads/s (one commit per file, and one commit for a whole folder),
downloads/s (``hf_hub_download`` into an empty cache), and p50/p95 latency of
``model_info`` and ``list_models`` with ``--repos`` repositories on the server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _hubproc import serve_local_hub
from rich.console import Console
from rich.table import Table


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="small files uploaded / downloaded per repeat")
    parser.add_argument("--repos", type=int, default=1000, help="repositories on the server for the latency runs")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per latency measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    workdir, server = serve_local_hub("hub")
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download  # after HF_ENDPOINT is set

    api = HfApi()
    rows: list[tuple[str, str, str]] = []
    try:
        per_file, folder, down = [], [], []
        for r in range(args.repeats):
            repo = f"bench/files-{r}"
            api.create_repo(repo)
            t0 = time.perf_counter()
            for i in range(args.files):
                api.upload_file(path_or_fileobj=f"file {i}\n".encode() * 8, path_in_repo=f"f/{i:05d}.txt",
                                repo_id=repo)
            per_file.append(args.files / (time.perf_counter() - t0))

            ops = [CommitOperationAdd(f"g/{i:05d}.txt", f"g {i}\n".encode() * 8) for i in range(args.files)]
            t0 = time.perf_counter()
            api.create_commit(repo, operations=ops, commit_message="folder")
            folder.append(args.files / (time.perf_counter() - t0))

            cache = workdir / f"cache-{r}"
            t0 = time.perf_counter()
            for i in range(args.files):
                hf_hub_download(repo, f"f/{i:05d}.txt", cache_dir=cache)
            down.append(args.files / (time.perf_counter() - t0))
        rows += [
            ("upload_file, one commit per file", f"{statistics.median(per_file):,.0f} files/s", f"{args.files} files"),
            ("create_commit, all files in one commit", f"{statistics.median(folder):,.0f} files/s",
             f"{args.files} files"),
            ("hf_hub_download, empty cache", f"{statistics.median(down):,.0f} files/s", f"{args.files} files"),
        ]

        for i in range(args.repos):
            repo = f"org{i % 20}/model-{i:04d}"
            api.create_repo(repo)
            tags = ["hf-spider"] if i % 2 == 0 else ["other"]
            api.upload_file(path_or_fileobj=f"---\nlibrary_name: timm\ntags: {tags}\n---\n# m{i}\n".encode(),
                            path_in_repo="README.md", repo_id=repo)
        info_ms, list_ms, filt_ms = [], [], []
        for c in range(args.calls):
            t0 = time.perf_counter()
            api.model_info(f"org{c % 20}/model-{c % args.repos:04d}")
            info_ms.append(1000 * (time.perf_counter() - t0))
        for _ in range(max(args.calls // 10, 5)):
            t0 = time.perf_counter()
            n_all = sum(1 for _ in api.list_models())
            list_ms.append(1000 * (time.perf_counter() - t0))
            t0 = time.perf_counter()
            n_tag = sum(1 for _ in api.list_models(filter="hf-spider", author="org0"))
            filt_ms.append(1000 * (time.perf_counter() - t0))
        for name, values, size in [
            ("model_info", info_ms, f"{args.repos} repos, {len(info_ms)} calls"),
            ("list_models (all)", list_ms, f"{n_all} models listed, {len(list_ms)} calls"),
            ("list_models (filter+author)", filt_ms, f"{n_tag} models listed, {len(filt_ms)} calls"),
        ]:
            rows.append((name, f"p50 {percentile(values, 0.5):.1f} ms / p95 {percentile(values, 0.95):.1f} ms", size))
    finally:
        server.terminate()
        server.wait(timeout=30)

    table = Table(title=f"Local Hub server, huggingface_hub client, 127.0.0.1, {os.cpu_count()} CPUs "
                        f"(median of {args.repeats} repeats for throughput)")
    for col in ("operation", "result", "size"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
