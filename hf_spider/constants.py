"""Locations hf_spider reads from the environment (resolved at call time, so tests can set them)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$HF_SPIDER_CACHE`` if set, else ``~/.cache/hf_spider``: feature cache and embedding indexes."""
    return Path(os.environ.get("HF_SPIDER_CACHE") or Path.home() / ".cache" / "hf_spider").expanduser()
