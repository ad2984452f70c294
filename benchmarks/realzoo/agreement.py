"""How much of a zero-forward method's ranking is the zoo-wide prior? Kendall τ between methods, per target.

    uv run python benchmarks/realzoo/agreement.py [--report ~/.cache/hf_spider_realzoo/bench/all/bench.json]
                                                  [--against prior:mean-rank] [--methods spider embedder]

Reads the predictions ``bench.py`` saved (each method's score of each network on each target) and prints, per
target, Kendall's τ between each of ``--methods`` and ``--against`` over the networks both ranked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench import DEFAULT_CACHE
from rich.console import Console
from rich.table import Table
from scipy.stats import kendalltau


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=DEFAULT_CACHE / "bench" / "all" / "bench.json")
    parser.add_argument("--against", default="prior:mean-rank")
    parser.add_argument("--methods", nargs="+", default=["spider", "embedder", "logme", "prior:params"])
    args = parser.parse_args()
    predictions = json.loads(args.report.read_text())["predictions"]
    table = Table(title=f"Kendall τ with {args.against}, per target ({args.report})")
    table.add_column("target")
    for method in args.methods:
        table.add_column(method, justify="right")
    columns: dict[str, list[float]] = {m: [] for m in args.methods}
    for target, by_method in sorted(predictions.items()):
        cells = []
        for method in args.methods:
            a, b = by_method.get(method), by_method.get(args.against)
            if not a or not b:
                cells.append("–")
                continue
            models = sorted(set(a) & set(b))
            tau = kendalltau([a[m] for m in models], [b[m] for m in models])[0]
            columns[method].append(tau)
            cells.append(f"{tau:.2f}")
        table.add_row(target, *cells)
    table.add_row("mean", *(f"{np.mean(v):.2f}" if v else "–" for v in columns.values()))
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
