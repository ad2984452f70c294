"""How long the embedder's selection sweep and a model embedding take.

    uv run python benchmarks/select_sweep.py [--models 100000] [--dim 512] [--repeats 5]

Sweep: rank ``--models`` synthetic published embeddings (N = ``--dim``) for one task embedding, as
``select`` does after the task embedding (``rank_rows`` over the validated index) and through
``rank_by_embedding`` (an untrusted name -> vector mapping, validated first). Embedding: ``embed_model``
for 4,000 steps on cached features (n = 10,000 reference images, d_m = 512, N = 512). Median of ``--repeats`` runs, CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from hf_spider.embedder import embed_model, rank_by_embedding, rank_rows


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--embed-repeats", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    matrix = rng.random((args.models, args.dim), dtype=np.float32)
    vectors = {f"org{i % 1000}/model-{i}": matrix[i] for i in range(args.models)}
    u = rng.random(args.dim).astype(np.float32)

    table = Table(title=f"Embedder selection costs, CPU ({os.cpu_count()} cores, torch threads "
                        f"{torch.get_num_threads()}), median of repeats")
    for col in ("operation", "size", "median s"):
        table.add_column(col)
    names = sorted(vectors)
    t = timed(lambda: rank_rows(u, matrix, names), args.repeats)
    table.add_row("rank_rows: select's sweep over the validated index", f"{args.models:,} x {args.dim}", f"{t:.4f}")
    t = timed(lambda: rank_by_embedding(u, vectors), args.repeats)
    table.add_row("rank_by_embedding: untrusted mapping, validated", f"{args.models:,} x {args.dim}", f"{t:.4f}")

    features = torch.randn(10_000, 512, generator=torch.Generator().manual_seed(0)).relu()
    model = features[:, :256] @ torch.randn(256, 512, generator=torch.Generator().manual_seed(1))
    t = timed(lambda: embed_model(model, features, steps=args.steps, progress=False), args.embed_repeats)
    table.add_row(f"embed_model, {args.steps} steps", "n=10,000 d_m=512 N=512", f"{t:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
