"""The user's side: rank models for a task.

- :func:`select_models` ranks the models that published an embedding over a baseline, with no forward pass of
  any candidate (the embedder, the Model Spider), and optionally re-ranks the top k.
- :func:`rank_candidates` ranks any models, published or not: a task-agnostic prior, then a forward-based
  score on the top k or on all of them.
"""

from ._forward import rank_candidates
from ._published import FORWARD, METHODS, check_selection, select_models
from ._result import Candidate, Selection

__all__ = ["FORWARD", "METHODS", "Candidate", "Selection", "check_selection", "rank_candidates", "select_models"]
