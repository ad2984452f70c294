"""One adapter per backbone library, registered with :func:`register_library` and found by its config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ModelLoadError
from ._base import Backbone

__all__ = ["Adapter", "detect_library", "get_adapter", "list_libraries", "register_library"]

# load(source, config, *, trust_remote_code, allow_pickle) -> Backbone
Loader = Callable[..., Backbone]


@dataclass(frozen=True)
class Adapter:
    """How one library's repos are recognised (``detect(config)``) and loaded (``load``)."""

    name: str
    detect: Callable[[dict[str, Any]], bool]
    load: Loader


_ADAPTERS: dict[str, Adapter] = {}


def register_library(name: str, *, detect: Callable[[dict[str, Any]], bool]) -> Callable[[Loader], Loader]:
    """Decorator registering ``load`` as the adapter for repos whose ``config.json`` satisfies ``detect``."""

    def decorator(load: Loader) -> Loader:
        _ADAPTERS[name] = Adapter(name, detect, load)
        return load

    return decorator


def list_libraries() -> list[str]:
    """Names of the registered adapters, in the order they are tried."""
    return list(_ADAPTERS)


def get_adapter(name: str) -> Adapter:
    if name not in _ADAPTERS:
        raise ModelLoadError(f"library must be 'auto' or one of {list_libraries()}, got {name!r}")
    return _ADAPTERS[name]


def detect_library(config: dict[str, Any], *, where: str) -> Adapter:
    """The first adapter whose ``detect`` accepts ``config``."""
    for adapter in _ADAPTERS.values():
        if adapter.detect(config):
            return adapter
    raise ModelLoadError(
        f"{where}: config.json has neither 'onnx' (ONNX), 'architecture' (timm) nor 'model_type' (transformers); "
        "pass library="
    )
