"""Time the Standardized Embedder on synthetic cached features (SPEC §3).

    uv run python benchmarks/embedder.py                    # CPU, and CUDA when available
    uv run python benchmarks/embedder.py --repeats 1 --threads 1

* ``embed_model``: n = 10,000 reference rows, d_m = 256, N = 512, 4000 SGD steps (the paper's short
  schedule). The model's features are a random linear map of baseline coordinates 0..127 plus noise.
* ``embed_task``: n = 2,000 rows, C = 10 classes decided by baseline coordinates 0..31, N = 512,
  ``gamma="auto"``: the whole γ sweep (21 values + γ = 0, trained as one batch) and the rule of thumb.

Prints one row per (function, device): median wall time of ``--repeats`` runs after one untimed
warm-up (lazy imports, CUDA context), the sizes and what was learned (fidelity; γ, ‖v‖₁, accuracy),
so a regression in speed or in quality shows in the same table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from hf_spider.embedder import embed_model, embed_task


def make_model_data(n: int, d_m: int, n_base: int, planted: int, seed: int = 0):
    """Baseline features B [n, N] ~ N(0, 1) and model features F [n, d_m] = B[:, :planted] A + noise."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, n_base), dtype=np.float32)
    mix = rng.standard_normal((planted, d_m), dtype=np.float32) / np.sqrt(planted)
    feats = base[:, :planted] @ mix + 0.1 * rng.standard_normal((n, d_m), dtype=np.float32)
    return feats, base


def make_task_data(n: int, n_base: int, classes: int, informative: int, seed: int = 1):
    """Baseline features B [n, N] and labels [n] = argmax of a noisy linear map of B[:, :informative]."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, n_base), dtype=np.float32)
    logits = base[:, :informative] @ rng.standard_normal((informative, classes)) + 0.5 * rng.standard_normal(
        (n, classes)
    )
    return base, logits.argmax(1)


def timed(fn, repeats: int):
    """(median seconds over ``repeats`` runs after one warm-up, result of the last run)."""
    fn()
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=4000, help="embed_model steps (lr ÷10 every steps/4)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    n_m, d_m, n_base, planted = 10_000, 256, 512, 128
    feats, base = make_model_data(n_m, d_m, n_base, planted)
    n_t, classes, informative = 2_000, 10, 32
    task_base, labels = make_task_data(n_t, n_base, classes, informative)
    lr_step = max(1, args.steps // 4)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), median of {args.repeats}")
    print(f"{'function':<12} {'device':<6} {'sizes':<44} {'median s':>9}  result")
    for dev in devices:
        seconds, emb = timed(
            lambda dev=dev: embed_model(feats, base, steps=args.steps, lr_step=lr_step, device=dev, progress=False),
            args.repeats,
        )
        v = emb.vector
        sizes = f"n={n_m} d_m={d_m} N={n_base} steps={args.steps}"
        print(
            f"{'embed_model':<12} {dev:<6} {sizes:<44} {seconds:9.2f}  L_to={emb.fidelity_to:.3f} "
            f"L_from={emb.fidelity_from:.3f} v̄[planted]={v[:planted].mean():.2f} v̄[rest]={v[planted:].mean():.2f}"
        )
        seconds, task = timed(lambda dev=dev: embed_task(task_base, labels, device=dev, progress=False), args.repeats)
        sizes = f"n={n_t} C={classes} N={n_base} γ=auto ({len(task.sweep)} γ, 60 ep)"
        u = task.vector
        print(
            f"{'embed_task':<12} {dev:<6} {sizes:<44} {seconds:9.2f}  γ={task.gamma:.2g} acc={task.accuracy:.3f} "
            f"‖v‖₁={u.sum():.1f} (on informative {u[:informative].sum():.1f})"
        )


if __name__ == "__main__":
    main()
