"""Locations hf_spider reads from the environment (resolved at call time, so tests can set them)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidInputError

#: The micro zoo shipped inside the package: 27 small CNNs trained on 32-px icons (``models/``), their
#: embeddings over ``resnet18-all-mix`` (``embeddings/``) and a Model Spider ranker trained on them
#: (``ranker/``). The demo, ``bench`` and ``train-ranker`` default to it; it is rebuilt by ``benchmarks/zoo/``.
MICRO_ZOO = Path(__file__).parent / "micro_zoo"
#: The micro zoo's baseline and general encoder: the model its embeddings are over and its ranker reads tasks with.
MICRO_ZOO_BASELINE = MICRO_ZOO / "models" / "resnet18-all-mix"
#: The Standardized Embedder paper's public baseline for the real Hub: ResNet-18 (N = 512).
DEFAULT_BASELINE = "timm/resnet18.a1_in1k"
#: Where the demo publishes the micro zoo; the bundled ranker names its models under this organisation.
MICRO_ZOO_ORG = "hf-spider-zoo"
#: The offline data pack's labelled splits a Model Spider ranker samples its training tasks from by default
#: (``train-ranker --data-root``): the eight source domains' test splits and the auxiliary emoji set.
OFFLINE_POOL = ("src-animal-mnist:test", "src-clipart-symbols:test", "src-emoji-apple:test", "src-emoji-google:test",
                "src-glyphs-a:test", "src-icons-breeze-oxygen:test", "src-icons-papirus:test", "src-wesnoth-a:test",
                "aux-emoji-facebook:train", "aux-emoji-facebook:test")


def cache_root() -> Path:
    """``$HF_SPIDER_CACHE`` if set, else ``~/.cache/hf_spider``: feature cache and embedding indexes."""
    return Path(os.environ.get("HF_SPIDER_CACHE") or Path.home() / ".cache" / "hf_spider").expanduser()


def positive_int_env(name: str, default: int) -> int:
    """``$name`` as a positive integer, ``default`` when unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def max_parameters() -> int:
    """The largest model an untrusted config may describe: ``$HF_SPIDER_MAX_PARAMETERS``, default 2 billion
    (8 GB in float32, above every image backbone hf_spider ranks). Checked on the meta device, before any
    memory is allocated."""
    return positive_int_env("HF_SPIDER_MAX_PARAMETERS", 2_000_000_000)
