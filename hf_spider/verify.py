"""Verify a published embedding by recomputing it: ``hf_spider verify REPO`` (issue 9).

:func:`verify_repo` reads the embedding a repo publishes, recomputes it exactly as its owner's
``hf_spider embed`` did (:func:`~hf_spider.embedder.pipeline.embed_repo` on the repo's current weights,
with the recorded reference set, split, per-class cap, steps and seed; nothing is published) and
compares the two vectors: the mass excess, mean(published) - mean(recomputed), i.e. how much more
of the baseline the published vector claims, and the mean and largest |difference| per value.

A CPU replay with the recorded seed is bit-identical (``max_abs`` 0). Elsewhere the optimisation amplifies
the tiny feature differences another device makes, so a replay is judged against the noise of honest runs: it
passes when the mass excess is at most :data:`MAX_MASS_EXCESS` and the mean difference at most
:data:`MAX_MEAN_DIFF` (how they were chosen: ``docs/embedder.md``, "Verification thresholds").

**What "verified" means** for ``select --verified-only``: this machine ran :func:`verify_repo` on
the repo's current commit and it passed. Each run is recorded next to the scan index
(``<index>/verified/<org>--<name>.json``: repo sha, result, differences, time); any new commit to the
repo (new weights, a new embedding, even a card edit) makes the record stale until verified again.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._files import write_atomic
from .constants import DEFAULT_BASELINE
from .embedder.plausibility import plausibility_flags
from .formats.embedding import PublishedEmbedding
from .hub.client import hub_api
from .hub.embeddings import fetch_embedding
from .hub.retry import with_retries
from .hub.scan import default_index_dir

__all__ = [
    "MAX_MASS_EXCESS",
    "MAX_MEAN_DIFF",
    "VerifyReport",
    "embedding_flags",
    "verification_records",
    "verification_status",
    "verify_repo",
]

MAX_MASS_EXCESS = 0.05  # above the mass difference of any two honest runs of the zoo (docs/embedder.md)
MAX_MEAN_DIFF = 0.15  # above the mean |difference| of any two honest runs of the zoo (docs/embedder.md)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_repo`.

    Attributes:
        passed: the embedding was replayed on the recorded inputs and matches within the thresholds.
        reasons: why it did not pass (empty when it passed).
        mean_abs, max_abs, l1: mean, largest and summed |published - recomputed| (None if not compared);
            ``max_abs == 0`` is an exact replay.
        mass_excess: mean(published) - mean(recomputed); positive when the published vector is inflated.
        flags: the published vector's plausibility flags (:func:`plausibility_flags`), for information.
    """

    repo_id: str
    repo_sha: str
    baseline: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    mean_abs: float | None = None
    max_abs: float | None = None
    l1: float | None = None
    mass_excess: float | None = None
    flags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verify_repo(
    repo_id: str,
    *,
    baseline: str = DEFAULT_BASELINE,
    record: bool = True,
    progress: bool = True,
) -> VerifyReport:
    """Recompute the embedding ``repo_id`` publishes over ``baseline`` and compare it with the published one.

    Costs what the owner's ``embed`` cost: a forward pass of the model and of the baseline over the
    reference set (cached features are reused) and the optimisation.

    Args:
        repo_id: the model repo.
        baseline: the baseline the embedding is over.
        record: keep the outcome for ``select --verified-only`` (see the module docstring).

    Raises:
        InvalidArtifactError: the published file is malformed; huggingface_hub's errors when the
            repo or its embedding does not exist.
    """
    from .embedder.pipeline import embed_repo  # torch: the records and flags above need none

    sha = with_retries(lambda: hub_api().model_info(repo_id).sha, what=f"reading {repo_id}")
    published = with_retries(lambda: fetch_embedding(repo_id, baseline, revision=sha),
                             what=f"reading the published embedding of {repo_id}")
    meta = published.metadata
    replay = embed_repo(
        repo_id, baseline=baseline, reference=meta["reference"], reference_split=meta["reference_split"] or None,
        max_per_class=int(meta["max_per_class"]) if meta.get("max_per_class") else None,
        steps=int(meta["steps"]), seed=int(meta["seed"]), revision=sha, push=False, force=True, progress=progress)
    reasons = _replay_mismatches(meta, replay.metadata)
    report: dict[str, Any] = {}
    if published.vector.shape != replay.vector.shape:
        reasons.append(f"the published vector has {published.vector.size} values, the baseline gives "
                       f"{replay.vector.size}")
    else:
        diff = np.abs(published.vector.astype(np.float64) - replay.vector)
        report = {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()), "l1": float(diff.sum()),
                  "mass_excess": float(published.vector.mean() - replay.vector.mean())}
        if report["mass_excess"] > MAX_MASS_EXCESS:
            reasons.append(f"the published vector claims {report['mass_excess']:.4f} more mask per value than the "
                           f"recomputed one (honest replays: at most {MAX_MASS_EXCESS}): inflated")
        if report["mean_abs"] > MAX_MEAN_DIFF:
            reasons.append(f"the published vector differs from the recomputed one by {report['mean_abs']:.4f} per "
                           f"value (honest replays: at most {MAX_MEAN_DIFF}): it describes another model")
    result = VerifyReport(repo_id, sha, baseline.removeprefix("hf-hub:"), not reasons, reasons,
                          flags=plausibility_flags(published.vector, meta, repo_id), **report)
    if record:
        _record(result)
    return result


def _replay_mismatches(published: dict[str, str], replay: dict[str, str]) -> list[str]:
    """Why the replay's inputs are not the recorded ones (each one makes the comparison meaningless)."""
    baseline_key = "baseline_weights" if "baseline_weights" in published else "baseline_revision"
    checks = [(baseline_key, "the baseline's weights are not the ones recorded: cannot replay"),
              ("reference_fingerprint", "the reference set is not the one recorded (other data, split, cap or "
                                        "seed): cannot replay"),
              ("model_weights", "the model's weights changed since the embedding was computed: it describes "
                                "another model")]
    return [message for key, message in checks if published.get(key) != replay.get(key)]


def _records_dir(baseline: str) -> Path:
    return default_index_dir(baseline) / "verified"


def _record(report: VerifyReport) -> None:
    """Write the outcome atomically, one file per repo (concurrent verifications never clobber each other)."""
    payload = {**report.to_json(), "verified_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "tool_version": __version__}
    write_atomic(_records_dir(report.baseline) / f"{report.repo_id.replace('/', '--')}.json",
                 json.dumps(payload, indent=1))


def verification_records(baseline: str) -> dict[str, dict[str, Any]]:
    """The recorded outcomes of :func:`verify_repo` over ``baseline``: repo id -> record (unreadable ones ignored).

    A record counts for a repo only while its ``repo_sha`` is the repo's current commit.
    """
    records = {}
    for path in sorted(_records_dir(baseline).glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            records[entry["repo_id"]] = entry
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records


def verification_status(entry: PublishedEmbedding, records: dict[str, dict[str, Any]]) -> bool | None:
    """Whether ``entry``'s current commit passed (True) or failed (False) verification; None if not verified."""
    record = records.get(entry.repo_id)
    if record is None or record.get("repo_sha") != entry.repo_sha:
        return None
    return record.get("passed") is True


def embedding_flags(entry: PublishedEmbedding, records: dict[str, dict[str, Any]]) -> list[str]:
    """What ``select`` warns about an embedding: its plausibility flags and a failed verification."""
    flags = plausibility_flags(entry.vector, entry.metadata, entry.repo_id)
    if verification_status(entry, records) is False:
        flags.append(f"verify-failed: {'; '.join(records[entry.repo_id].get('reasons') or ['see hf_spider verify'])}")
    return flags
