"""Features of one model on one task: the cache (no torch) and the batched, data-parallel extraction.

:func:`extract_features` runs a :class:`~hf_spider.backbones.Backbone` over a :class:`~hf_spider.tasks.Task`
and caches the ``[n, d]`` result; :func:`cached_features` finds an earlier result by the model's current
commit without loading it, or torch.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from ._cache import FeatureCache, Features, cache_key, cached_features, default_cache_dir

if TYPE_CHECKING:
    from ._extract import default_checkpoint_rows, default_num_workers, extract_features

__all__ = ["FeatureCache", "Features", "cache_key", "cached_features", "default_cache_dir", "default_checkpoint_rows",
           "default_num_workers", "extract_features"]

__getattr__ = lazy_attributes(__name__, {name: "_extract" for name in (
    "default_checkpoint_rows", "default_num_workers", "extract_features")})
