"""The measurements behind the inflated-embedding defence (issue 9): plausibility bounds and verify's tolerance.

    uv run python benchmarks/plausibility.py [--offline-data ../shared/offline_data]

On the micro zoo (baseline ``resnet18-all-mix``, reference ``reference-mix`` train split, 200 images per
class, seed 0, CPU; the setup of ``hf_spider bench``):

* every zoo model's embedding at 1,000 steps: mean mask and largest value, with the flags
  :func:`~hf_spider.embedder.plausibility.plausibility_flags` raises on it and on its inflations
  (all ones; v·3 clipped to [0, 1]);
* what ``hf_spider verify`` must tell apart: replay noise (two seed-0 runs with 1 and 2 torch threads;
  a seed-0 run on features perturbed by a relative 1e-6, as another device's extraction may) and
  honest variation (seed 0 vs seed 1), against the mass excess of the inflations;
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

from hf_spider.constants import MICRO_ZOO
from hf_spider.embedder import embed_model
from hf_spider.embedder.plausibility import MAX_MEAN, MAX_VALUE, plausibility_flags
from hf_spider.features import extract_features
from hf_spider.tasks import load_task
from hf_spider.verify import MAX_MASS_EXCESS, MAX_MEAN_DIFF

ZOO = MICRO_ZOO / "models"
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
    columns = ("mean mask", "max value", "threads: max |diff|", "1e-6 features: mean |diff|", "seeds: mean |diff|",
               "seeds: |mass diff|", "ones: excess", "v·3: excess")
    for col in ("model", *columns, "flags", "ones: flags", "v·3: flags"):
        table.add_column(col, justify="left" if col == "model" else "right")
    rng = np.random.default_rng(0)
    stats = []
    for name, f in features.items():
        torch.set_num_threads(1)
        v = embed(f, base)
        torch.set_num_threads(2)
        threads = embed(f, base)
        perturbed = embed(*(x * (1 + 1e-6 * rng.standard_normal(x.shape, dtype=np.float32)) for x in (f, base)))
        seed1 = embed(f, base, seed=1)
        scaled = np.clip(3 * v, 0, 1)
        stats.append((v.mean(), v.max(), np.abs(v - threads).max(), np.abs(v - perturbed).mean(),
                      np.abs(v - seed1).mean(), abs(v.mean() - seed1.mean()), 1 - v.mean(), scaled.mean() - v.mean()))
        table.add_row(name, *(f"{x:.4f}" for x in stats[-1]), codes(v, name), codes(np.ones_like(v), name),
                      codes(scaled, name))
    console = Console(width=200)
    console.print(table)
    others = np.array([s for name, s in zip(features, stats, strict=True) if name != BASELINE])
    for i, label in enumerate(columns):
        console.print(f"{label} (26 non-baseline models): min {others[:, i].min():.4f}, "
                      f"median {np.median(others[:, i]):.4f}, max {others[:, i].max():.4f}")
    caught = int((others[:, 7] > MAX_MASS_EXCESS).sum())
    console.print(f"v·3 clipped fails verify (mass excess > {MAX_MASS_EXCESS}) for {caught} of {len(others)} models")

    selves = Table(title="Self-embeddings: a baseline against itself (the most an honest model keeps)")
    for col in ("baseline", "N", "steps", "mean", "max value"):
        selves.add_column(col, justify="left" if col == "baseline" else "right")
    for name in SELF_BASELINES:
        for steps in (200, 1000, 4000):
            v = embed(features[name], features[name], steps=steps)
            selves.add_row(name, str(v.size), str(steps), f"{v.mean():.3f}", f"{v.max():.5f}")
    console.print(selves)
    console.print(f"plausibility: MAX_MEAN = {MAX_MEAN}, MAX_VALUE = {MAX_VALUE:.6f}; "
                  f"verify: MAX_MASS_EXCESS = {MAX_MASS_EXCESS}, MAX_MEAN_DIFF = {MAX_MEAN_DIFF}")


if __name__ == "__main__":
    main()
