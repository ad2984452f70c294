"""Train the micro zoo's Model Spider ranker and measure what it costs and what it learns.

    uv run python benchmarks/spider_train.py --offline-data ../shared/offline_data [--out hf_spider/micro_zoo/ranker]

Prints, for the embedding-token ranker (the bundled one), the table-token ranker (the paper's) and
an embedding-token ranker trained without one held-out model: wall time per phase (features come
from the cache once extracted; the first run extracts them), the supervision chosen, and the
validation weighted τ by re-ranking budget k. The held-out ranker is saved next to the main one
(``<out>-holdout-<model>``) so that ``hf_spider bench --ranker`` can place the held-out model among
the 27 on the development targets without retraining.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hf_spider.backbones import model_key
from hf_spider.constants import MICRO_ZOO, MICRO_ZOO_ORG, OFFLINE_POOL
from hf_spider.embedder.zoo import EmbedderSetup
from hf_spider.spider import RankerRecipe, train_ranker
from hf_spider.tasks import load_task, parse_dataset_spec

ZOO = MICRO_ZOO / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline-data", type=Path, default=Path("../shared/offline_data"))
    parser.add_argument("--out", type=Path, default=ZOO.parent / "ranker")
    parser.add_argument("--holdout", default="resnet18-emoji-google", help="Zoo model left out of one ranker.")
    parser.add_argument("--train-tasks", type=int, default=300)
    parser.add_argument("--validation-tasks", type=int, default=30)
    args = parser.parse_args()

    zoo = sorted(str(p.parent) for p in ZOO.glob("*/config.json"))
    encoder = str(ZOO / "resnet18-all-mix")
    pool = [load_task(str(args.offline_data / name), split=split)
            for name, split in map(parse_dataset_spec, OFFLINE_POOL)]
    embedder = EmbedderSetup(encoder, str(args.offline_data / "reference-mix"))
    variants = {
        "embedding tokens (bundled)": (zoo, "embedding", args.out),
        "table tokens (paper)": (zoo, "table", None),
        f"embedding tokens, {args.holdout} held out": (
            [m for m in zoo if model_key(m) != args.holdout], "embedding",
            args.out.with_name(f"{args.out.name}-holdout-{args.holdout}")),
    }
    console = Console(width=160)
    table = Table(title=f"Model Spider training on the micro zoo ({len(zoo)} models, {args.train_tasks} training / "
                        f"{args.validation_tasks} validation tasks, CPU)")
    for col in ("ranker", "wall s", "of which features s", "labels s", "training s", "supervision", "τw k=0",
                "τw k=3", "best k"):
        table.add_column(col)
    results = {}
    for label, (models, tokens, out) in variants.items():
        recipe = RankerRecipe(encoder=encoder, embedder=embedder, token_source=tokens, train_tasks=args.train_tasks,
                              validation_tasks=args.validation_tasks)
        start = time.perf_counter()
        ranker, report = train_ranker(models, pool, recipe, names=[f"{MICRO_ZOO_ORG}/{model_key(m)}" for m in models])
        wall = time.perf_counter() - start
        if out is not None:
            (out / "README.md").unlink(missing_ok=True)  # save_pretrained keeps an existing card
            ranker.save_pretrained(out)
        s, tau = report.seconds, report.validation_tau
        table.add_row(label, f"{wall:.0f}", f"{s.get('features', 0) + s.get('model_embeddings', 0):.0f}",
                      f"{s['validation_labels'] + s['training_labels']:.0f}", f"{s['training']:.0f}",
                      "+".join(report.label_scores), f"{tau[0]:.3f}", f"{tau[3]:.3f}", str(report.default_rerank))
        results[label] = {"wall_s": wall, **report.to_json()}
    console.print(table)
    (args.out.parent / "ranker_training.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
