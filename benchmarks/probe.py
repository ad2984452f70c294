"""The linear-probe ground truth: scikit-learn's pipeline (the previous implementation) against
``hf_spider.groundtruth.linear_probe`` (the same objective, L-BFGS in a preconditioned eigenbasis, warm-started
along the C grid).

    uv run python benchmarks/probe.py --realzoo ~/.cache/hf_spider_realzoo/repos     # both parts
    uv run python benchmarks/probe.py --skip-zoo --repeats 3 --realzoo ...           # timing only
    uv run python benchmarks/probe.py --skip-timing --sklearn-tol 1e-8               # against a converged sklearn

1. Wall seconds of one probe (4 validation fits over the C grid + the refit), median of ``--repeats``, on real
   features: the first ``--n`` rows of ``--timing-data``'s train split through ``--timing-model`` (default:
   MobileNetV2-ImageNet fine-tuned on glyphs, 1,280 features, on src-glyphs-a at 64 px: 5,000 x 1,280, 58
   classes), tested on the remaining rows; process thread settings.
2. Test accuracy of both probes for every micro-zoo model (``benchmarks/zoo/models``) on every
   classification target under ``--data-root``: per target, the largest |Δ| in accuracy points and the
   pairs that differ; features from the ``extract_features`` cache (computed on the first run).
   ``--sklearn-tol`` sets scikit-learn's tolerance (default its own, 1e-4, i.e. today's probe); with a tight
   one both probes solve the objective to convergence. ``--zoo-threads`` (default 1) threads for both.

The load average is printed with the timings: on a shared machine they are indicative only.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from hf_spider.features import extract_features
from hf_spider.groundtruth import DEFAULT_CS, linear_probe
from hf_spider.tasks import load_task

ZOO = Path(__file__).parent / "zoo" / "models"
TARGETS = ("tgt-clipart-objects", "tgt-digits", "tgt-emoji-twitter", "tgt-icons-heldout")


def sklearn_probe(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0,
                  tol: float = 1e-4) -> float:
    """Test accuracy of the previous classification probe: StandardScaler + LogisticRegression (lbfgs,
    max_iter 2000, ``tol``), C from :data:`DEFAULT_CS` on a stratified 20% validation split, refit on all of ``x``."""

    def probe(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000 if tol >= 1e-4 else 100_000,
                                                                  tol=tol, random_state=seed))

    x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    validation = {c: (probe(c).fit(x_fit, y_fit).predict(x_val) == y_val).mean() for c in DEFAULT_CS}
    best = max(DEFAULT_CS, key=validation.__getitem__)  # ties: the first value of the grid
    return float((probe(best).fit(x, y).predict(x_test) == y_test).mean())


def fast_probe(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    return linear_probe(x, y, x_test, y_test).score


def time_probes(args: argparse.Namespace) -> None:
    task = load_task(str(args.timing_data), split="train")
    x = extract_features(str(args.timing_model), task, num_workers=0).features
    y = task.labels
    split = (x[:args.n], y[:args.n], x[args.n:], y[args.n:])
    print(f"{args.timing_model.name} on {args.timing_data.name}: train {args.n} x {x.shape[1]} float32, "
          f"{len(np.unique(y[:args.n]))} classes, test {len(y) - args.n}; torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'probe':10s} {'median s':>9s} {'runs s':>24s} {'accuracy':>9s}")
    for name, probe in (("sklearn", sklearn_probe), ("fast", fast_probe)):
        seconds, accuracy = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            accuracy = probe(*split)
            seconds.append(time.perf_counter() - start)
        runs = " ".join(f"{s:.1f}" for s in seconds)
        print(f"{name:10s} {statistics.median(seconds):9.2f} {runs:>24s} {accuracy:9.4f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}\n")


def compare_zoo(args: argparse.Namespace) -> None:
    models = sorted(p for p in ZOO.iterdir() if (p / "config.json").exists())
    print(f"micro zoo: {len(models)} models; {args.zoo_threads} thread(s); scikit-learn tol {args.sklearn_tol}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'target':22s} {'pairs':>5s} {'test n':>6s} {'max |Δ| pts':>11s} {'differ':>6s} "
          f"{'sklearn s':>9s} {'fast s':>7s}  worst pair (sklearn → fast)")
    worst = 0.0
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(args.zoo_threads)
    try:
        with threadpool_limits(args.zoo_threads):
            for target in args.targets:
                worst = max(worst, _compare_target(models, Path(args.data_root) / target, args.sklearn_tol))
    finally:
        torch.set_num_threads(torch_threads)
    print(f"max |Δ accuracy| over all pairs: {worst:.2f} points")


def _compare_target(models: list[Path], folder: Path, sklearn_tol: float) -> float:
    train, test = load_task(str(folder), split="train"), load_task(str(folder), split="test")
    deltas, seconds, worst_pair = [], [0.0, 0.0], ""
    for model in models:
        x, x_test = (extract_features(str(model), t, progress=False).features for t in (train, test))
        scores = []
        for i, probe in enumerate((functools.partial(sklearn_probe, tol=sklearn_tol), fast_probe)):
            start = time.perf_counter()
            scores.append(probe(x, train.labels, x_test, test.labels))
            seconds[i] += time.perf_counter() - start
        deltas.append(100 * (scores[1] - scores[0]))
        if abs(deltas[-1]) == max(abs(d) for d in deltas) and deltas[-1] != 0:
            worst_pair = f"{model.name} {scores[0]:.4f} → {scores[1]:.4f}"
    largest = max(abs(d) for d in deltas)
    print(f"{folder.name:22s} {len(deltas):5d} {len(test):6d} {largest:11.2f} {sum(d != 0 for d in deltas):6d} "
          f"{seconds[0]:9.1f} {seconds[1]:7.1f}  {worst_pair}", flush=True)
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    realzoo = Path.home() / ".cache" / "hf_spider_realzoo" / "repos"
    parser.add_argument("--timing-model", type=Path, default=realzoo / "mobilenetv2-imagenet-ft-glyphs-a")
    parser.add_argument("--timing-data", type=Path, default=Path("../shared/offline_data_64/src-glyphs-a"))
    parser.add_argument("--n", type=int, default=5000, help="training rows of the timed probe")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", default="../shared/offline_data")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--sklearn-tol", type=float, default=1e-4)
    parser.add_argument("--zoo-threads", type=int, default=1)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-zoo", action="store_true")
    args = parser.parse_args()
    if not args.skip_timing:
        time_probes(args)
    if not args.skip_zoo:
        compare_zoo(args)


if __name__ == "__main__":
    main()
