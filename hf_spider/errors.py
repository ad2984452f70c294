"""Exceptions raised by hf_spider.

One class per failure a user may want to handle, in a small hierarchy rooted at
:class:`HfSpiderError` (catch that to catch everything hf_spider raises on purpose).
Input errors also derive from :class:`ValueError` so generic code keeps working.
"""

from __future__ import annotations

__all__ = [
    "DatasetError",
    "HfSpiderError",
    "HubUnavailableError",
    "InvalidArtifactError",
    "InvalidInputError",
    "ModelLoadError",
    "UnsafeArtifactError",
]


class HfSpiderError(Exception):
    """Base class of every error hf_spider raises deliberately."""


class InvalidInputError(HfSpiderError, ValueError):
    """Arguments, features, labels or targets that cannot be used (wrong shape, NaN, one class...)."""


class DatasetError(InvalidInputError):
    """A labelled task cannot be loaded: missing split or column, unreadable image, too few classes."""


class ModelLoadError(HfSpiderError):
    """A model cannot be loaded as a feature extractor (unknown architecture, missing weights...)."""


class UnsafeArtifactError(HfSpiderError):
    """Loading would run untrusted code (pickle weights, ``trust_remote_code``) without the user's consent."""


class InvalidArtifactError(HfSpiderError):
    """A file downloaded from the Hub (embedding, ranker, cache) fails validation."""


class HubUnavailableError(HfSpiderError):
    """The Hub kept failing (timeouts, dropped connections, 429/5xx answers) through hf_spider's bounded retries."""
