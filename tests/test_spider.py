"""Model Spider: loss, tokens, learning a planted ranking, Hub round trip, re-ranking."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from hf_spider.errors import InvalidInputError
from hf_spider.spider.hub import load_ranker
from hf_spider.spider.model import SpiderRanker, listmle_loss
from hf_spider.spider.predict import rank_models
from hf_spider.spider.tokens import class_means, regression_bins
from hf_spider.spider.training import (
    Pool,
    SampledTask,
    ScoreMemo,
    TrainConfig,
    _stratified_mask,
    image_attributes,
    label_tasks,
    probe_ground_truth,
    sample_tasks,
    train,
    validate,
)
from hf_spider.tasks import task_from_arrays


def test_listmle_matches_the_plackett_luce_formula():
    torch.manual_seed(0)
    s = torch.randn(6)
    order = torch.randperm(6)
    direct = 0.0
    for m in range(6):  # −log( exp(s_{↓m}) / Σ_{l≥m} exp(s_{↓l}) )
        tail = [math.exp(float(s[order[j]])) for j in range(m, 6)]
        direct -= math.log(math.exp(float(s[order[m]])) / sum(tail))
    assert float(listmle_loss(s, order)) == pytest.approx(direct, rel=1e-6)


def test_listmle_is_the_negative_log_probability_of_the_order():
    s = torch.tensor([0.3, -1.0, 2.0])
    probs = {}
    for perm in itertools.permutations(range(3)):
        probs[perm] = math.exp(-float(listmle_loss(s, torch.tensor(perm))))
    assert sum(probs.values()) == pytest.approx(1.0, rel=1e-6)
    assert max(probs, key=probs.get) == (2, 0, 1)  # sorted by score


def test_class_means_and_regression_bins():
    f = np.array([[1.0, 0.0], [3.0, 2.0], [10.0, 10.0]], dtype=np.float32)
    np.testing.assert_allclose(class_means(f, np.array([7, 7, 2])).numpy(), [[10, 10], [2, 1]])
    bins = regression_bins(np.arange(100.0), bins=4)
    assert np.bincount(bins).tolist() == [25, 25, 25, 25] and (np.diff(bins) >= 0).all()


def _synthetic_pool(n_models: int = 6, n_classes: int = 8, per_class: int = 20, width: int = 16, seed: int = 0):
    """Models whose quality on a task is planted: model m is good at task family ``m % 2``."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(2 * n_classes), per_class)
    family = (labels >= n_classes).astype(int)  # two task families, distinguishable by the encoder
    encoder = rng.normal(size=(len(labels), width)) + 3.0 * family[:, None] * np.eye(width)[0]
    feats = [rng.normal(size=(len(labels), width)).astype(np.float32) for _ in range(n_models)]
    pool = Pool([f"m{i}" for i in range(n_models)], feats, [None] * n_models, encoder.astype(np.float32), labels,
                family, np.zeros(len(labels), dtype=bool))
    quality = np.array([[1.0 + (m % 2 == fam) * 2 + m * 0.1 for m in range(n_models)] for fam in (0, 1)])
    tasks = []
    for i in range(40):
        fam = i % 2
        classes = rng.choice(np.arange(fam * n_classes, (fam + 1) * n_classes), size=4, replace=False)
        rows = np.concatenate([np.flatnonzero(labels == c)[:10] for c in classes])
        tasks.append(SampledTask(rows, np.repeat(np.arange(4), 10), scores=quality[fam][None, :],
                                 ground_truth=quality[fam]))
    return pool, tasks, quality


def test_ranker_learns_a_planted_ranking():
    pool, tasks, _ = _synthetic_pool()
    ranker = SpiderRanker(encoder="synthetic", encoder_dim=16, dim=32, token_source="table", models=pool.models,
                          specific_widths=[16], dropout=0.0)
    before = validate(ranker, pool, tasks[:10], ks=[0])[0]
    history = train(ranker, pool, tasks, config=TrainConfig(epochs=60, batch_tasks=8, lr=3e-3), progress=False)
    after = validate(ranker, pool, tasks[:10], ks=[0])[0]
    assert history[-1] < 0.5 * history[0]
    assert after > 0.95 and after > before  # both families ordered right from the task tokens alone


def test_ranker_tells_regression_from_classification_on_the_same_data():
    """Bins of a data set look like its classes (identical tokens here): only the regression marker lets
    regressing family-0 data prefer the other model family."""
    pool, tasks, quality = _synthetic_pool()
    mixed = [SampledTask(t.rows, t.labels.astype(np.float32) if i % 2 else t.labels, regression=bool(i % 2),
                         scores=quality[i % 2][None, :], ground_truth=quality[i % 2])
             for i, t in enumerate(t for t in tasks if t.ground_truth[0] == quality[0][0])]
    ranker = SpiderRanker(encoder="synthetic", encoder_dim=16, dim=32, token_source="table", models=pool.models,
                          specific_widths=[16], dropout=0.0)
    train(ranker, pool, mixed, config=TrainConfig(epochs=80, batch_tasks=8, lr=3e-3), progress=False)
    for kind in (False, True):
        assert validate(ranker, pool, [t for t in mixed if t.regression == kind], ks=[0])[0] > 0.95


def test_image_attributes_match_their_formulas():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    got = image_attributes(task_from_arrays(images, np.arange(5) % 2))
    rgb = images.astype(np.float64) / 255
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    expected = np.stack([y.mean((1, 2)), y.std((1, 2)), (rgb.max(-1) - rgb.min(-1)).mean((1, 2)),
                         (r - g).mean((1, 2)), (b - (r + g) / 2).mean((1, 2))], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_regression_tasks_regress_a_varying_attribute_and_are_probed_by_r2(tmp_path, monkeypatch):
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    monkeypatch.setenv("HF_SPIDER_CACHE", str(tmp_path))
    pool, _, _ = _synthetic_pool()
    rng = np.random.default_rng(1)
    pool.attributes = np.stack([rng.normal(size=len(pool.labels)), np.zeros(len(pool.labels))], 1)  # 2nd: grey
    tasks = sample_tasks(pool, 30, validation=False, regression_fraction=0.5, max_classes=4, max_per_class=10)
    reg = [t for t in tasks if t.regression]
    assert 5 < len(reg) < 25 and all(len(t.rows) <= 40 for t in reg)
    for t in reg:
        np.testing.assert_array_equal(t.labels, pool.attributes[t.rows, 0])  # never the constant attribute
    probe_ground_truth(pool, reg[:1], progress=False)
    task = reg[0]
    # the probe's split is stratified by quantile bin: recompute R² on that split directly
    test = _stratified_mask(regression_bins(task.labels), 0.5, np.random.default_rng(0))
    x, y = pool.features[2][task.rows], task.labels
    scaler = StandardScaler().fit(x[~test])
    pred = Ridge(alpha=1.0).fit(scaler.transform(x[~test]), y[~test]).predict(scaler.transform(x[test]))
    r2 = 1 - ((y[test] - pred) ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum()
    assert task.ground_truth[2] == pytest.approx(r2, rel=1e-6)


def test_label_tasks_go_through_the_injected_memo_and_the_file_keeps_them(tmp_path):
    from hf_spider import scores

    pool, _, _ = _synthetic_pool(n_models=3)
    tasks = sample_tasks(pool, 2, validation=False, max_classes=3, max_per_class=6)
    memo = ScoreMemo(tmp_path / "memo.jsonl")
    label_tasks(pool, tasks, ["knn"], memo=memo, progress=False)
    direct = [scores.score("knn", features=pool.features[m][tasks[0].rows], labels=tasks[0].labels)
              for m in range(3)]
    assert tasks[0].scores[0].tolist() == pytest.approx(direct, rel=1e-12)
    lines = (tmp_path / "memo.jsonl").read_text().splitlines()
    assert len(lines) == 6 and len(memo.values) == 6  # 2 tasks x 3 models, appended as computed

    with (tmp_path / "memo.jsonl").open("a") as f:
        f.write('["torn')  # an interrupted append
    again = ScoreMemo(tmp_path / "memo.jsonl")
    assert again.values == memo.values
    planted = {key: 123.0 for key in again.values}
    again.values.update(planted)  # a memo that answers every key: nothing is recomputed
    label_tasks(pool, tasks, ["knn"], memo=again, progress=False)
    assert (tasks[0].scores == 123.0).all() and (tasks[1].scores == 123.0).all()
    again.flush()
    assert len((tmp_path / "memo.jsonl").read_text().splitlines()) == 7  # nothing new appended
    again.get("other", np.zeros((2, 2)), np.zeros(2), lambda: 4.5)
    again.flush()  # after the torn line, on a line of its own
    assert list(ScoreMemo(tmp_path / "memo.jsonl").values.values()).count(4.5) == 1


def test_sampled_tasks_respect_their_limits_and_a_barren_pool_is_refused():
    pool, _, _ = _synthetic_pool()
    pool.validation = np.arange(len(pool.labels)) % 5 == 0
    tasks = sample_tasks(pool, 25, validation=False, max_classes=3, max_per_class=7, min_per_class=4)
    assert len(tasks) == 25
    for t in tasks:
        counts = np.bincount(t.labels)
        assert 2 <= len(counts) <= 3 and counts.max() <= 7 and counts.min() >= 4  # classes numbered 0..C-1
        assert not pool.validation[t.rows].any() and len(set(t.rows.tolist())) == len(t.rows)
        assert all(len(np.unique(pool.labels[t.rows[t.labels == c]])) == 1 for c in range(len(counts)))
    with pytest.raises(InvalidInputError, match=r"only 0 of 5 validation tasks in 500 draws.* 30\+ images"):
        sample_tasks(pool, 5, validation=True, min_per_class=30)  # no class has 30 validation images


def test_ranker_round_trips_through_the_hub(api, repo_id):
    torch.manual_seed(0)
    ranker = SpiderRanker(encoder="org/encoder", encoder_dim=8, dim=16, embedding_dim=12, specific_widths=[4, 6],
                          baseline="org/baseline", default_rerank=1, label_scores=["logme", "knn"]).eval()
    ranker.default_rerank = 3  # chosen by validation after the ranker was built: saved with it
    repo = repo_id
    ranker.push_to_hub(repo)
    loaded = load_ranker(repo)  # the untrusted-input path select and bench use
    tokens, emb, spec = torch.randn(5, 8), torch.rand(7, 12), {2: torch.randn(5, 6)}
    with torch.inference_mode():
        expected = ranker(tokens, ranker.model_tokens(embeddings=emb), spec)
        got = loaded(tokens, loaded.model_tokens(embeddings=emb), spec)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert (loaded.baseline, loaded.default_rerank, loaded.label_scores) == ("org/baseline", 3, ["logme", "knn"])
    assert loaded.config == ranker.config == {
        "encoder": "org/encoder", "encoder_dim": 8, "dim": 16, "token_source": "embedding", "models": [],
        "baseline": "org/baseline", "embedding_dim": 12, "specific_widths": [4, 6], "dropout": 0.1,
        "default_rerank": 3, "label_scores": ["logme", "knn"]}
    files = {f.rfilename for f in api.model_info(repo).siblings}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)


def test_rerank_changes_only_the_top_k_order():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ranker = SpiderRanker(encoder="e", encoder_dim=8, dim=16, embedding_dim=6, specific_widths=[5], dropout=0.0)
    feats, labels, emb = rng.normal(size=(30, 8)), np.repeat(np.arange(3), 10), rng.random((12, 6))
    own = {i: rng.normal(size=(30, 5)) for i in range(12)}
    base = rank_models(ranker, feats, labels, embeddings=emb)
    calls = []
    reranked = rank_models(ranker, feats, labels, embeddings=emb, rerank=4,
                           candidate_features=lambda i: calls.append(i) or own[i])
    assert sorted(calls) == sorted(base.order[:4].tolist()) and reranked.forward_passes == 4
    assert set(reranked.order[:4]) == set(base.order[:4]) and reranked.order[4:].tolist() == base.order[4:].tolist()
    expected_head = sorted(reranked.rescored, key=lambda i: -reranked.rescored[i])
    assert reranked.order[:4].tolist() == expected_head != base.order[:4].tolist()


def test_ranker_rejects_what_it_cannot_score():
    ranker = SpiderRanker(encoder="e", encoder_dim=4, token_source="table", models=["a", "b"], specific_widths=[3])
    with pytest.raises(InvalidInputError, match="no model token"):
        ranker.model_tokens(models=["a", "zzz"])
    theta = ranker.model_tokens(models=["a", "b"])
    with pytest.raises(InvalidInputError, match="width 5"):
        ranker(torch.randn(2, 4), theta, {0: torch.randn(2, 5)})
    with pytest.raises(InvalidInputError, match="embedding_dim"):
        SpiderRanker(encoder="e", encoder_dim=4, token_source="embedding")
    ranker = SpiderRanker(encoder="org/enc", encoder_dim=4, embedding_dim=6, baseline="org/base")
    labels = np.repeat(np.arange(2), 3)
    with pytest.raises(InvalidInputError, match="4-wide features of its encoder org/enc, got 5"):
        rank_models(ranker, np.ones((6, 5)), labels, embeddings=np.ones((3, 6)))
    with pytest.raises(InvalidInputError, match="embeddings over org/base of width 6, got 7"):
        rank_models(ranker, np.ones((6, 4)), labels, embeddings=np.ones((3, 7)))
    with pytest.raises(InvalidInputError, match="NaN"):
        rank_models(ranker, np.full((6, 4), np.nan), labels, embeddings=np.ones((3, 6)))
    with pytest.raises(InvalidInputError, match=r"not one score per candidate \(3\)"):
        rank_models(ranker, np.ones((6, 4)), labels, embeddings=np.ones((3, 6)), combine_with=np.ones(4))
