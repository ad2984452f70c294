"""Every method on the real zoo: five development targets at 64 px, against a linear-probe ground truth.

    uv run python benchmarks/realzoo/bench.py [--zoo ~/.cache/hf_spider_realzoo/repos]
                                              [--data-root ../shared/offline_data_64] [--features-only]

The zoo is the folder of repos that ``build.py`` made (47 networks). The targets, the Model Spider pool and
the embedder's reference set are capped so that every feature the benchmark needs is extracted in at most
90 minutes on a 2-core CPU (about 5,000 images per network, each network at its own input size):

- targets: at most ``TARGET_TRAIN_CAP`` training and ``TARGET_TEST_CAP`` test images per class (the
  regression target: ``REGRESSION_TRAIN`` and ``REGRESSION_TEST`` random rows), written once as parquet
  datasets under ``<cache>/bench/data/`` so every tool reads the same rows;
- the ranker's pool: the default pool's splits, ``POOL_CAP`` images per class;
- the embedder's reference: reference-mix, ``REFERENCE_CAP`` images per class.

``--features-only`` fills the feature cache and stops: model by model, each network loaded once. A killed
run resumes (the cache holds every finished (network, dataset) pair, and checkpoints inside long ones).
Without it the script then runs ``hf_spider.bench.run_bench`` with the forward-based scores and the priors
(``<cache>/bench/forward/``), trains a Model Spider ranker for this zoo (its pool: the source datasets at 64 px),
and runs every method, the embedder and the spider at re-ranking budgets 1 to 5 included
(``<cache>/bench/all/``); each folder gets ``bench.json``, ``bench.png`` and ``results.md``, and the ground truth
goes to ``benchmarks/realzoo/ground_truth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from hf_spider.backbones import load_backbone, model_key
from hf_spider.bench import BenchReport, GroundTruthStore, plot, render_summary, render_table, run_bench
from hf_spider.constants import OFFLINE_POOL
from hf_spider.embedder.zoo import EmbedderSetup
from hf_spider.features import extract_features
from hf_spider.spider import RankerRecipe, train_ranker
from hf_spider.tasks import Task, load_task, parse_dataset_spec, sample_per_class

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path(os.environ.get("HF_SPIDER_REALZOO", Path.home() / ".cache" / "hf_spider_realzoo"))
TARGETS = ("reg-emoji-skintone", "tgt-clipart-objects", "tgt-digits", "tgt-emoji-twitter", "tgt-icons-heldout")
TARGET_TRAIN_CAP, TARGET_TEST_CAP = 30, 20  # images per class
REGRESSION_TRAIN, REGRESSION_TEST = 300, 200  # rows
POOL_CAP = 16  # images per class of each pool split: its validation 30% needs classes with 4+ images
REFERENCE, REFERENCE_CAP = "reference-mix", 100
BASELINE = "mobilenetv2-imagenet"  # ImageNet MobileNetV2, standing in for timm/resnet18.a1_in1k
RANKER_TRAIN_TASKS, RANKER_VALIDATION_TASKS = 100, 15  # a third of the micro zoo's: 47 models to label per task
EMBED_STEPS = 250  # a quarter of the default: 1,280 x 1,280 maps cost about a minute per 1,000 steps here


def write_targets(data_root: Path, out: Path) -> list[Path]:
    """The capped development targets as parquet datasets (written once; the same rows on every run)."""
    import datasets

    folders = []
    for name in TARGETS:
        folder = out / name
        folders.append(folder)
        if (folder / "data").is_dir():
            continue
        source = datasets.load_dataset(str(data_root / name))
        tmp = folder.with_name(f"{name}.tmp")
        (tmp / "data").mkdir(parents=True, exist_ok=True)
        for split, cap, rows in (("train", TARGET_TRAIN_CAP, REGRESSION_TRAIN), ("test", TARGET_TEST_CAP,
                                                                                   REGRESSION_TEST)):
            part = source[split]
            keep = (np.sort(np.random.default_rng(0).permutation(len(part))[:rows]) if "target" in part.features
                    else sample_per_class(np.asarray(part["label"]), max_per_class=cap, seed=0))
            part.select(keep).to_parquet(str(tmp / "data" / f"{split}-00000-of-00001.parquet"))
        os.replace(tmp, folder)
    return folders


def pool_tasks(data_root: Path) -> list[Task]:
    """The Model Spider pool: the default pool's splits at 64 px, capped per class."""
    return [load_task(str(data_root / name), split=split, max_per_class=POOL_CAP)
            for name, split in map(parse_dataset_spec, OFFLINE_POOL)]


def zoo_models(zoo: Path) -> list[str]:
    return sorted(str(p.parent) for p in zoo.glob("*/config.json"))


def warm_features(zoo: list[str], targets: list[Path], pool: list[Task], reference: Task, baseline: str) -> None:
    """Every feature array the benchmark reads, network by network (each loaded once); cached, resumable."""
    train = [load_task(str(t), split="train") for t in targets]
    test = [load_task(str(t), split="test") for t in targets]
    console = Console()
    for i, model in enumerate(sorted(zoo, key=lambda m: model_key(m) != model_key(baseline))):
        start = time.perf_counter()
        backbone = load_backbone(model)
        head = backbone.num_source_classes is not None
        jobs = [(task, head) for task in train + pool] + [(task, False) for task in [*test, reference]]
        if model_key(model) == model_key(baseline):  # the encoder's and the embedder's own passes
            jobs += [(task, False) for task in train + pool]
        for task, probs in jobs:
            extract_features(backbone, task, with_source_probs=probs, num_workers=0, progress=False)
        console.print(f"[{i + 1}/{len(zoo)}] {model_key(model)}: {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=DEFAULT_CACHE / "repos")
    parser.add_argument("--data-root", type=Path, default=HERE.parents[2] / "shared" / "offline_data_64")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "bench")
    parser.add_argument("--features-only", action="store_true")
    args = parser.parse_args()
    zoo = zoo_models(args.zoo)
    baseline = str(args.zoo / BASELINE)
    targets = write_targets(args.data_root, args.cache / "data")
    pool = pool_tasks(args.data_root)
    reference = load_task(str(args.data_root / REFERENCE), max_per_class=REFERENCE_CAP)
    start = time.perf_counter()
    warm_features(zoo, targets, pool, reference, baseline)
    Console().print(f"features of {len(zoo)} networks: {time.perf_counter() - start:.0f} s")
    if args.features_only:
        return
    targets = [str(t) for t in targets]
    ground_truth = GroundTruthStore(HERE / "ground_truth.json")
    # first the forward-based scores and the priors (minutes), then the zero-forward methods (model embeddings
    # and the ranker's training labels: the long part)
    if not (args.cache / "forward" / "bench.json").is_file():  # delete the folder to measure it again
        report(run_bench(zoo, targets, ground_truth=ground_truth), args.cache / "forward")
    embedder = EmbedderSetup(baseline, str(args.data_root / REFERENCE), max_per_class=REFERENCE_CAP,
                             steps=EMBED_STEPS)
    recipe = RankerRecipe(encoder=baseline, embedder=embedder, train_tasks=RANKER_TRAIN_TASKS,
                          validation_tasks=RANKER_VALIDATION_TASKS)
    ranker, training = train_ranker(zoo, pool, recipe)
    ranker.save_pretrained(args.cache / "ranker")
    (args.cache / "ranker_training.json").write_text(json.dumps(training.to_json(), indent=1))
    report(run_bench(zoo, targets, ground_truth=ground_truth, embedder=embedder, ranker=ranker, rerank=range(1, 6)),
           args.cache / "all")


def report(bench: BenchReport, out: Path) -> None:
    """``bench.json``, ``bench.png`` and ``results.md`` in ``out``; the tables on the console."""
    out.mkdir(parents=True, exist_ok=True)
    bench.save_json(out / "bench.json")
    plot(bench, out / "bench.png")
    (out / "results.md").write_text(results_markdown(bench))
    console = Console(width=200)
    console.print(render_table(bench))
    console.print(render_summary(bench))
    console.print(results_markdown(bench), markup=False)


def results_markdown(report: BenchReport) -> str:
    """The README table: per method, τw (SFDA) / top-3 regret per target, both means, seconds per selection."""
    targets = sorted(report.ground_truth)
    by_method: dict[str, dict[str, dict]] = {}
    for row in report.rows:
        by_method.setdefault(row["method"], {})[row["target"]] = row
    lines = ["| method | fwd passes | " + " | ".join(targets) + " | mean τw (sfda) | mean τw (spider) | "
             "mean regret@3 | s / selection |", "| --- | ---: |" + " ---: |" * (len(targets) + 4)]
    ordered = sorted(by_method.items(), key=lambda kv: -np.mean([r["tau_sfda"] for r in kv[1].values()]))
    for method, rows in ordered:
        cells = [f"{rows[t]['tau_sfda']:.2f} / {100 * rows[t]['regret_top3']:.1f}" if t in rows else "–"
                 for t in targets]
        passes = sorted({r["forward_passes"] for r in rows.values()})
        values = list(rows.values())
        lines.append(f"| {method} | {'–'.join(map(str, passes))} | " + " | ".join(cells)
                     + f" | {np.mean([r['tau_sfda'] for r in values]):.3f}"
                     + f" | {np.mean([r['tau_spider'] for r in values]):.3f}"
                     + f" | {100 * np.mean([r['regret_top3'] for r in values]):.1f}"
                     + f" | {np.mean([r['wall_s'] for r in values]):.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
