"""Standardized Embedder (SPEC §3): selection metric, model and task embeddings on planted structure.

Baseline features B are independent Gaussian coordinates; a "model" sees only a block of them through
a random linear map, and a task's labels depend only on a block. Everything is small (N = 32) so the
whole module runs in seconds on one core.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf

from hf_spider.constants import MICRO_ZOO
from hf_spider.embedder import (
    embed_model,
    embed_task,
    embed_task_cached,
    fidelity,
    fuzzy_intersection,
    rank_by_embedding,
)
from hf_spider.embedder.model_embedding import _sgd_step
from hf_spider.embedder.task_embedding import choose_gamma
from hf_spider.errors import InvalidArtifactError, InvalidInputError

N_ROWS, N_BASE, K, D_MODEL = 1000, 32, 8, 16
MODEL_OPTS = dict(steps=400, lr_step=100, progress=False, device="cpu")
TASK_OPTS = dict(progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only add contention


@pytest.fixture(scope="module")
def planted():
    """B [n, N]; F_a sees baseline coordinates 0..K-1, F_b coordinates K..2K-1 (linear map + noise)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((N_ROWS, N_BASE)).astype(np.float32)

    def model(lo: int) -> np.ndarray:
        mix = rng.standard_normal((K, D_MODEL)).astype(np.float32)
        return base[:, lo : lo + K] @ mix + 0.05 * rng.standard_normal((N_ROWS, D_MODEL)).astype(np.float32)

    return base, model(0), model(K)


@pytest.fixture(scope="module")
def model_embeddings(planted):
    base, f_a, f_b = planted
    return embed_model(f_a, base, **MODEL_OPTS), embed_model(f_b, base, **MODEL_OPTS)


@pytest.fixture(scope="module")
def task_labels(planted):
    """4 classes decided by baseline coordinates 0..K-1 only."""
    base = planted[0]
    head = np.random.default_rng(1).standard_normal((K, 4))
    return (base[:, :K] @ head).argmax(1)


@pytest.fixture(scope="module")
def auto_task(planted, task_labels):
    return embed_task(planted[0], task_labels, **TASK_OPTS)


def _block(lo: int) -> np.ndarray:
    mask = np.zeros(N_BASE, dtype=bool)
    mask[lo : lo + K] = True
    return mask


# ---------------------------------------------------------------- selection


def test_fuzzy_intersection_matches_loop():
    rng = np.random.default_rng(2)
    u, v = rng.random(50), rng.random(50)
    expected = sum(min(a, b) for a, b in zip(u, v, strict=True))
    assert fuzzy_intersection(u, v) == pytest.approx(expected, rel=1e-12)
    assert fuzzy_intersection([1, 0, 0.5], [0.25, 1, 1]) == pytest.approx(0.75)
    assert fuzzy_intersection(torch.tensor([0.2, 0.9]), np.array([0.4, 0.3])) == pytest.approx(0.5)


def _resident_file_kib() -> int:
    """This process's resident file-backed memory (``RssFile``, Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("RssFile:")))


def test_sweep_over_a_memory_mapped_matrix_equals_the_direct_sum_and_releases_its_pages(tmp_path):
    from safetensors.numpy import save_file

    from hf_spider.embedder import sweep
    from hf_spider.formats.matrix import MappedMatrix

    rng = np.random.default_rng(3)
    matrix, u = rng.random((40_000, 256), dtype=np.float32), rng.random(256).astype(np.float32)  # 40 MB, 10 blocks
    save_file({"other": np.zeros(3, np.float32), "dim256": matrix}, tmp_path / "m.safetensors")
    expected = [sum(min(float(a), float(b)) for a, b in zip(u, row, strict=True)) for row in matrix[::3997]]
    with MappedMatrix(tmp_path / "m.safetensors", "dim256") as mapped:
        assert mapped.shape == (40_000, 256)
        before = _resident_file_kib()
        scores = sweep(u, mapped)
        grown = _resident_file_kib() - before
    assert scores[::3997] == pytest.approx(expected, rel=1e-5)
    assert np.array_equal(scores, sweep(u, matrix))
    assert grown < 8 * 1024  # KiB: about one 4 MB block stays mapped, not the 40 MB matrix
    with pytest.raises(InvalidArtifactError, match="no float32 matrix 'dim32'"):
        MappedMatrix(tmp_path / "m.safetensors", "dim32")


def test_rank_by_embedding_order_and_ties():
    task = np.array([1.0, 1.0, 0.0, 0.5])
    models = {
        "zeta": [1.0, 0.0, 1.0, 0.5],  # 1.5
        "alpha": [0.0, 1.0, 0.0, 0.5],  # 1.5 (tie with zeta: name order)
        "best": [1.0, 1.0, 1.0, 1.0],  # 2.5
        "none": [0.0, 0.0, 1.0, 0.0],  # 0.0
        "mid": [0.5, 0.5, 0.0, 1.0],  # 1.5
    }
    ranking = rank_by_embedding(task, models)
    assert [name for name, _ in ranking] == ["best", "alpha", "mid", "zeta", "none"]
    assert [score for _, score in ranking] == pytest.approx([2.5, 1.5, 1.5, 1.5, 0.0])
    for name, score in ranking:
        assert score == pytest.approx(fuzzy_intersection(task, models[name]))
    assert rank_by_embedding(task, {}) == []


@pytest.mark.parametrize(
    ("task", "models", "match"),
    [
        ([0.5, 0.5], {"a": [0.5, 0.5, 0.5]}, "shape"),
        ([0.5, 0.5], {"a": [0.5, np.nan]}, "NaN"),
        ([0.5, 0.5], {"a": [0.5, 1.5]}, r"\[0, 1\]"),
        ([0.5, -0.1], {"a": [0.5, 0.5]}, r"\[0, 1\]"),
        ([[0.5, 0.5]], {"a": [0.5, 0.5]}, "1-D"),
    ],
)
def test_rank_by_embedding_refuses_bad_vectors(task, models, match):
    with pytest.raises(InvalidInputError, match=match):
        rank_by_embedding(task, models)


def test_fuzzy_intersection_refuses_mismatch():
    with pytest.raises(InvalidInputError, match="length 3"):
        fuzzy_intersection([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(InvalidInputError, match="NaN"):
        fuzzy_intersection([0.1, np.inf], [0.1, 0.2])


# ---------------------------------------------------------------- model embedding


def test_model_embedding_finds_planted_blocks(model_embeddings):
    for emb, lo in zip(model_embeddings, (0, K), strict=True):
        v, mask = emb.vector, _block(lo)
        assert v.dtype == np.float32 and v.shape == (N_BASE,)
        assert v.min() >= 0 and v.max() <= 1
        assert v[mask].mean() > 0.9, v
        assert v[~mask].mean() < 0.1, v
        assert emb.fidelity_to > 0.95 and emb.fidelity_from > 0.95
        assert (emb.steps, emb.seed, emb.tau) == (400, 0, 0.01)


def test_fidelity_equals_direct_recomputation(planted, model_embeddings):
    base, f_a, _ = planted
    emb = model_embeddings[0]
    m = emb.maps
    f, b, v = torch.from_numpy(f_a), torch.from_numpy(base), torch.from_numpy(emb.vector)
    l_to = nnf.cosine_similarity(f @ torch.from_numpy(m.w) + torch.from_numpy(m.b), v * b, dim=1).mean()
    l_from = nnf.cosine_similarity(f, (v * b) @ torch.from_numpy(m.w_hat) + torch.from_numpy(m.b_hat), dim=1).mean()
    assert emb.fidelity_to == pytest.approx(float(l_to), abs=1e-5)
    assert emb.fidelity_from == pytest.approx(float(l_from), abs=1e-5)
    assert fidelity(f_a, base, emb.vector, m) == pytest.approx((emb.fidelity_to, emb.fidelity_from), abs=1e-6)
    # a mask that drops the planted block destroys L_from: the fidelity is a function of v
    _, l_from_wrong = fidelity(f_a, base, 1 - emb.vector, m)
    assert l_from_wrong < 0.5


def test_model_embedding_is_deterministic(planted, model_embeddings):
    base, f_a, _ = planted
    again = embed_model(f_a, base, **MODEL_OPTS)
    assert np.array_equal(again.vector, model_embeddings[0].vector)
    assert again.fidelity_to == model_embeddings[0].fidelity_to
    other = embed_model(torch.from_numpy(f_a), torch.from_numpy(base), **{**MODEL_OPTS, "seed": 1})
    assert not np.array_equal(other.maps.w, model_embeddings[0].maps.w)  # another initialisation ...
    assert other.vector[_block(0)].mean() > 0.9 and other.vector[~_block(0)].mean() < 0.1  # ... same mask


@pytest.mark.parametrize(
    ("f", "b", "match"),
    [
        (np.ones((10, 3)), np.ones((9, 4)), "10 rows but baseline_features have 9"),
        (np.ones(10), np.ones((10, 4)), "2-D"),
        (np.ones((1, 3)), np.ones((1, 4)), "at least 2 samples"),
        (np.full((10, 3), np.nan), np.ones((10, 4)), "NaN"),
        (np.ones((10, 3)), np.full((10, 4), 1e39), "infinite"),
        (np.array([["a", "b"], ["c", "d"]]), np.ones((2, 4)), "real numbers"),
    ],
)
def test_embed_model_validates_inputs(f, b, match):
    with pytest.raises(InvalidInputError, match=match):
        embed_model(f, b, **MODEL_OPTS)


def test_embed_model_validates_options(planted):
    base, f_a, _ = planted
    with pytest.raises(InvalidInputError, match="steps"):
        embed_model(f_a, base, **{**MODEL_OPTS, "steps": 0})
    with pytest.raises(InvalidInputError, match="tau"):
        embed_model(f_a, base, **{**MODEL_OPTS, "tau": -1.0})


def test_sgd_step_matches_torch_sgd():
    """The hand-written step equals torch's SGD (its functional form: what ``SGD.step`` runs, without
    the optimizer's one-off ``torch._dynamo`` import)."""
    from torch.optim.sgd import sgd

    torch.manual_seed(0)
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    mine = [a.clone().requires_grad_(), b.clone().requires_grad_()]
    ref, ref_bufs, bufs = [a.clone().requires_grad_(), b.clone().requires_grad_()], [[None], [None]], {}
    for step in range(5):
        lr = 0.1 * 0.1 ** (step // 3)
        x = torch.randn(3)
        for params in (mine, ref):
            sum((p @ x).square().sum() for p in params).backward()
        with torch.no_grad():
            for i, decay in enumerate((5e-4, 0.0)):
                sgd(
                    [ref[i]],
                    [ref[i].grad],
                    ref_bufs[i],
                    weight_decay=decay,
                    momentum=0.9,
                    lr=lr,
                    dampening=0.0,
                    nesterov=False,
                    maximize=False,
                )
                ref[i].grad = None
        _sgd_step([([mine[0]], 5e-4), ([mine[1]], 0.0)], bufs, lr, 0.9)
    assert all(torch.equal(m, r) for m, r in zip(mine, ref, strict=True))


# ---------------------------------------------------------------- task embedding and selection


def test_task_embedding_concentrates_on_the_label_features(planted, task_labels):
    emb = embed_task(planted[0], task_labels, gamma=3e-3, **TASK_OPTS)
    v, mask = emb.vector, _block(0)
    assert v.dtype == np.float32 and v.shape == (N_BASE,) and emb.gamma == 3e-3
    assert v[mask].mean() > 0.7 and v[~mask].max() < 0.05, v
    assert emb.accuracy > 0.7 and emb.sweep == [(3e-3, emb.accuracy, pytest.approx(float(v.sum()), abs=1e-4))]


def test_gamma_sweep_and_rule_of_thumb(auto_task):
    gammas, acc, l1 = (np.array(col) for col in zip(*auto_task.sweep, strict=True))
    assert gammas[0] == 0 and np.all(np.diff(gammas) > 0) and len(gammas) == 22
    assert np.all(np.diff(l1) <= 0.5), l1  # more sparsity pressure, smaller ‖v‖₁
    assert l1[0] > 0.9 * N_BASE and l1[-1] < 1
    # the rule recomputed: smallest γ at least 3 points below the best accuracy of the smaller γ
    expected = next(g for i, g in enumerate(gammas) if i and acc[i] <= acc[:i].max() - 0.03 + 1e-9)
    assert auto_task.gamma == expected == choose_gamma(auto_task.sweep)
    k = int(np.nonzero(gammas == auto_task.gamma)[0][0])
    assert auto_task.accuracy == acc[k] and float(auto_task.vector.sum()) == pytest.approx(l1[k], abs=1e-4)
    assert not auto_task.regression


def test_choose_gamma_hand_examples():
    # monotone curve: the paper's rule verbatim (converged = accuracy at γ = 0)
    assert choose_gamma([(0, 0.90, 9), (1e-3, 0.89, 5), (1e-2, 0.87, 3), (1e-1, 0.5, 0)]) == 1e-2
    # sparsity first helps: the drop is measured from the peak, not from γ = 0
    assert choose_gamma([(0, 0.60, 9), (1e-3, 0.70, 5), (1e-2, 0.66, 3), (1e-1, 0.2, 0)]) == 1e-2
    # no drop anywhere: the largest γ
    assert choose_gamma([(0, 0.6, 9), (1e-3, 0.6, 5)]) == 1e-3


def test_task_embedding_ranks_the_matching_model_first(auto_task, model_embeddings):
    emb_a, emb_b = model_embeddings
    ranking = rank_by_embedding(auto_task.vector, {"model-b": emb_b.vector, "model-a": emb_a.vector})
    assert [name for name, _ in ranking] == ["model-a", "model-b"]
    assert ranking[0][1] > 3 and ranking[1][1] < 0.5
    assert auto_task.vector[_block(0)].sum() > 0.9 * auto_task.vector.sum()


def test_task_embedding_is_deterministic(planted, task_labels):
    first = embed_task(planted[0], task_labels, gamma=3e-3, epochs=10, **TASK_OPTS)
    again = embed_task(planted[0], task_labels, gamma=3e-3, epochs=10, **TASK_OPTS)
    assert np.array_equal(first.vector, again.vector) and first.accuracy == again.accuracy


def test_regression_targets(planted):
    base = planted[0]
    rng = np.random.default_rng(3)
    targets = base[:, K : 2 * K] @ rng.uniform(1, 2, (K, 2)) * 10 + 100 + 0.1 * rng.standard_normal((N_ROWS, 2))
    emb = embed_task(base, targets, regression=True, **TASK_OPTS)
    assert emb.regression
    r2 = np.array([acc for _, acc, _ in emb.sweep])
    assert r2[0] > 0.98  # R² on held-out rows at γ = 0
    assert emb.accuracy <= r2[: [g for g, _, _ in emb.sweep].index(emb.gamma)].max() - 0.03 + 1e-9
    v = emb.vector
    assert v[_block(K)].sum() > 0.9 * v.sum() and v[_block(K)].sum() >= 2, v
    one = embed_task(base, targets[:, 0], regression=True, gamma=1e-2, **TASK_OPTS)  # a single target [n]
    assert one.accuracy > 0.99 and one.vector[_block(K)].sum() >= 4 and one.vector[~_block(K)].max() < 0.05


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (np.zeros(10, dtype=int), {}, "single class"),
        (np.arange(9) % 2, {}, "9 entries"),
        (np.linspace(0, 1, 10), {}, "regression=True"),
        (np.arange(10) % 2, {"gamma": "big"}, "gamma"),
        (np.arange(10) % 2, {"gamma": -1.0}, "gamma"),
        (np.arange(10) % 2, {"gamma_grid": [1e-3, 0]}, "gamma_grid"),
        (np.arange(10) % 2, {"gamma": 1e-3, "gamma_grid": [1e-3]}, "only used"),
        (np.arange(10) % 2, {"holdout": 1.0}, "holdout"),
        (np.full(10, 3.0), {"regression": True}, "constant"),
        (np.full((10, 2, 2), 3.0), {"regression": True}, r"\[n\] or \[n, k\]"),
    ],
)
def test_embed_task_validates_inputs(labels, kwargs, match):
    base = np.random.default_rng(0).standard_normal((10, 4))
    with pytest.raises(InvalidInputError, match=match):
        embed_task(base, labels, **{**TASK_OPTS, "epochs": 1, **kwargs})


def test_embed_zoo_caches_each_embedding_by_its_inputs(monkeypatch):

    from conftest import FIXTURES

    from hf_spider.embedder import zoo as zoo_module

    models = [str(MICRO_ZOO / "models" / m)
              for m in ("resnet10-tiny-animals", "convnext-short-wesnoth")]
    setup = zoo_module.EmbedderSetup(models[0], str(FIXTURES / "digits-mini"), "train", max_per_class=4, steps=20)
    first = zoo_module.embed_zoo(models, setup, progress=False)
    monkeypatch.setattr(zoo_module, "embed_model", lambda *a, **k: 1 / 0)  # a cache hit must not optimise
    again = zoo_module.embed_zoo(models, setup, progress=False)
    assert all(np.array_equal(first[m], again[m]) and again[m].dtype == np.float32 for m in models)
    other = zoo_module.EmbedderSetup(models[0], str(FIXTURES / "digits-mini"), "train", max_per_class=4, steps=21)
    with pytest.raises(ZeroDivisionError):  # other settings: another cache entry, computed afresh
        zoo_module.embed_zoo(models[:1], other, progress=False)


def test_task_embedding_is_cached_per_features_labels_and_settings(planted, task_labels, tmp_path, monkeypatch):
    from hf_spider.embedder import task_embedding

    monkeypatch.setenv("HF_SPIDER_CACHE", str(tmp_path))
    calls = []
    compute = task_embedding.embed_task
    monkeypatch.setattr(task_embedding, "embed_task", lambda *a, **k: calls.append(k) or compute(*a, **k))
    first = embed_task_cached(planted[0], task_labels, gamma=3e-3, progress=False)
    again = embed_task_cached(planted[0], task_labels, gamma=3e-3, progress=False)
    assert len(calls) == 1 and np.array_equal(again.vector, first.vector)
    assert (again.gamma, again.accuracy, again.sweep, again.regression) == (
        first.gamma, first.accuracy, first.sweep, first.regression)
    assert np.array_equal(first.vector, embed_task(planted[0], task_labels, gamma=3e-3, progress=False).vector)
    embed_task_cached(planted[0], task_labels, gamma=1e-3, progress=False)  # other settings
    embed_task_cached(planted[0], (task_labels + 1) % 4, gamma=3e-3, progress=False)  # other labels
    assert len(calls) == 3
