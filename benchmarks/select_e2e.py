"""How long ``hf_spider select --method embedder`` takes end to end, cold and warm, phase by phase.

    uv run python benchmarks/select_e2e.py [--data-root ../shared/offline_data] [--images 1000] [--repeats 3]

A local Hub holds the micro zoo with its published embeddings (the demo's). The task is the first ``--images``
images of ``--dataset`` under ``--data-root``, written once as a parquet folder. Each run is a fresh process
(``python -m hf_spider.cli select ... --json``), timed from outside, so imports count:

- **cold**: empty Hub download cache and hf_spider cache (baseline, embeddings index, features, task
  embedding all fetched or computed);
- **warm**: the same command again on the caches the cold run left.

Phases come from the selection's own ``timings`` (task load, scan, baseline load, baseline forward, task
embedding, sweep); "start-up" is the rest of the wall time (interpreter, imports, printing). Median of
``--repeats`` runs of each; the CPU and thread count are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ORG = "hf-spider-demo"
PHASES = ("task load", "scan", "baseline load", "baseline forward", "task embedding", "sweep")


def write_task(data_root: Path, dataset: str, split: str, images: int, out: Path) -> Path:
    """The first ``images`` rows of a split, as a one-split parquet folder (reused when present)."""
    import pyarrow.parquet as pq

    folder = out / f"{dataset}-{images}"
    if not (folder / "data" / "test.parquet").is_file():
        table = pq.read_table(next((data_root / dataset).rglob(f"{split}*.parquet")))
        if len(table) < images:
            raise SystemExit(f"{dataset}:{split} has {len(table)} images, fewer than --images {images}")
        (folder / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(0, images), folder / "data" / "test.parquet")
    return folder


def run_select(task: Path, env: dict[str, str]) -> tuple[float, dict]:
    command = [sys.executable, "-m", "hf_spider.cli", "select", "--dataset", str(task), "--split", "test",
               "--baseline", f"{ORG}/resnet18-all-mix", "--author", ORG, "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr)
    return wall, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).parents[2] / "shared" / "offline_data")
    parser.add_argument("--dataset", default="src-glyphs-a")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from hf_spider.demo import local_hub, publish_zoo

    work = Path(tempfile.mkdtemp(prefix="hf_spider-select-e2e-"))
    task = write_task(args.data_root, args.dataset, args.split, args.images, work)
    runs: dict[str, list[tuple[float, dict]]] = {"cold": [], "warm": []}
    with local_hub(work / "hub-root"):
        publish_zoo()
        for i in range(args.repeats):
            caches = work / f"caches-{i}"
            env = {**os.environ, "HF_HOME": str(caches / "hf_home"), "HF_SPIDER_CACHE": str(caches / "hf_spider")}
            runs["cold"].append(run_select(task, env))
            runs["warm"].append(run_select(task, env))
            shutil.rmtree(caches)

    table = Table(title=f"select --method embedder, {args.images} images of {args.dataset} at 32 px, "
                        f"{len(runs['cold'][0][1]['ranking'])} published candidates; {os.cpu_count()} CPUs; "
                        f"median of {args.repeats} fresh processes")
    table.add_column("phase")
    for kind in runs:
        table.add_column(f"{kind} s", justify="right")
    rows = {p: {k: statistics.median(r[1]["timings"].get(p, 0.0) for r in v) for k, v in runs.items()}
            for p in PHASES}
    rows["start-up, imports, output"] = {k: statistics.median(w - sum(o["timings"].values()) for w, o in v)
                                         for k, v in runs.items()}
    rows["wall (from outside)"] = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    for phase, values in rows.items():
        table.add_row(phase, *(f"{values[k]:.2f}" for k in runs))
    Console(width=140).print(table)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
