"""Does the embedder's miss on the real zoo come from its short optimisation? Its rows at ``--steps``.

    uv run python benchmarks/realzoo/embedder_steps.py [--steps 250 1000]

``bench.py`` embeds the 47 networks (and each target) with 250 optimisation steps, a quarter of the
default, to fit the CPU budget. This runs the embedder's row alone (with the priors) on the same targets,
baseline, reference set and stored ground truth for each ``--steps``, in one process, and prints mean τw and
top-3 regret per target, with the seconds the model embeddings took. Run ``bench.py`` first (features,
targets, ground truth).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench import BASELINE, DEFAULT_CACHE, HERE, REFERENCE, REFERENCE_CAP, TARGETS, zoo_models
from rich.console import Console
from rich.table import Table

from hf_spider.bench import GroundTruthStore, run_bench
from hf_spider.embedder.zoo import EmbedderSetup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=DEFAULT_CACHE / "repos")
    parser.add_argument("--data-root", type=Path, default=HERE.parents[2] / "shared" / "offline_data_64")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "bench")
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 1000])
    args = parser.parse_args()
    zoo = zoo_models(args.zoo)
    targets = [str(args.cache / "data" / t) for t in TARGETS]
    table = Table(title=f"embedder on the real zoo ({len(zoo)} networks, baseline {BASELINE}, reference "
                        f"{REFERENCE} at {REFERENCE_CAP}/class): τw (SFDA) / top-3 regret in points")
    for col in ("steps", *TARGETS, "mean τw", "mean regret@3", "seconds"):
        table.add_column(col, justify="right")
    for steps in args.steps:
        start = time.perf_counter()
        embedder = EmbedderSetup(str(args.zoo / BASELINE), str(args.data_root / REFERENCE),
                                 max_per_class=REFERENCE_CAP, steps=steps)
        report = run_bench(zoo, targets, methods=["embedder"], embedder=embedder,
                           ground_truth=GroundTruthStore(HERE / "ground_truth.json"))
        rows = {Path(r["target"]).name: r for r in report.rows if r["method"] == "embedder"}
        table.add_row(str(steps), *(f"{rows[t]['tau_sfda']:.2f} / {100 * rows[t]['regret_top3']:.1f}" for t in TARGETS),
                      f"{np.mean([r['tau_sfda'] for r in rows.values()]):.3f}",
                      f"{100 * np.mean([r['regret_top3'] for r in rows.values()]):.1f}",
                      f"{time.perf_counter() - start:.0f}")
        Console(width=200).print(table)


if __name__ == "__main__":
    main()
