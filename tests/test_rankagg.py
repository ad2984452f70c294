"""Copeland and Borda aggregation on small hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_spider.errors import InvalidInputError
from hf_spider.rankagg import borda, copeland, method_ranks


def test_copeland_clear_majorities():
    # 3 methods x 4 models; every pair has a 2-of-3 or 3-of-3 majority: 0 > 1 > 2 > 3
    scores = [[4, 3, 2, 1], [3, 4, 2, 1], [4, 2, 3, 1]]
    agg, order = copeland(scores)
    np.testing.assert_array_equal(agg, [3, 2, 1, 0])
    np.testing.assert_array_equal(order, [0, 1, 2, 3])
    # the same scores with lower = better reverse everything
    agg, order = copeland(scores, higher_is_better=False)
    np.testing.assert_array_equal(agg, [0, 1, 2, 3])
    np.testing.assert_array_equal(order, [3, 2, 1, 0])


def test_copeland_split_vote_ties():
    # two opposite rankings: every pair is a tie (exactly half), each model gets 2 x 1/2
    agg, order = copeland([[1, 2, 3], [3, 2, 1]])
    np.testing.assert_array_equal(agg, [1, 1, 1])
    np.testing.assert_array_equal(order, [0, 1, 2])  # equal mean rank too: by index


def test_copeland_ties_inside_methods_and_mean_rank_tie_break():
    scores = [[3, 1, 1, 3], [0, 1, 0, 1], [3, 0, 1, 1]]
    # average ranks (1 = best): m1 [1.5, 3.5, 3.5, 1.5], m2 [3.5, 1.5, 3.5, 1.5], m3 [1, 4, 2.5, 2.5]
    expected_ranks = [[1.5, 3.5, 3.5, 1.5], [3.5, 1.5, 3.5, 1.5], [1, 4, 2.5, 2.5]]
    np.testing.assert_array_equal(method_ranks(scores), expected_ranks)
    # rankings putting i above j (a tie inside a method counts 1/2):
    # (0,1): 1 + 0 + 1 = 2 -> 0 wins    (0,2): 1 + 1/2 + 1 -> 0 wins    (0,3): 1/2 + 0 + 1 = 3/2 -> tie
    # (1,2): 1/2 + 1 + 0 -> tie          (1,3): 0 + 1/2 + 0 -> 3 wins    (2,3): 0 + 0 + 1/2 -> 3 wins
    agg, order = copeland(scores)
    np.testing.assert_array_equal(agg, [2.5, 0.5, 0.5, 2.5])
    # 0 and 3 tie on Copeland: mean ranks 2 vs 11/6 -> 3 first; 1 and 2: 3 vs 19/6 -> 1 first
    np.testing.assert_array_equal(order, [3, 0, 1, 2])


def test_copeland_per_method_direction_and_torch_input():
    # method 2 is a loss (lower is better): after flipping it agrees with method 1
    scores = torch.tensor([[0.9, 0.5, 0.7], [0.1, 3.0, 2.0]])
    agg, order = copeland(scores, higher_is_better=[True, False])
    np.testing.assert_array_equal(agg, [2, 0, 1])
    np.testing.assert_array_equal(order, [0, 2, 1])


def test_single_method_is_its_own_ranking():
    agg, order = copeland([[0.2, 0.9, 0.5, 0.9]])
    np.testing.assert_array_equal(agg, [0, 2.5, 1, 2.5])  # 1 and 3 tie (1/2 of one ranking = half)
    np.testing.assert_array_equal(order, [1, 3, 2, 0])


def test_borda_is_mean_rank():
    scores = [[3, 1, 1, 3], [0, 1, 0, 1], [3, 0, 1, 1]]
    agg, order = borda(scores)
    # mean ranks [2, 3, 19/6, 11/6]; Borda score = M - mean rank
    np.testing.assert_allclose(agg, [2, 1, 5 / 6, 13 / 6])
    np.testing.assert_array_equal(order, [3, 0, 1, 2])
    agg, order = borda([[1, 2, 3], [3, 2, 1]])
    np.testing.assert_allclose(agg, [1, 1, 1])
    np.testing.assert_array_equal(order, [0, 1, 2])


def test_borda_and_copeland_can_disagree():
    # model 0 is first in two rankings but last in the third: it wins every majority (Copeland), while
    # model 1's mean rank is better (Borda)
    scores = [[4, 3, 2, 1], [4, 3, 2, 1], [1, 4, 3, 2]]
    agg, order = copeland(scores)
    np.testing.assert_array_equal(agg, [3, 2, 1, 0])
    np.testing.assert_array_equal(order, [0, 1, 2, 3])
    agg, order = borda(scores)  # mean ranks [2, 5/3, 8/3, 11/3]
    np.testing.assert_allclose(agg, [2, 7 / 3, 4 / 3, 1 / 3])
    np.testing.assert_array_equal(order, [1, 0, 2, 3])


@pytest.mark.parametrize(
    ("scores", "kwargs", "message"),
    [
        ([1.0, 2.0], {}, "must be 2-D"),
        ([[1.0, np.nan]], {}, "NaN"),
        ([[1.0, 2.0], [np.inf, 0.0]], {}, r"method rows \[1\]"),
        ([[1.0, 2.0]], {"higher_is_better": [True, False]}, "one bool per method"),
        ([["a", "b"]], {}, "numeric"),
        (np.zeros((0, 3)), {}, "K, M >= 1"),
    ],
)
def test_invalid_scores(scores, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        copeland(scores, **kwargs)
    with pytest.raises(InvalidInputError, match=message):
        borda(scores, **kwargs)
