"""The one way hf_spider builds its Hub client: huggingface_hub's own, named as hf_spider's (``library_name``), at
the endpoint ``HF_ENDPOINT`` names when the call is made (huggingface_hub reads it once, at its import)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import __version__

if TYPE_CHECKING:
    from huggingface_hub import HfApi

__all__ = ["download", "endpoint", "hub_api"]

LIBRARY = {"library_name": "hf_spider", "library_version": __version__}


def endpoint() -> str:
    """``$HF_ENDPOINT`` now, else huggingface_hub's (``https://huggingface.co`` unless configured)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_api(*, token: str | bool | None = None) -> HfApi:
    """An ``HfApi`` for hf_spider's calls (``token=None``: huggingface_hub's own, from ``HF_TOKEN`` or the login)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token, **LIBRARY)


def download(repo_id: str, filename: str, *, revision: str | None, token: str | bool | None = None) -> str:
    """``hf_hub_download`` of one file of a model repo at ``revision``, into huggingface_hub's cache."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, revision=revision, token=token, endpoint=endpoint(), **LIBRARY)
