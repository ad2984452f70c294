"""How long the embedder's selection sweep and a model embedding take, and the sweep's memory.

    uv run python benchmarks/select_sweep.py [--models 1000000] [--dim 512] [--repeats 5] [--steps 4000]

Sweep: rank ``--models`` synthetic published embeddings (N = ``--dim``) for one task embedding:

- over a memory-mapped safetensors matrix (:class:`~hf_spider.formats.matrix.MappedMatrix`, as a local index
  stores it), block by block with each block's pages released: scores and the full ranking order, in a fresh
  process whose peak RSS is reported (the file is read once before, so it is in the page cache);
- over an in-memory array with ``rank_rows`` (the order as (name, score) pairs, as ``select`` uses it);
- through ``rank_by_embedding`` (an untrusted name -> vector mapping, validated first) on ``--mapping-models``.

Embedding: ``embed_model`` for ``--steps`` steps on cached features (n = 10,000 reference images, d_m = 512,
N = 512). Median of ``--repeats`` runs, CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mapped_sweep(path: str, name: str, dim: int, repeats: int) -> None:
    """(child process) Time sweep + argsort over the mapped matrix; print the median and this process's peak RSS."""
    from hf_spider.embedder import sweep
    from hf_spider.formats.matrix import MappedMatrix

    u = np.random.default_rng(1).random(dim).astype(np.float32)
    rss_before = peak_rss_mib()

    def rank() -> np.ndarray:
        with MappedMatrix(path, name) as matrix:
            return np.argsort(-sweep(u, matrix), kind="stable")  # the ranking order of every row

    seconds = timed(rank, repeats)
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "rss_before_mib": rss_before}))


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``; unlike ``ru_maxrss`` it starts afresh at ``exec``)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1_000_000)
    parser.add_argument("--mapping-models", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--embed-repeats", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return mapped_sweep(*args.child, args.dim, args.repeats)

    import torch
    from rich.console import Console
    from rich.table import Table
    from safetensors.numpy import save_file

    from hf_spider.embedder import embed_model, rank_by_embedding, rank_rows

    rng = np.random.default_rng(0)
    matrix = rng.random((args.models, args.dim), dtype=np.float32)
    names = [f"org{i % 1000}/model-{i:07d}" for i in range(args.models)]
    u = rng.random(args.dim).astype(np.float32)
    table = Table(title=f"Embedder selection costs, CPU ({os.cpu_count()} cores, torch threads "
                        f"{torch.get_num_threads()}), median of {args.repeats}")
    for col in ("operation", "size", "median s", "peak RSS MiB"):
        table.add_column(col)
    size = f"{args.models:,} x {args.dim}"
    with tempfile.TemporaryDirectory(prefix="hf_spider-sweep-") as folder:
        path = str(Path(folder) / "embeddings.safetensors")
        save_file({f"dim{args.dim}": matrix}, path)
        Path(path).read_bytes()  # into the page cache, as after the scan that wrote it
        child = subprocess.run([sys.executable, __file__, "--child", path, f"dim{args.dim}", "--dim", str(args.dim),
                                "--repeats", str(args.repeats)], check=True, capture_output=True, text=True)
        mapped = json.loads(child.stdout)
    table.add_row("sweep + full order, memory-mapped safetensors (fresh process)", size, f"{mapped['seconds']:.3f}",
                  f"{mapped['peak_rss_mib']:.0f} ({mapped['rss_before_mib']:.0f} before the sweeps)")
    t = timed(lambda: rank_rows(u, matrix, names), args.repeats)
    table.add_row("rank_rows: in-memory array, (name, score) pairs", size, f"{t:.3f}",
                  f"{matrix.nbytes / 2**20:.0f} for the array")
    vectors = {names[i]: matrix[i] for i in range(args.mapping_models)}
    t = timed(lambda: rank_by_embedding(u, vectors), args.repeats)
    table.add_row("rank_by_embedding: untrusted mapping, validated", f"{args.mapping_models:,} x {args.dim}",
                  f"{t:.3f}", "")

    features = torch.randn(10_000, 512, generator=torch.Generator().manual_seed(0)).relu()
    model = features[:, :256] @ torch.randn(256, 512, generator=torch.Generator().manual_seed(1))
    t = timed(lambda: embed_model(model, features, steps=args.steps, progress=False), args.embed_repeats)
    table.add_row(f"embed_model, {args.steps} steps", "n=10,000 d_m=512 N=512", f"{t:.2f}", "")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
