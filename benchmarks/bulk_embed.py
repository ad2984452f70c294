"""Bulk embedding on Ray: the micro zoo embedded and published with 1 and 2 workers, and where one repo's time goes.

    uv run python benchmarks/bulk_embed.py [--models 12] [--workers 1 2] [--steps 1000] \\
        [--reference ../shared/offline_data/reference-mix] [--max-per-class 20]

Publishes the first ``--models`` networks of the micro zoo and its baseline (``resnet18-all-mix``) on a local Hub
running as its own process, then for each ``--workers`` count runs ``run_bulk("embed", ...)`` (what
``hf_spider embed --repos FILE --workers W`` does) on a local Ray cluster of W CPUs, each from an empty feature
cache and journal, and reports its wall time (Ray's start included) and throughput. One model embedded in this
process then splits a task's time into its parts: the Hub download and load, the model's forward pass over the
reference set, and the optimisation (the baseline's forward pass is paid once per node: its features are cached),
and times the whole task as ``embed_repo`` runs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from _hubproc import serve_local_hub
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
BASELINE_NAME = "resnet18-all-mix"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--reference", type=Path,
                        default=HERE.parents[1] / "shared" / "offline_data" / "reference-mix")
    parser.add_argument("--max-per-class", type=int, default=20)
    args = parser.parse_args()

    workdir, server = serve_local_hub("bulk")
    from huggingface_hub import HfApi

    from hf_spider.bulk import run_bulk
    from hf_spider.constants import MICRO_ZOO

    api = HfApi()
    names = sorted(p.name for p in (MICRO_ZOO / "models").iterdir() if p.name != BASELINE_NAME)[: args.models]
    for name in [BASELINE_NAME, *names]:
        api.create_repo(f"bench/{name}")
        api.upload_folder(folder_path=MICRO_ZOO / "models" / name, repo_id=f"bench/{name}")
    repos = [f"bench/{name}" for name in names]
    options = {"baseline": f"bench/{BASELINE_NAME}", "reference": str(args.reference), "reference_split": "train",
               "max_per_class": args.max_per_class, "steps": args.steps, "force": True}

    runs = []
    try:
        for workers in args.workers:
            os.environ["HF_SPIDER_CACHE"] = str(workdir / f"cache-{workers}")  # no features cached from a run before
            shutil.rmtree(workdir / "hf_home" / "hub", ignore_errors=True)  # nor downloads
            start = time.perf_counter()
            report = run_bulk("embed", repos, options, journal=workdir / f"journal-{workers}.jsonl",
                              workers=workers)
            runs.append((workers, time.perf_counter() - start, report))
        parts = one_task(repos[-1], options, workdir)
    finally:
        server.terminate()
        server.wait(timeout=30)

    table = Table(title=f"embed --repos on a local Ray cluster: {len(repos)} micro-zoo models, {args.steps} steps, "
                        f"reference {args.reference.name} at {args.max_per_class}/class, {os.cpu_count()} CPUs")
    for col in ("workers", "wall s", "published", "failed", "repos/min", "vs 1 worker"):
        table.add_column(col, justify="right")
    for workers, seconds, report in runs:
        table.add_row(str(workers), f"{seconds:.1f}", str(len(report.done)), str(len(report.failed)),
                      f"{60 * len(report.done) / seconds:.1f}", f"{runs[0][1] / seconds:.2f}x")
    Console(width=130).print(table)
    parts_table = Table(title=f"one task's parts ({repos[-1]}, in this process, baseline features cached)")
    for col in ("part", "seconds"):
        parts_table.add_column(col)
    for part, seconds in parts.items():
        parts_table.add_row(part, f"{seconds:.2f}")
    Console(width=130).print(parts_table)


def one_task(repo: str, options: dict, workdir: Path) -> dict[str, float]:
    """The parts of one embedding: download + load, the model's forward pass over the reference set, optimisation."""
    import torch

    from hf_spider.backbones import load_backbone
    from hf_spider.embedder import embed_model
    from hf_spider.embedder.pipeline import embed_repo
    from hf_spider.features import extract_features
    from hf_spider.tasks import load_task

    shutil.rmtree(workdir / "hf_home" / "hub", ignore_errors=True)
    os.environ["HF_SPIDER_CACHE"] = str(workdir / "cache-parts")
    task = load_task(options["reference"], split="train", max_per_class=options["max_per_class"])
    base = extract_features(load_backbone(options["baseline"]), task, progress=False).features
    parts = {}
    start = time.perf_counter()
    backbone = load_backbone(repo)
    parts["Hub download and load"] = time.perf_counter() - start
    start = time.perf_counter()
    features = extract_features(backbone, task, progress=False).features
    parts[f"model forward pass over {len(task)} reference images"] = time.perf_counter() - start
    start = time.perf_counter()
    embed_model(torch.as_tensor(features), torch.as_tensor(base), steps=options["steps"], progress=False)
    parts[f"optimisation, {options['steps']} steps"] = time.perf_counter() - start
    start = time.perf_counter()
    embed_repo(repo, progress=False, **options)
    parts["the whole task: embed_repo (reference set, both models, optimisation, one commit)"] = (
        time.perf_counter() - start)
    return parts


if __name__ == "__main__":
    main()
