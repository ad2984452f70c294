"""How far a tiny change of the baseline's features moves a model embedding, by step count and lr schedule.

    uv run python benchmarks/embedder_sensitivity.py --offline-data ../shared/offline_data

Micro-zoo models over ``resnet18-all-mix`` on ``reference-mix`` (200 images per class, as the bench's
embedder). Each model is embedded twice with the same seed: over the baseline's features, and over those
features times (1 + ``--relative`` · N(0, 1)), the size of the difference between batches fed contiguous and
channels-last (3e-6). Prints, per model, the largest and the mean |difference| per value of the two vectors:
first along the default schedule (lr ÷10 every 1,000 steps) at several step counts, then at 1,000 steps with
the lr decayed earlier and at the paper's 4,000 steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from hf_spider.constants import MICRO_ZOO
from hf_spider.embedder import embed_model
from hf_spider.features import extract_features
from hf_spider.tasks import load_task

ZOO = MICRO_ZOO / "models"
BASELINE = "resnet18-all-mix"
MODELS = ("resnet10-wesnoth", "convnext-papirus", "vit-wesnoth")
RUNS = [(steps, 1000) for steps in (100, 250, 500, 1000)] + [(1000, 250), (1000, 500), (4000, 1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline-data", type=Path, default=Path("../shared/offline_data"))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--relative", type=float, default=3e-6, help="Relative size of the baseline's change.")
    args = parser.parse_args()

    reference = load_task(str(args.offline_data / "reference-mix"), max_per_class=200, seed=0)
    baseline = extract_features(str(ZOO / BASELINE), reference).features
    noise = np.random.default_rng(0).standard_normal(baseline.shape)
    perturbed = (baseline * (1 + args.relative * noise)).astype(np.float32)
    table = Table(title=f"|v(baseline) - v(baseline · (1 + {args.relative:g} N(0,1)))| per value, largest / mean, "
                        f"by steps (lr ÷10 every ...); {len(reference.labels)} reference images, "
                        f"N = {baseline.shape[1]}, seed 0")
    table.add_column("model")
    for steps, lr_step in RUNS:
        table.add_column(f"{steps:,} (÷10 every {lr_step:,})", justify="right")
    for name in track(args.models, description="embedding each model twice per schedule"):
        features = extract_features(str(ZOO / name), reference, progress=False).features
        cells = []
        for steps, lr_step in RUNS:
            a, b = (embed_model(features, base, steps=steps, lr_step=lr_step, seed=0, progress=False).vector
                    for base in (baseline, perturbed))
            diff = np.abs(a.astype(np.float64) - b)
            cells.append(f"{diff.max():.1e} / {diff.mean():.1e}")
        table.add_row(f"{name} (d = {features.shape[1]})", *cells)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
