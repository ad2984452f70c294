"""Build ``hf_spider/demo_data/``: the small, freely licensed image tasks ``hf_spider demo`` ships.

    uv run python benchmarks/zoo/build_demo_data.py --offline-data ../shared/offline_data

Only permissively licensed or public-domain sources of the offline image pack are used, sub-sampled
(seeded) to a few hundred 32x32 images; each task is a Hugging Face dataset folder (card with its
licence and credit + ``data/*.parquet``). The demo task's ground truth (each zoo model's linear-probe
accuracy, train -> test) is computed here once and committed, because 27 probes take longer than the
whole demo.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import datasets
import numpy as np

from hf_spider.bench import GROUND_TRUTH_PROTOCOLS, LINEAR_PROBE, model_key
from hf_spider.constants import MICRO_ZOO
from hf_spider.features import extract_features
from hf_spider.groundtruth import linear_probe
from hf_spider.tasks import load_task, sample_per_class

OUT = Path(__file__).parents[2] / "hf_spider" / "demo_data"
ZOO = MICRO_ZOO / "models"

#: name -> (offline dataset, licence id, credit, {split: images per class})
TASKS = {
    "clipart-objects": ("tgt-clipart-objects", "cc0-1.0",
                        "Openclipart drawings from the Debian package `openclipart-png`, public domain "
                        "(Creative Commons Public Domain Dedication); labels are openclipart categories.",
                        {"train": None, "test": None}),
    "clipart-symbols": ("src-clipart-symbols", "cc0-1.0",
                        "Openclipart symbols from the Debian package `openclipart-png`, public domain "
                        "(Creative Commons Public Domain Dedication).",
                        {"train": 8}),
    "animals": ("src-animal-mnist", "mit",
                "Animal drawings from the PyPI package `animal-mnist` (MIT licence).",
                {"train": 10}),
    "digits": ("tgt-digits", "bsd-3-clause",
               "Handwritten digits shipped with scikit-learn (`sklearn.datasets.load_digits`, BSD-3-Clause; "
               "originally from the UCI Machine Learning Repository), upscaled from 8x8.",
               {"train": 8}),
    "emoji": ("src-emoji-google", "apache-2.0",
              "Noto emoji images from the npm package `emoji-datasource-google` (images Apache-2.0, "
              "package MIT); labels are emoji categories.",
              {"train": 10}),
}

CARD = """---
license: {licence}
task_categories:
- image-classification
configs:
- config_name: default
  data_files:
{files}
---
# {name}

{counts} 32x32 RGB images in {classes} classes, bundled with hf_spider for `hf_spider demo` and its
spider charts: {sampling} of `{source}` from hf_spider's offline image pack.

**Source and licence:** {credit}
"""


def build_task(name: str, source: str, licence: str, credit: str, per_class: dict[str, int | None],
               offline_data: Path) -> None:
    folder = OUT / name
    (folder / "data").mkdir(parents=True, exist_ok=True)
    counts, classes = [], 0
    for split, k in per_class.items():
        ds = datasets.load_dataset(str(offline_data / source), split=split)
        rows = sample_per_class(np.asarray(ds["label"]), max_per_class=k, seed=0)
        ds.select(rows.tolist()).to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
        counts.append(f"{len(rows)} {split}")
        classes = ds.features["label"].num_classes
    files = "\n".join(f"  - split: {s}\n    path: data/{s}-00000-of-00001.parquet" for s in per_class)
    k = max((v for v in per_class.values() if v), default=None)
    sampling = f"at most {k} images per class (seed 0)" if k else "all images"
    (folder / "README.md").write_text(CARD.format(licence=licence, files=files, name=name, counts=" / ".join(counts),
                                                  classes=classes, sampling=sampling, source=source, credit=credit))


def ground_truth(task: str) -> dict:
    """Each zoo model's linear-probe accuracy on the demo task (train -> test)."""
    train, test = (load_task(OUT / task, split=s) for s in ("train", "test"))
    models = {}
    for folder in sorted(p.parent for p in ZOO.glob("*/config.json")):
        f_train, f_test = (extract_features(str(folder), t, progress=False).features for t in (train, test))
        models[model_key(str(folder))] = round(linear_probe(f_train, train.labels, f_test, test.labels).score, 6)
        print(f"{folder.name}: {models[model_key(str(folder))]:.3f}")
    return {"task": task, "metric": "accuracy", "protocol": GROUND_TRUTH_PROTOCOLS[LINEAR_PROBE].description,
            "train": len(train), "test": len(test), "models": models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline-data", type=Path, default=Path(__file__).parents[3] / "shared" / "offline_data")
    args = parser.parse_args()
    for name, (source, licence, credit, per_class) in TASKS.items():
        build_task(name, source, licence, credit, per_class, args.offline_data)
    (OUT / "ground_truth.json").write_text(json.dumps(ground_truth("clipart-objects"), indent=1) + "\n")


if __name__ == "__main__":
    main()
