"""Forward-based transferability scores (SPEC §1), one registry.

Every score takes the features (and/or source-head probabilities) of ONE model on ONE labelled
task and returns a float, higher = better transfer::

    from hf_spider import scores
    scores.available()                      # ['gbc', 'h_score', ..., 'transrate']
    scores.score("logme", features=F, labels=y)
    scores.score("leep", source_probs=P, labels=y)
    scores.get("gbc")(F, y, n_components=32)

Inputs are numpy arrays or torch tensors (CPU or CUDA, any float dtype); CUDA inputs are scored on
their device. Invalid inputs raise :class:`hf_spider.errors.InvalidInputError`. A new score is one
decorated function: ``@register_score("name", needs=("features",))``.
"""

from __future__ import annotations

from typing import Any

from hf_spider.errors import InvalidInputError
from hf_spider.scores._registry import ScoreInfo, available, get, info, register_score

# importing the score modules fills the registry
from hf_spider.scores.gbc import gbc
from hf_spider.scores.hscore import h_score, h_score_shrink
from hf_spider.scores.knn import knn
from hf_spider.scores.leep import leep, nce, nleep
from hf_spider.scores.lfc import lfc
from hf_spider.scores.logme import LogMEFit, logme, logme_fit
from hf_spider.scores.pactran import pactran
from hf_spider.scores.sfda import sfda
from hf_spider.scores.transrate import transrate

__all__ = [
    "LogMEFit",
    "ScoreInfo",
    "available",
    "gbc",
    "get",
    "h_score",
    "h_score_shrink",
    "info",
    "knn",
    "leep",
    "lfc",
    "logme",
    "logme_fit",
    "nce",
    "nleep",
    "pactran",
    "register_score",
    "score",
    "sfda",
    "transrate",
]


def score(
    name: str,
    features: Any = None,
    labels: Any = None,
    source_probs: Any = None,
    regression: bool = False,
    **options: Any,
) -> float:
    """Compute the registered score ``name``.

    Args:
        name: a name from :func:`available`.
        features: [n, d] features of the model on the task.
        labels: [n] integer class ids (any ints), or real targets [n] / [n, k] with ``regression=True``.
        source_probs: [n, C_s] source-head probabilities (rows sum to 1).
        regression: ``labels`` are real-valued targets (only for scores registered with regression support).
        **options: score-specific keyword options (e.g. ``k=10`` for ``knn``).

    Inputs the score does not use are ignored, so one call pattern serves every score.
    """
    entry = info(name)
    given = {"features": features, "source_probs": source_probs}
    missing = sorted(item for item in entry.needs if given[item] is None)
    if missing:
        raise InvalidInputError(f"score {name!r} needs {' and '.join(missing)}")
    if not entry.needs and all(given[item] is None for item in entry.uses):
        raise InvalidInputError(f"score {name!r} needs one of: {', '.join(sorted(entry.uses))}")
    if regression and not entry.regression:
        raise InvalidInputError(
            f"regression targets given (regression=True) but {name!r} supports classification only; "
            f"scores supporting regression: {', '.join(available(regression=True))}"
        )
    kwargs = {item: given[item] for item in entry.uses if given[item] is not None}
    if entry.regression:
        kwargs["regression"] = regression
    return entry.fn(labels=labels, **kwargs, **options)
