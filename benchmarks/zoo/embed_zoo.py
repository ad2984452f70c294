"""Precompute every zoo model's Standardized Embedder vector, as its owner would publish it.

    uv run python benchmarks/zoo/embed_zoo.py --offline-data ../shared/offline_data

Baseline ``resnet18-all-mix``, reference set ``reference-mix`` (train split, at most 200 images per
class, seed 0), 1,000 optimisation steps: the same setup as ``hf_spider bench``'s embedder row.
Writes ``embeddings/<model>.safetensors`` (one [512] vector each, in the published file format)
for ``hf_spider demo``, which uploads the zoo to a local Hub and publishes these files instead of
spending minutes recomputing them. They identify what they were computed from by content, since
the zoo has no Hub commits yet: ``baseline_weights`` / ``baseline_revision`` hash the baseline's
parameters, ``model_weights`` is the digest the Hub will report for the uploaded model folder
(git blob ids of its weight and config files), which the demo checks before publishing.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from types import SimpleNamespace

from hf_spider import __version__
from hf_spider.backbones import load_backbone
from hf_spider.constants import MICRO_ZOO
from hf_spider.embedder import embed_model
from hf_spider.embedder.pipeline import weights_digest
from hf_spider.features import extract_features
from hf_spider.formats.embedding import FORMAT_VERSION, serialize_embedding
from hf_spider.localhub.storage import git_blob_oid
from hf_spider.tasks import load_task

ZOO = MICRO_ZOO / "models"
OUT = MICRO_ZOO / "embeddings"
BASELINE = "resnet18-all-mix"
REFERENCE, SPLIT, MAX_PER_CLASS, STEPS, SEED = "reference-mix", "train", 200, 1000, 0


def folder_digest(folder: Path) -> str:
    """:func:`weights_digest` of a model folder as a Hub will report it once the folder is uploaded."""
    files = [SimpleNamespace(rfilename=str(p.relative_to(folder)), blob_id=git_blob_oid(p.read_bytes()))
             for p in sorted(folder.rglob("*")) if p.is_file()]
    return weights_digest(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline-data", type=Path, default=Path(__file__).parents[3] / "shared" / "offline_data")
    args = parser.parse_args()
    reference = load_task(args.offline_data / REFERENCE, split=SPLIT, max_per_class=MAX_PER_CLASS, seed=SEED)
    base = load_backbone(str(ZOO / BASELINE))
    baseline_features = extract_features(base, reference).features
    OUT.mkdir(exist_ok=True)
    for folder in sorted(p.parent for p in ZOO.glob("*/config.json")):
        features = extract_features(load_backbone(str(folder)), reference, progress=False).features
        embedding = embed_model(features, baseline_features, steps=STEPS, seed=SEED, progress=False)
        metadata = {
            "format_version": FORMAT_VERSION, "baseline": BASELINE,
            "baseline_revision": f"sha256:{base.weights_hash()}", "baseline_weights": f"sha256:{base.weights_hash()}",
            "reference": REFERENCE, "reference_split": SPLIT, "reference_fingerprint": reference.fingerprint,
            "model": folder.name, "model_revision": "", "model_weights": folder_digest(folder),
            "steps": str(STEPS), "seed": str(SEED),
            "fidelity_to": f"{embedding.fidelity_to:.6f}", "fidelity_from": f"{embedding.fidelity_from:.6f}",
            "tau": str(embedding.tau), "tool_version": __version__,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (OUT / f"{folder.name}.safetensors").write_bytes(serialize_embedding(embedding.vector, metadata))
        print(f"{folder.name}: fidelity {embedding.fidelity_to:.3f} / {embedding.fidelity_from:.3f}")


if __name__ == "__main__":
    main()
