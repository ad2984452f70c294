"""Time every transferability score on synthetic features with class structure, and compare LogME
with a reference written in the style of the public implementation (per-class loop, numba).

    uv run python benchmarks/scores.py                       # n=10000, d=2048, C=100, CPU
    uv run python benchmarks/scores.py --device cuda --scores logme gbc

Prints one row per score: median wall time of ``--repeats`` runs and the value; then the reference
LogME's time, the speed-up and the largest relative difference of the per-class evidences.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from hf_spider import scores

try:
    import numba
except ImportError:  # the bench dependency group is optional
    numba = None


def make_task(n: int, d: int, classes: int, source_classes: int, seed: int = 0):
    """float32 features [n, d] (class means in a 128-dim latent space, linearly mixed, plus noise with a
    decaying spectrum), labels [n] (balanced, shuffled), source probabilities [n, source_classes]."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % classes)
    latent = min(128, d)
    means = rng.standard_normal((classes, latent)) * 0.4  # k-NN accuracy ~0.6 at the defaults
    z = means[labels] + rng.standard_normal((n, latent))
    mixing = rng.standard_normal((latent, d)) / math.sqrt(latent)
    spectrum = 0.5 / np.sqrt(1 + np.arange(d))  # noise scale per direction
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    features = (z @ mixing + (rng.standard_normal((n, d)) * spectrum) @ basis).astype(np.float32)
    head = rng.standard_normal((d, source_classes)).astype(np.float32) / math.sqrt(d)
    logits = features @ head * 4
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return features, labels, (probs / probs.sum(1, keepdims=True)).astype(np.float32)


if numba is not None:

    @numba.njit(cache=False)
    def _each_evidence(x2, res_x2, sigma, n, d):
        """thuml's ``LogME._fit_fixed_point`` for one target: 11 iterations at most, 1e-5 guards, 0.1% rule."""
        alpha, beta = 1.0, 1.0
        m2 = res2 = 0.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                    - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
        return evidence / n


def reference_logme(features: np.ndarray, labels: np.ndarray):
    """Per-class evidences, public-implementation style: one (truncated) SVD, then a Python loop over
    classes calling a numba-jitted fixed point."""
    f = features.astype(np.float64)
    n, d = f.shape
    if n > d:  # SVD of FᵀF, then u = F v / s (the public code's truncated_svd)
        _, s, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s)
        k = int((s > 1e-10).sum())
        u = (f @ vh[:k].T) / s[:k]
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        k = len(s)
    sigma = s[:k] ** 2
    evidences = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        x = u.T @ y
        x2 = x**2
        evidences.append(_each_evidence(x2, (y**2).sum() - x2.sum(), sigma, n, d))
    return np.array(evidences)


def _median_time(fn, repeats: int):
    """Median wall time, median CPU time of this process, and the last value."""
    times, cpu, value = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        value = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), statistics.median(cpu), value


def _gram_seconds(features: np.ndarray) -> float:
    """Host calibration: median time of the float64 Gram matrix LogME starts from."""
    f64 = features.astype(np.float64)
    return _median_time(lambda: f64.T @ f64, 3)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--source-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--scores", nargs="+", default=scores.available(), choices=scores.available())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="BLAS / OpenMP / torch threads for everything timed, ours and the reference (default 0: the "
        "libraries' defaults, one per core; use 1 on a machine shared with other jobs, where spinning "
        "BLAS threads can slow LAPACK reductions many times over)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        # load every native library the scores use (BLAS, OpenMP), then limit them all
        import sklearn.cluster
        import sklearn.covariance
        import sklearn.decomposition
        import sklearn.mixture  # noqa: F401

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)

    features, labels, probs = make_task(args.n, args.d, args.classes, args.source_classes, args.seed)
    f_in = torch.from_numpy(features).to(args.device) if args.device == "cuda" else features
    p_in = torch.from_numpy(probs).to(args.device) if args.device == "cuda" else probs
    print(
        f"n={args.n} d={args.d} classes={args.classes} source_classes={args.source_classes} "
        f"device={args.device} torch threads={torch.get_num_threads()} repeats={args.repeats}"
    )
    syrk_s = _gram_seconds(features)
    gflops = args.n * args.d**2 / syrk_s / 1e9
    print(f"host: float64 FᵀF ({args.n}x{args.d}, dsyrk) {syrk_s:.3f} s = {gflops:.0f} GFLOP/s")
    scores.score("logme", features=features[:64, :8], labels=labels[:64])  # warm-up (imports, LAPACK)
    print(f"{'score':<18}{'median s':>9}{'cpu s':>9}  value")
    logme_time = None
    for name in args.scores:
        seconds, cpu, value = _median_time(
            lambda name=name: scores.score(name, features=f_in, labels=labels, source_probs=p_in), args.repeats
        )
        logme_time = seconds if name == "logme" else logme_time
        print(f"{name:<18}{seconds:>9.3f}{cpu:>9.3f}  {value:.6g}", flush=True)

    if "logme" in args.scores and numba is not None:
        reference_logme(features[:64, :8], labels[:64])  # compile the jitted kernel outside the timing
        ref_time, ref_cpu, ref = _median_time(lambda: reference_logme(features, labels), args.repeats)
        ours = scores.logme_fit(f_in, labels).evidence
        rel = np.max(np.abs(ours - ref) / np.abs(ref))
        print(f"{'logme numba ref':<18}{ref_time:>9.3f}{ref_cpu:>9.3f}  {ref.mean():.6g}")
        print(
            f"LogME speed-up over the numba reference: {ref_time / logme_time:.1f}x; "
            f"max relative difference of the per-class evidences: {rel:.1e}"
        )
    elif "logme" in args.scores:
        print("numba not installed: reference LogME skipped (uv sync --group bench)")


if __name__ == "__main__":
    main()
