"""Run by tests/test_features.py under ``accelerate launch``: extract features, save them from the main process.

    accelerate launch --num_processes 2 tests/accelerate_extract.py MODEL DATASET SPLIT OUT.npz CACHE_DIR

Extracts twice: the first call computes (each process a shard) and writes the cache, the second must be a
cache hit in every process.
"""

from __future__ import annotations

import argparse

import numpy as np
from accelerate import PartialState

from hf_spider.backbones import load_backbone
from hf_spider.features import extract_features
from hf_spider.tasks import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("dataset")
    parser.add_argument("split")
    parser.add_argument("out")
    parser.add_argument("cache_dir")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    task = load_task(args.dataset, split=args.split)
    backbone = load_backbone(args.model, device="cpu")
    options = dict(batch_size=args.batch_size, with_source_probs=True, cache_dir=args.cache_dir, progress=False,
                   num_workers=0)
    first = extract_features(backbone, task, **options)
    second = extract_features(backbone, task, **options)
    state = PartialState()
    if state.is_main_process:
        np.savez(args.out, features=first.features, source_probs=first.source_probs, labels=first.labels,
                 cached_features=second.features, num_processes=state.num_processes,
                 from_cache=[first.from_cache, second.from_cache])


if __name__ == "__main__":
    main()
