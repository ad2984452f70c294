"""An index of published embeddings on the Hub: build and push it, read it in one download, check it against the
model repos.

``build_index`` scans the Hub (:mod:`~hf_spider.hub.scan`) and pushes every valid embedding over one baseline into
a dataset repo, in one commit (the format is :mod:`hf_spider.formats.index`); a rebuild downloads only the files of
repos whose commit changed since the index it replaces. ``scan_index`` reads such an index instead of one file
per repo, re-validating every row, and ``check_against_source`` compares a row with the file in its model's own
repo: an index can save downloads but cannot vouch for a model.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InvalidArtifactError, InvalidInputError
from ..formats.embedding import HF_SPIDER_TAG, PublishedEmbedding, baseline_slug, validate_embedding
from ..formats.index import MAX_SHARD_BYTES, ROWS_PER_SHARD, IndexRow, read_index_shard, write_index_shards
from .cards import card_template
from .client import LIBRARY, endpoint, hub_api
from .embeddings import fetch_embedding
from .retry import with_retries
from .scan import (
    ScanResult,
    default_index_dir,
    expected_metadata,
    list_tagged,
    refresh,
    save_local_index,
    scan_result,
)

__all__ = ["HubIndex", "IndexBuild", "build_index", "check_against_source", "read_index", "scan_index"]

INDEX_TAG = "hf-spider-index"


@dataclass
class IndexBuild:
    """What ``build_index`` wrote: rows, repos listed and skipped (with reasons), files downloaded, the commit."""

    repo_id: str
    built_at: str
    rows: int
    listed: int
    fetched: int
    skipped: dict[str, str] = field(default_factory=dict)
    commit_url: str | None = None


@dataclass
class HubIndex:
    """An index read from the Hub: its entries (re-validated, in scan's entry form; a row that failed is an entry
    with its reason) and the build time its card states."""

    entries: dict[str, dict[str, Any]]
    built_at: str


def build_index(
    repo_id: str,
    baseline: str,
    *,
    filter: str | Iterable[str] = HF_SPIDER_TAG,
    author: str | None = None,
    search: str | None = None,
    expected: dict[str, str] | None = None,
    private: bool = False,
    rows_per_shard: int = ROWS_PER_SHARD,
    token: str | bool | None = None,
    max_workers: int = 8,
    progress: bool = True,
) -> IndexBuild:
    """Scan the Hub for embeddings over ``baseline`` and push the valid ones to the dataset repo ``repo_id``.

    The previous index in ``repo_id`` (if any, and over the same baseline) is read first: a repo whose commit is the
    one it names is not downloaded again. The shards and the card are pushed in one commit that replaces the old
    shards.
    """
    expected = expected_metadata(baseline, expected)
    previous = _previous_entries(repo_id, baseline, expected, token)
    built_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
    listed = list_tagged(filter=filter, author=author, search=search, token=token)
    current, fetched = refresh(listed, previous, baseline, expected, max_workers=max_workers, progress=progress)
    rows = [IndexRow(repo, e["sha"], e["last_modified"], e["file_sha256"], e["metadata"], e["vector"],
                     e["parameters"], e["downloads"]) for repo, e in current.items() if e["status"] == "ok"]
    build = IndexBuild(repo_id, built_at, len(rows), len(listed), fetched,
                       {repo: e["reason"] for repo, e in sorted(current.items()) if e["status"] != "ok"})
    api = hub_api(token=token)
    with tempfile.TemporaryDirectory(prefix="hf_spider-index-") as folder:
        write_index_shards(rows, folder, rows_per_shard=rows_per_shard)
        Path(folder, "README.md").write_text(_render_card(build, baseline))
        with_retries(lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True),
                     what=f"creating {repo_id}")
        info = with_retries(lambda: api.upload_folder(
            repo_id=repo_id, repo_type="dataset", folder_path=folder, delete_patterns=["data/*.parquet"],
            commit_message=f"hf_spider index over {baseline}: {len(rows)} embeddings"), what=f"pushing {repo_id}")
    build.commit_url = str(info)
    return build


def _render_card(build: IndexBuild, baseline: str) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(tags=[HF_SPIDER_TAG, INDEX_TAG], hf_spider_index={
        "baseline": baseline.removeprefix("hf-hub:"), "built_at": build.built_at, "rows": build.rows,
        "format_version": "1"})
    return str(DatasetCard.from_template(
        data, template_str=card_template("index_card.md"), repo_id=build.repo_id, baseline=baseline,
        baseline_slug=baseline_slug(baseline), built_at=build.built_at, tool_version=__version__,
        listed=build.listed, rows=build.rows, skipped=len(build.skipped), fetched=build.fetched))


def _previous_entries(repo_id: str, baseline: str, expected: dict[str, str],
                      token: str | bool | None) -> dict[str, dict[str, Any]]:
    """The entries of the index ``repo_id`` holds now; none when there is no index there yet."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return read_index(repo_id, baseline, expected=expected, token=token).entries
    except RepositoryNotFoundError:
        return {}


def read_index(repo_id: str, baseline: str, *, revision: str | None = None, expected: dict[str, str] | None = None,
               token: str | bool | None = None) -> HubIndex:
    """Download the index ``repo_id`` (one snapshot, each shard's size checked first) and re-validate every row as a
    downloaded embedding file is validated; an invalid row becomes an entry with its reason.

    Raises:
        InvalidInputError: the index is over another baseline;
        InvalidArtifactError: it is not an hf_spider index, or a shard is too large or unreadable;
        huggingface_hub's ``RepositoryNotFoundError``.
    """
    from huggingface_hub import DatasetCard, snapshot_download

    expected = expected_metadata(baseline, expected)
    api = hub_api(token=token)
    info = with_retries(lambda: api.dataset_info(repo_id, revision=revision, files_metadata=True),
                        what=f"reading {repo_id}")
    shards = sorted(s.rfilename for s in info.siblings or [] if s.rfilename.startswith("data/")
                    and s.rfilename.endswith(".parquet"))
    too_large = [s.rfilename for s in info.siblings or [] if s.rfilename in shards and (s.size or 0) > MAX_SHARD_BYTES]
    if too_large:
        raise InvalidArtifactError(f"index {repo_id}: {too_large[0]} is larger than {MAX_SHARD_BYTES} bytes; "
                                   "not downloaded")
    folder = Path(with_retries(lambda: snapshot_download(
        repo_id, repo_type="dataset", revision=info.sha, allow_patterns=["README.md", *shards], token=token,
        endpoint=endpoint(), **LIBRARY), what=f"downloading {repo_id}"))
    stated = _stated(folder / "README.md", repo_id, DatasetCard)
    if stated.get("baseline") != expected["baseline"]:
        raise InvalidInputError(f"the index {repo_id} holds embeddings over {stated.get('baseline')}, not "
                                f"{expected['baseline']}; pass --baseline {stated.get('baseline')}")
    entries: dict[str, dict[str, Any]] = {}
    for shard in shards:
        for row in read_index_shard(folder / shard):
            if isinstance(row, tuple) or row.repo_id in entries:
                repo, reason = row if isinstance(row, tuple) else (row.repo_id, "index row repeats the repo")
                entries[repo] = {"sha": "", "status": "invalid", "reason": reason}
                continue
            entries[row.repo_id] = _validated(row, expected)
    return HubIndex(entries, str(stated.get("built_at", "")))


def _stated(readme: Path, repo_id: str, card_class: Any) -> dict[str, Any]:
    """The ``hf_spider_index`` block of the index's card."""
    try:
        stated = card_class.load(readme, ignore_metadata_errors=True).data.to_dict().get("hf_spider_index")
    except (OSError, ValueError) as e:
        raise InvalidArtifactError(f"index {repo_id} has no readable card: {e}") from None
    if not isinstance(stated, dict):
        raise InvalidArtifactError(f"{repo_id} is not an hf_spider index (its card has no hf_spider_index block)")
    try:
        if _dt.datetime.fromisoformat(str(stated.get("built_at"))).tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        raise InvalidArtifactError(f"index {repo_id}: its card's built_at {str(stated.get('built_at'))[:40]!r} is "
                                   "not an ISO date with a time zone") from None
    return stated


def _validated(row: IndexRow, expected: dict[str, str]) -> dict[str, Any]:
    """The scan entry of an index row, validated as a downloaded file would be."""
    try:
        vector, metadata = validate_embedding(np.ascontiguousarray(row.vector), row.metadata, expected=expected)
    except InvalidArtifactError as e:
        return {"sha": row.commit, "status": "invalid", "reason": f"invalid index row: {e}"}
    return {"sha": row.commit, "status": "ok", "metadata": metadata, "vector": vector, "file_sha256": row.file_sha256,
            "last_modified": row.last_modified, "parameters": row.parameters, "downloads": row.downloads}


def scan_index(
    repo_id: str,
    baseline: str,
    *,
    since: bool = False,
    filter: str | Iterable[str] = HF_SPIDER_TAG,
    author: str | None = None,
    search: str | None = None,
    expected: dict[str, str] | None = None,
    index_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    max_workers: int = 8,
    progress: bool = True,
) -> ScanResult:
    """:func:`~hf_spider.hub.scan.scan` from the index ``repo_id``: one download instead of one per repo.

    ``since``: also list the repos modified after the index was built and scan them one by one, over the index's
    rows. ``author`` and ``search`` filter the rows as they filter a listing. The local index is updated.
    """
    expected = expected_metadata(baseline, expected)
    hub = read_index(repo_id, baseline, expected=expected, token=token)
    current = {repo: e for repo, e in hub.entries.items() if (author is None or repo.split("/", 1)[0] == author)
               and (search is None or search.lower() in repo.lower())}
    downloaded = 0
    if since:
        listed = list_tagged(filter=filter, author=author, search=search, newer_than=hub.built_at, token=token)
        newer, downloaded = refresh(listed, current, baseline, expected, max_workers=max_workers, progress=progress)
        current.update(newer)
    save_local_index(Path(index_dir) if index_dir is not None else default_index_dir(baseline), current)
    valid = sum(e["status"] == "ok" for e in current.values())
    return scan_result(current, downloaded=downloaded, baselines={expected["baseline"]: valid} if valid else {})


def check_against_source(entry: PublishedEmbedding, baseline: str, *, expected: dict[str, str] | None = None,
                         token: str | bool | None = None) -> tuple[PublishedEmbedding | None, str]:
    """Compare an index entry with the embedding file its model repo publishes now.

    Returns the embedding to rank the model by (``None``: drop it) and what was found: ``"verified"`` (the file's
    sha256 and content are the entry's), the source's newer file (``"refetched: ..."``), or a reason to drop it.
    """
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    expected = expected_metadata(baseline, expected)
    try:
        source = with_retries(lambda: fetch_embedding(entry.repo_id, baseline, expected=expected, token=token),
                              what=f"checking {entry.repo_id}")
    except InvalidArtifactError as e:
        return None, f"dropped: the file in its repo is invalid: {e}"
    except (EntryNotFoundError, RepositoryNotFoundError):
        return None, "dropped: its repo no longer publishes an embedding over the baseline"
    except Exception as e:  # a repo that cannot be checked is not ranked on the index's word alone
        return None, f"dropped: its repo could not be checked ({type(e).__name__}: {str(e)[:200]})"
    lie = "index row dropped: {} is not the file's at commit {}; ranked by the file in its repo"
    if source.file_sha256 != entry.file_sha256 and source.repo_sha != entry.repo_sha:
        return source, (f"refetched: its file changed since the index (commit {entry.repo_sha[:8]} -> "
                        f"{source.repo_sha[:8]})")
    if source.file_sha256 != entry.file_sha256:  # one commit, two files: the row is wrong
        return source, lie.format("its sha256", entry.repo_sha[:8])
    if not np.array_equal(source.vector, entry.vector) or source.metadata != entry.metadata:
        return source, lie.format("its vector or metadata", entry.repo_sha[:8])
    return source, "verified"
