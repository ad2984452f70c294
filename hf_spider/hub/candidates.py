"""The candidates of a forward-based selection, described by the Hub alone (nothing downloaded).

A candidate is any model repo, named by the user (``--models``) or listed by ``list_models`` (``--filter``,
``--author``, ``--search``, ``--limit``), whether or not it published an embedding. What the Hub says about
it feeds the task-agnostic prior: its parameter count (the Hub's ``safetensors`` summary, read from the
files' headers; for an ONNX repo the size of ``model.onnx`` over 4 bytes, an estimate) and its download count.
A repo the Hub cannot describe (missing, gated without access) is returned with its reason, never raised: one
bad candidate must not stop the others. A Hub that stops answering is raised (``HubUnavailableError``): that is
no candidate's fault. Local folders are the ranking layer's business.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import HfSpiderError, HubUnavailableError
from .client import hub_api
from .retry import with_retries

__all__ = ["HubModel", "describe_models", "failure_reason", "list_candidates", "skipped_on_failure"]


@dataclass
class HubModel:
    """A candidate as the Hub describes it: the commit it resolves to and the prior's two signals."""

    repo_id: str
    sha: str | None = None
    parameters: int | None = None  # safetensors headers; ONNX: the file size / 4, an estimate
    downloads: int = 0
    files: frozenset[str] = frozenset()  # the repo's file paths at ``sha``


def list_candidates(*, filter: str | None = None, author: str | None = None, search: str | None = None,
                    limit: int | None = None, token: str | None = None) -> list[str]:
    """Repo ids of the Hub models matching a ``list_models`` query, most downloaded first."""
    return with_retries(lambda: [m.id for m in hub_api(token=token).list_models(
        filter=filter, author=author, search=search, limit=limit, sort="downloads")], what="listing the models")


def describe_models(repo_ids: Sequence[str], *, token: str | None = None, timeout: float | None = None,
                    max_workers: int = 8) -> tuple[list[HubModel], dict[str, str]]:
    """Each Hub repo's commit, parameter count and downloads, concurrently: ``(described, skipped)``, with
    the reason each skipped repo could not be described. Ids may carry a revision (``org/name@rev``)."""
    described: list[HubModel] = []
    skipped: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = {r: pool.submit(_describe, r, token=token, timeout=timeout) for r in dict.fromkeys(repo_ids)}
    for repo_id, future in futures.items():
        with skipped_on_failure(skipped, repo_id):
            described.append(future.result())
    return described, skipped


@contextmanager
def skipped_on_failure(skipped: dict[str, str], repo_id: str) -> Iterator[None]:
    """Record in ``skipped`` why the block failed for ``repo_id`` instead of raising: one missing, gated, unsafe
    or unloadable candidate must not stop the others. A Hub that stops answering is raised: no candidate's fault."""
    from huggingface_hub.errors import HfHubHTTPError  # here: the local Hub server imports this module

    try:
        yield
    except HubUnavailableError:
        raise
    except (HfSpiderError, HfHubHTTPError, OSError) as exc:  # missing, gated, unsafe, unloadable...
        skipped[repo_id] = failure_reason(exc)


def _describe(repo_id: str, *, token: str | None, timeout: float | None) -> HubModel:
    name, _, revision = repo_id.partition("@")
    info = with_retries(lambda: hub_api(token=token).model_info(name, revision=revision or None, files_metadata=True,
                                                              timeout=timeout), what=f"describing {name}")
    model = HubModel(repo_id, info.sha, downloads=info.downloads or 0,
                     files=frozenset(s.rfilename for s in info.siblings or []))
    if info.safetensors is not None:
        model.parameters = info.safetensors.total
    else:
        onnx = sum(s.size or 0 for s in info.siblings or [] if s.rfilename.endswith(".onnx"))
        model.parameters = onnx // 4 or None
    return model


def failure_reason(error: Exception) -> str:
    """One line saying why a repo could not be described or loaded, and what to do."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(error, GatedRepoError):
        return "gated: request access on its Hub page, then `hf auth login`"
    if isinstance(error, RevisionNotFoundError):
        return "revision not found"
    if isinstance(error, RepositoryNotFoundError):
        return "not found on the Hub (or private: `hf auth login`)"
    return str(error).splitlines()[0]
