"""Discover published embeddings on the Hub and keep a local index of them.

``scan`` lists the repos tagged ``hf-spider`` (``list_models``), downloads the embedding files over
one baseline concurrently, validates each (:func:`~hf_spider.hub.embeddings.parse_embedding`) and
keeps a local index keyed by repo sha, so a re-scan downloads only what changed. A repo whose file
is missing, malformed or fails to download is skipped with a reason; the scan itself never fails
because of one repo. The listing and each download are retried on network faults
(:func:`~hf_spider.hub.retry.with_retries`, on top of huggingface_hub's own retries and resumed downloads);
a download that still fails is skipped as "download failed after N attempts" and tried again on the next
scan, and a file that arrives incomplete never passes validation, so it is never indexed.

Index layout (``$HF_SPIDER_CACHE/index/<endpoint>/<baseline-slug>/``): ``index.json`` (per repo: sha,
status, reason or metadata and row) and ``embeddings.safetensors`` (one float32 matrix ``dim<N>`` [R, N]
per embedding size N, so one repo publishing a vector of another size cannot break the others).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_path, write_atomic
from ..constants import cache_root
from ..errors import HubUnavailableError, InvalidArtifactError
from ..formats.embedding import (
    EMBEDDING_DIR,
    HF_SPIDER_TAG,
    PublishedEmbedding,
    baseline_slug,
    embedding_path,
    parse_embedding,
)
from .client import endpoint, hub_api
from .embeddings import download_embedding
from .retry import with_retries

__all__ = ["ScanResult", "default_index_dir", "load_local_index", "save_local_index", "scan"]

INDEX_VERSION = 3


@dataclass
class ScanResult:
    """Valid embeddings found, repos skipped (repo -> reason), how many files were downloaded, and what the
    listing says of each repo's size: ``(parameters or None, downloads)``, the task-agnostic prior's signals."""

    entries: list[PublishedEmbedding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    downloaded: int = 0
    sizes: dict[str, tuple[int | None, int]] = field(default_factory=dict)
    baselines: dict[str, int] = field(default_factory=dict)  # every baseline with published files: repo count

    def baselines_line(self) -> str:
        """``"org/a (12), org/b (3)"``: the baselines the listed repos published embeddings over, most first."""
        return ", ".join(f"{b} ({n})" for b, n in self.baselines.items()) or "none"

    @property
    def vectors(self) -> dict[str, np.ndarray]:
        return {e.repo_id: e.vector for e in self.entries}


def default_index_dir(baseline: str) -> Path:
    """Index folder for ``baseline`` on the current endpoint (indexes of different Hubs never mix)."""
    return cache_root() / "index" / hashlib.sha256(endpoint().encode()).hexdigest()[:12] / baseline_slug(baseline)


def load_local_index(folder: Path) -> dict[str, dict[str, Any]]:
    """Previous entries, with their vectors; an unreadable index is dropped (it is only a cache)."""
    try:
        index = json.loads((folder / "index.json").read_text())
        if index.get("version") != INDEX_VERSION:
            return {}
        repos = index["repos"]
        matrices = _read_matrices(folder / "embeddings.safetensors") if any("row" in r for r in repos.values()) else {}
        for entry in repos.values():
            if "row" in entry:
                dim, row = entry.pop("row")
                entry["vector"] = matrices[f"dim{dim}"][row]
        return repos
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return {}


def _read_matrices(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(path)


def save_local_index(folder: Path, repos: dict[str, dict[str, Any]]) -> None:
    """Write the matrix, then the JSON naming its rows, each by an atomic replace."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    by_dim: dict[int, list[str]] = {}
    for repo in sorted(r for r, e in repos.items() if "vector" in e):
        by_dim.setdefault(repos[repo]["vector"].size, []).append(repo)
    matrices = {f"dim{dim}": np.stack([repos[r]["vector"] for r in rows]) for dim, rows in by_dim.items()}
    rows = {repo: [dim, i] for dim, names in by_dim.items() for i, repo in enumerate(names)}
    serialisable = {}
    for repo, entry in repos.items():
        serialisable[repo] = {k: v for k, v in entry.items() if k != "vector"}
        if repo in rows:
            serialisable[repo]["row"] = rows[repo]
    with atomic_path(folder / "embeddings.safetensors") as tmp:
        save_file(matrices, tmp)
    write_atomic(folder / "index.json", json.dumps({"version": INDEX_VERSION, "repos": serialisable}, indent=1))


def _published_baselines(listed: Iterable[Any]) -> dict[str, int]:
    """Repos per baseline, from the listing's file names (``hf_spider/<org>--<name>.safetensors``), most first."""
    counts: Counter[str] = Counter()
    for info in listed:
        for sibling in info.siblings or []:
            folder, _, name = sibling.rfilename.partition("/")
            if folder == EMBEDDING_DIR and name.endswith(".safetensors") and "/" not in name:
                counts[name.removesuffix(".safetensors").replace("--", "/", 1)] += 1
    return dict(counts.most_common())


def _fetch(repo_id: str, sha: str, filename: str, expected: dict[str, str] | None) -> dict[str, Any]:
    """Download and validate one file; a failure becomes an entry with a reason, never an exception."""
    try:
        data = with_retries(lambda: download_embedding(repo_id, filename, sha), what="download")
        vector, metadata = parse_embedding(data, expected=expected)
        return {"sha": sha, "status": "ok", "metadata": metadata, "vector": vector,
                "file_sha256": hashlib.sha256(data).hexdigest()}
    except InvalidArtifactError as e:
        return {"sha": sha, "status": "invalid", "reason": f"invalid embedding file: {e}"}
    except HubUnavailableError as e:  # "download failed after N attempts: ...": skipped now, retried next scan
        return {"sha": sha, "status": "error", "reason": str(e)}
    except Exception as e:  # other Hub errors: skipped now, retried on the next scan
        return {"sha": sha, "status": "error", "reason": f"download failed: {type(e).__name__}: {e}"}


def list_tagged(*, filter: str | Iterable[str] = HF_SPIDER_TAG, author: str | None = None, search: str | None = None,
                newer_than: str | None = None, token: str | bool | None = None) -> list[Any]:
    """The Hub's listing of the tagged repos, with what a scan reads of each (``ModelInfo``); ``newer_than`` (an ISO
    date): only the repos modified after it, read newest first until the listing reaches it."""
    api = hub_api(token=token)
    expand = ["sha", "lastModified", "siblings", "safetensors", "downloads"]

    def listing() -> list[Any]:
        if newer_than is None:
            return list(api.list_models(filter=filter, author=author, search=search, expand=expand))
        since = _dt.datetime.fromisoformat(newer_than)
        return list(itertools.takewhile(lambda info: info.last_modified > since, api.list_models(
            filter=filter, author=author, search=search, expand=expand, sort="lastModified")))

    return with_retries(listing, what="listing the models")


def refresh(listed: Iterable[Any], previous: dict[str, dict[str, Any]], baseline: str, expected: dict[str, str], *,
            max_workers: int = 8, progress: bool = True) -> tuple[dict[str, dict[str, Any]], int]:
    """The entry of each listed repo: kept from ``previous`` when the repo's commit is the same, else downloaded and
    validated (``max_workers`` at once). Returns the entries and how many files were downloaded."""
    from tqdm.auto import tqdm

    filename = embedding_path(baseline)
    current: dict[str, dict[str, Any]] = {}
    to_fetch: list[tuple[str, str]] = []
    for info in listed:
        old = previous.get(info.id)
        if filename not in {s.rfilename for s in info.siblings or []}:
            current[info.id] = {"sha": info.sha, "status": "missing", "reason": f"no {filename} in the repo"}
        elif old is not None and old["sha"] == info.sha and old["status"] in ("ok", "invalid") and (
                old["status"] == "invalid" or all(old["metadata"].get(k) == v for k, v in expected.items())):
            current[info.id] = old  # unchanged since the last scan: nothing to download
        else:
            to_fetch.append((info.id, info.sha))
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {repo: pool.submit(_fetch, repo, sha, filename, expected) for repo, sha in to_fetch}
        for repo, future in tqdm(futures.items(), desc="fetching embeddings", disable=not progress or not futures):
            current[repo] = future.result()
    for info in listed:
        current[info.id].update(last_modified=info.last_modified.isoformat() if info.last_modified else "",
                                parameters=info.safetensors.total if info.safetensors else None,
                                downloads=info.downloads or 0)
    return current, len(to_fetch)


def expected_metadata(baseline: str, expected: dict[str, str] | None = None) -> dict[str, str]:
    """What every embedding over ``baseline`` must carry: its baseline, and ``expected``."""
    return {"baseline": baseline.removeprefix("hf-hub:"), **(expected or {})}


def scan_result(current: dict[str, dict[str, Any]], *, downloaded: int, baselines: dict[str, int]) -> ScanResult:
    """The valid embeddings (by repo id) and the skipped repos of a scan's entries."""
    result = ScanResult(downloaded=downloaded, baselines=baselines)
    for repo, entry in sorted(current.items()):
        result.sizes[repo] = (entry.get("parameters"), entry.get("downloads") or 0)
        if entry["status"] == "ok":
            result.entries.append(PublishedEmbedding(repo, entry["sha"], entry["vector"], entry["metadata"],
                                                     entry.get("file_sha256", "")))
        else:
            result.skipped[repo] = entry["reason"]
    return result


def scan(
    baseline: str,
    *,
    filter: str | Iterable[str] = HF_SPIDER_TAG,
    author: str | None = None,
    search: str | None = None,
    expected: dict[str, str] | None = None,
    index_dir: str | os.PathLike[str] | None = None,
    max_workers: int = 8,
    progress: bool = True,
) -> ScanResult:
    """Find every published embedding over ``baseline`` and return the valid ones.

    Args:
        baseline: baseline model id; only files ``hf_spider/<slug>.safetensors`` are read.
        filter, author, search: passed to ``HfApi.list_models``.
        expected: metadata values every embedding must carry (e.g. ``baseline_revision``).
        index_dir: local index folder (default :func:`default_index_dir`).
        max_workers: concurrent downloads.
    """
    folder = Path(index_dir) if index_dir is not None else default_index_dir(baseline)
    listed = list_tagged(filter=filter, author=author, search=search)
    current, downloaded = refresh(listed, load_local_index(folder), baseline, expected_metadata(baseline, expected),
                                  max_workers=max_workers, progress=progress)
    save_local_index(folder, current)
    return scan_result(current, downloaded=downloaded, baselines=_published_baselines(listed))
