"""The measurements behind the inflated-embedding defence (issue 9): plausibility bounds and verify's tolerance.

    uv run python benchmarks/plausibility.py [--offline-data ../shared/offline_data]

On the micro zoo (baseline ``resnet18-all-mix``, reference ``reference-mix`` train split, 200 images per
class, seed 0, CPU; the setup of ``hf_spider bench``):

* every zoo model's embedding at 1,000 steps: mean mask and share of values exactly 1, with the flags
  :func:`~hf_spider.embedder.plausibility.plausibility_flags` raises on it and on its inflations
  (all ones; v·3 clipped to [0, 1]);
* the mean |difference| per value between seed 0 and seed 1 (honest variation) and between two seed-0
  runs with different torch thread counts (replay noise): verify's tolerance must sit between them;
* self-embeddings (a baseline embedded against itself) at 200, 1,000 and 4,000 steps: the most mass an
  honest embedding keeps, the ceiling for ``MAX_MEAN``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from hf_spider.embedder import embed_model
from hf_spider.embedder.plausibility import MAX_MEAN, MAX_SATURATED, plausibility_flags
from hf_spider.features import extract_features
from hf_spider.tasks import load_task

ZOO = Path(__file__).parent / "zoo" / "models"
BASELINE, STEPS = "resnet18-all-mix", 1000
SELF_BASELINES = ("resnet18-all-mix", "vit-all-mix", "resnet10-animals", "convnext-icons-mix")


def embed(features: np.ndarray, baseline: np.ndarray, *, steps: int = STEPS, seed: int = 0) -> np.ndarray:
    return embed_model(features, baseline, steps=steps, seed=seed, device="cpu", progress=False).vector


def codes(vector: np.ndarray, name: str) -> str:
    return ",".join(f.split(":")[0] for f in plausibility_flags(vector, {"model": name}, name)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline-data", type=Path, default=Path(__file__).parents[2] / "shared" / "offline_data")
    args = parser.parse_args()
    reference = load_task(args.offline_data / "reference-mix", split="train", max_per_class=200, seed=0)
    features = {m.name: extract_features(str(m), reference, progress=False).features
                for m in sorted(ZOO.iterdir()) if (m / "config.json").exists()}
    base = features[BASELINE]

    table = Table(title=f"Zoo embeddings over {BASELINE} ({STEPS} steps, n={len(reference)}): honest vs inflated")
    for col in ("model", "mean", "share = 1", "flags", "ones: flags", "v·3 clip: flags", "|seed0 - seed1|",
                "|replay 1 vs 2 threads|"):
        table.add_column(col, justify="left" if col == "model" else "right")
    stats = []
    for name, f in features.items():
        torch.set_num_threads(1)
        v = embed(f, base)
        torch.set_num_threads(2)
        replay = embed(f, base)
        seed_diff = float(np.abs(v - embed(f, base, seed=1)).mean())
        stats.append((v.mean(), (v >= 1).mean(), seed_diff, float(np.abs(v - replay).max())))
        table.add_row(name, f"{v.mean():.3f}", f"{(v >= 1).mean():.3f}", codes(v, name), codes(np.ones_like(v), name),
                      codes(np.clip(3 * v, 0, 1), name), f"{seed_diff:.4f}", f"{stats[-1][3]:.1e}")
    console = Console(width=150)
    console.print(table)
    others = np.array([s for name, s in zip(features, stats, strict=True) if name != BASELINE])
    for i, label in enumerate(("mean mask", "share of exact ones", "|seed 0 - seed 1| per value",
                               "max |replay difference|")):
        console.print(f"{label} (26 non-baseline models): min {others[:, i].min():.4f}, "
                      f"median {np.median(others[:, i]):.4f}, max {others[:, i].max():.4f}")

    selves = Table(title="Self-embeddings: a baseline against itself (the most an honest model keeps)")
    for col in ("baseline", "N", "steps", "mean", "share = 1"):
        selves.add_column(col, justify="left" if col == "baseline" else "right")
    for name in SELF_BASELINES:
        for steps in (200, 1000, 4000):
            v = embed(features[name], features[name], steps=steps)
            selves.add_row(name, str(v.size), str(steps), f"{v.mean():.3f}", f"{(v >= 1).mean():.3f}")
    console.print(selves)
    console.print(f"bounds: MAX_MEAN = {MAX_MEAN}, MAX_SATURATED = {MAX_SATURATED}")


if __name__ == "__main__":
    main()
