"""Plausibility of a published model embedding: cheap flags for inflated vectors (issue 9).

Selection scores a model by the fuzzy intersection Σ min(u_i, v_i) with the task embedding u, so a
larger mask can only raise a score: an owner who publishes an inflated vector (all ones, or v·3
clipped to 1) wins every selection. An honest vector is what :func:`~hf_spider.embedder.embed_model`
reaches from v = σ(6) ≈ 0.998 with weight decay on v', which gives it two measurable traits
(``benchmarks/plausibility.py``; the 27 zoo models over ``resnet18-all-mix`` on ``reference-mix``):

* **mass**: no model should keep more of the baseline than the baseline itself, and a baseline
  embedded against itself keeps a mean mask of 0.59-0.88 after 1,000-4,000 steps (four zoo
  baselines); the 26 other zoo models keep 0.17-0.82 over ``resnet18-all-mix``. A mean above
  :data:`MAX_MEAN` is inflated or barely optimised: after only 200 steps the mask has hardly left its
  start (self-embeddings 0.91-0.99, honest models up to 0.96 on a 100-image reference), so such an
  embedding claims nearly every baseline feature whatever the model.
* **saturation**: σ(v'/τ) rounds to exactly 1.0 only when v' grew far above its start; honest zoo
  vectors have 0-2.3 % of their values at exactly 1 (self-embeddings: none). Clipping an inflated
  vector to [0, 1] piles values there: more than :data:`MAX_SATURATED` is flagged.

These flags catch naive inflation only: a vector crafted to stay under both bounds passes them.
``hf_spider verify`` (:mod:`hf_spider.verify`, recomputing the embedding) does not depend on the
attacker's naivety, down to the method's own run-to-run noise; see the README's "What the defence
does and does not guarantee".
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_MEAN", "MAX_SATURATED", "plausibility_flags"]

MAX_MEAN = 0.98  # above every self-embedding optimised for 1,000+ steps (0.88) and most 200-step ones
MAX_SATURATED = 0.10  # more than 4x the largest share of exact ones in an honest zoo vector (2.3 %)


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
    saturated = float((vector >= 1.0).mean())
    if saturated > MAX_SATURATED:
        flags.append(f"saturated: {saturated:.0%} of the values are exactly 1 (honest embeddings: a few %)")
    if metadata.get("model") != repo_id:
        flags.append(f"copied: the embedding was computed for {metadata.get('model')!r}, not this repo")
    return flags
