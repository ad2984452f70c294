"""Model embeddings on the Hub: fetch a repo's embedding, publish one with its model-card section.

The file format is :mod:`hf_spider.formats.embedding`. Publishing adds the tag ``hf-spider`` to the model card
(discovery through ``list_models(filter="hf-spider")``) and a section rendered from the card template
``embedding_section.md``; the rest of the owner's card is kept as it was.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InvalidArtifactError
from ..formats.embedding import (
    HF_SPIDER_TAG,
    MAX_FILE_BYTES,
    PublishedEmbedding,
    embedding_path,
    parse_embedding,
    serialize_embedding,
)
from .cards import card_template
from .client import download, hub_api

__all__ = ["download_embedding", "fetch_embedding", "publish_embedding", "render_card_section", "update_card"]

_SECTION_START, _SECTION_END = "<!-- hf_spider:embedding:start -->", "<!-- hf_spider:embedding:end -->"


def fetch_embedding(
    repo_id: str, baseline: str, *, revision: str | None = None, expected: dict[str, str] | None = None,
    token: str | bool | None = None,
) -> PublishedEmbedding:
    """Download and validate the embedding over ``baseline`` published in ``repo_id``.

    Raises:
        huggingface_hub's ``EntryNotFoundError`` (no embedding) / ``RepositoryNotFoundError``;
        InvalidArtifactError: the file fails :func:`parse_embedding`.
    """
    api = hub_api(token=token)
    sha = revision if revision and re.fullmatch(r"[0-9a-f]{40}", revision) else api.model_info(
        repo_id, revision=revision).sha
    data = download_embedding(repo_id, embedding_path(baseline), sha, token=token)
    vector, metadata = parse_embedding(data, expected=expected)
    return PublishedEmbedding(repo_id, sha, vector, metadata, hashlib.sha256(data).hexdigest())


def download_embedding(repo_id: str, filename: str, sha: str, *, token: str | bool | None = None) -> bytes:
    """The bytes of an embedding file, refusing one larger than any valid embedding BEFORE downloading it.

    The size announced by the Hub (a HEAD request) is checked first, so a hostile multi-gigabyte file
    costs nothing; the bytes read from disk are bounded again in case the announced size was wrong.

    Raises:
        InvalidArtifactError: the file is larger than :data:`MAX_FILE_BYTES`;
        huggingface_hub's errors for a missing file or repo.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    announced = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=sha), token=token,
                                     retry_on_errors=True).size  # huggingface_hub's backoff on 429/5xx/network
    if announced is not None and announced > MAX_FILE_BYTES:
        raise InvalidArtifactError(f"file of {announced} bytes is larger than any valid embedding "
                                   f"({MAX_FILE_BYTES}); not downloaded")
    with open(download(repo_id, filename, revision=sha, token=token), "rb") as f:
        return f.read(MAX_FILE_BYTES + 1)  # parse_embedding rejects a longer read


def render_card_section(metadata: dict[str, str]) -> str:
    """The model-card section describing an embedding, from the card template ``embedding_section.md``."""
    values = {
        **metadata,
        "filename": embedding_path(metadata["baseline"]),
        "dim": metadata.get("dim", "?"),
        "baseline_url": f"https://huggingface.co/{metadata['baseline'].removeprefix('hf-hub:')}",
        "reference": f"{metadata['reference']} ({metadata['reference_split']})",
        "fidelity_to": f"{float(metadata['fidelity_to']):.4f}",
        "fidelity_from": f"{float(metadata['fidelity_from']):.4f}",
    }
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values.get(m.group(1), m.group(0))),
                  card_template("embedding_section.md"))
    return f"{_SECTION_START}\n{text.strip()}\n{_SECTION_END}"


def update_card(readme: str | None, section: str) -> str:
    """The README with the ``hf-spider`` tag in its YAML and ``section`` in place of any previous one.

    Everything else the owner wrote (metadata and text) is kept.
    """
    from huggingface_hub import ModelCard

    card = ModelCard(readme or f"---\ntags:\n- {HF_SPIDER_TAG}\n---\n", ignore_metadata_errors=True)
    tags = list(card.data.tags or [])
    if HF_SPIDER_TAG not in tags:
        card.data.tags = [*tags, HF_SPIDER_TAG]
    text = card.text
    pattern = re.compile(re.escape(_SECTION_START) + r".*?" + re.escape(_SECTION_END), re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}\n"
    card.text = text.lstrip("\n")
    return str(card)


def publish_embedding(
    repo_id: str,
    vector: np.ndarray,
    metadata: dict[str, Any],
    *,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | bool | None = None,
):
    """Publish an embedding and its card section in ONE commit on top of the revision it read.

    The commit is made with ``parent_commit`` set to the sha whose README was read, so a concurrent
    push makes it fail rather than overwrite the owner's card. Every call is retried on network faults
    (:func:`~hf_spider.hub.retry.with_retries`); before a commit is sent again, the Hub is searched for the
    one whose answer was lost, so the embedding lands once and whole (file, tag and card section) or not at
    all. Returns the ``CommitInfo``.

    Raises:
        HubUnavailableError: the Hub kept failing and nothing was published ("checking whether publishing ...
            went through failed": the Hub failed even the search for a lost commit, so the outcome is unknown).
    """
    from huggingface_hub import CommitInfo, CommitOperationAdd

    from .retry import with_retries

    api = hub_api(token=token)
    info = with_retries(lambda: api.model_info(repo_id, revision=revision, token=token), what=f"reading {repo_id}")
    meta = {k: str(v) for k, v in metadata.items()}
    payload = serialize_embedding(vector, meta)
    readme = with_retries(lambda: _read_file(repo_id, "README.md", info.sha, token),
                          what=f"downloading the card of {repo_id}")
    card = update_card(None if readme is None else readme.decode(),
                       render_card_section({**meta, "dim": str(len(vector))}))
    files = {embedding_path(meta["baseline"]): payload, "README.md": card.encode()}
    message = f"Add hf_spider embedding over {meta['baseline']}"
    description = (f"fidelity L_to={float(meta['fidelity_to']):.4f}, L_from={float(meta['fidelity_from']):.4f}; "
                   f"hf_spider {__version__}")
    prs_before = with_retries(lambda: _pull_requests(api, repo_id, token),
                              what=f"listing the pull requests of {repo_id}") if create_pr else {}

    def commit():
        return api.create_commit(
            repo_id, operations=[CommitOperationAdd(path, data) for path, data in files.items()], revision=revision,
            commit_message=message, commit_description=description, create_pr=create_pr,
            parent_commit=None if create_pr else info.sha, token=token,
        )

    def landed():
        """The commit of an attempt whose answer was lost: a new head (or pull request) holding exactly ``files``."""
        if create_pr:
            prs = _pull_requests(api, repo_id, token)
            candidates = [(ref, sha) for ref, sha in prs.items() if ref not in prs_before]
        else:
            head = api.model_info(repo_id, revision=revision, token=token).sha
            candidates = [] if head == info.sha else [(None, head)]
        for ref, sha in candidates:
            if all(_read_file(repo_id, path, sha, token) == data for path, data in files.items()):
                pr_url = f"{api.endpoint}/{repo_id}/discussions/{ref.rsplit('/', 1)[-1]}" if ref else None
                return CommitInfo(commit_url=f"{api.endpoint}/{repo_id}/commit/{sha}", commit_message=message,
                                  commit_description=description, oid=sha, pr_url=pr_url)
        return None

    return with_retries(commit, what=f"publishing to {repo_id}", landed=landed)


def _read_file(repo_id: str, filename: str, sha: str, token: str | bool | None) -> bytes | None:
    """A (small) file of a model repo at ``sha``, or ``None`` if the repo has no such file."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        return Path(download(repo_id, filename, revision=sha, token=token)).read_bytes()
    except RemoteEntryNotFoundError:  # not LocalEntryNotFoundError: a network failure is not an absent file
        return None


def _pull_requests(api: Any, repo_id: str, token: str | bool | None) -> dict[str, str]:
    """``refs/pr/N`` -> head sha of every pull request of a model repo."""
    return {r.ref: r.target_commit for r in api.list_repo_refs(repo_id, include_pull_requests=True,
                                                                 token=token).pull_requests or []}
