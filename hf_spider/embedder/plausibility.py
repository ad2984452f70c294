"""Plausibility of a published model embedding: cheap flags for inflated vectors (issue 9).

Selection scores a model by the fuzzy intersection Σ min(u_i, v_i) with the task embedding u, so a
larger mask can only raise a score: an owner who publishes an inflated vector (all ones, or v·3
clipped to 1) wins every selection. An honest vector is what :func:`~hf_spider.embedder.embed_model`
computes, which gives it two checkable traits:

* **bounded values**: ``embed_model`` keeps every mask logit v'/τ in [-6, 6], so no value exceeds
  σ(6) = :data:`MAX_VALUE` ≈ 0.9975. A value above it (a 1 from clipping, say) is not what hf_spider
  computes: inflated, or made by a version before that bound.
* **mass**: no model should keep more of the baseline than the baseline itself. A mean mask above
  :data:`MAX_MEAN`, more than any baseline of the zoo keeps of itself after 1,000 steps, is inflated or
  barely optimised (after a few hundred steps the mask has hardly left its start, near 1).

How the bounds were chosen: ``docs/embedder.md``, "Verification thresholds".

These flags catch naive inflation only: a vector crafted to stay under both bounds passes them.
``hf_spider verify`` (:mod:`hf_spider.verify`, recomputing the embedding) does not depend on the
attacker's naivety, down to the method's own run-to-run noise; see the README's "What the defence
does and does not guarantee".
"""

from __future__ import annotations

import math

import numpy as np

from ._common import V_INIT_LOGIT

__all__ = ["MAX_MEAN", "MAX_VALUE", "plausibility_flags"]

MAX_VALUE = 1 / (1 + math.exp(-V_INIT_LOGIT))  # σ(6): embed_model's largest value (its logits are bounded)
MAX_MEAN = 0.98  # above every self-embedding of the zoo optimised for 1,000+ steps (docs/embedder.md)


def plausibility_flags(vector: np.ndarray, metadata: dict[str, str], repo_id: str) -> list[str]:
    """Reasons to distrust a published embedding (empty when none), each ``"<code>: <explanation>"``.

    Args:
        vector: the validated embedding [N] in [0, 1].
        metadata: its validated metadata.
        repo_id: the repo it was published in.
    """
    flags = []
    mean = float(vector.mean())
    if mean > MAX_MEAN:
        flags.append(f"mass: mean mask {mean:.3f} is above {MAX_MEAN}, more than a baseline keeps of itself: "
                     "inflated, or barely optimised")
    above = int((vector > MAX_VALUE + 1e-6).sum())
    if above:
        flags.append(f"saturated: {above} of {vector.size} values are above {MAX_VALUE:.4f}, the most hf_spider's "
                     "embedder produces: inflated (clipped to 1), or made before that bound")
    if metadata.get("model") != repo_id:
        flags.append(f"copied: the embedding was computed for {metadata.get('model')!r}, not this repo")
    return flags
