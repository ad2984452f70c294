"""The score registry: one dict filled by :func:`register_score`, read by everything else.

Modelled on timm's ``@register_model``: a score module decorates its public function and
the registry records what the score needs, so :func:`hf_spider.scores.score` can route
inputs and refuse impossible calls before any computation.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from hf_spider.errors import InvalidInputError

__all__ = ["ScoreInfo", "available", "get", "info", "register_score"]

_INPUTS = ("features", "source_probs")


@dataclass(frozen=True)
class ScoreInfo:
    """What one registered score needs.

    Attributes:
        name: registry name (``"logme"``).
        fn: the public function, called as ``fn(features=..., labels=..., source_probs=..., regression=...)``
            with only the inputs listed in ``uses`` (``regression`` only when supported).
        needs: inputs that must be given (subset of ``{"features", "source_probs"}``).
        uses: inputs the score can use; when ``needs`` is empty, at least one of them must be given.
        regression: whether real-valued targets are supported (``regression=True``).
    """

    name: str
    fn: Callable[..., float]
    needs: frozenset[str]
    uses: frozenset[str]
    regression: bool = False


_SCORES: dict[str, ScoreInfo] = {}


def register_score(
    name: str,
    *,
    needs: tuple[str, ...] = ("features",),
    uses: tuple[str, ...] | None = None,
    regression: bool = False,
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator registering a score function under ``name``.

    Args:
        name: registry name; must be new.
        needs: inputs that must be given: ``("features",)``, ``("source_probs",)``, both, or ``()``
            for a score that accepts either of ``uses``.
        uses: inputs the score can use (defaults to ``needs``).
        regression: the score also accepts real-valued targets.
    """
    uses = needs if uses is None else uses
    for item in (*needs, *uses):
        if item not in _INPUTS:
            raise ValueError(f"unknown score input {item!r}; expected one of {_INPUTS}")
    if not set(needs) <= set(uses) or not uses:
        raise ValueError(f"score {name!r}: needs={needs} must be a subset of a non-empty uses={uses}")

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        if name in _SCORES:
            raise ValueError(f"score {name!r} is already registered")
        _SCORES[name] = ScoreInfo(name, fn, frozenset(needs), frozenset(uses), regression)
        return fn

    return decorator


def available(pattern: str = "*", *, regression: bool | None = None) -> list[str]:
    """Sorted names of the registered scores matching ``pattern`` (fnmatch), optionally only those
    that do (``regression=True``) or do not support regression."""
    return sorted(
        name
        for name, entry in _SCORES.items()
        if fnmatch.fnmatchcase(name, pattern) and (regression is None or entry.regression == regression)
    )


def info(name: str) -> ScoreInfo:
    """The :class:`ScoreInfo` of a registered score."""
    try:
        return _SCORES[name]
    except KeyError:
        close = difflib.get_close_matches(name, available(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidInputError(f"unknown score {name!r}; {hint}available: {', '.join(available())}") from None


def get(name: str) -> Callable[..., float]:
    """The public function of a registered score (it validates its own inputs)."""
    return info(name).fn
