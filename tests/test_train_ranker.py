"""`hf_spider train-ranker` end to end on three bundled zoo models and the digits-mini fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, invoke_cli

from hf_spider.constants import MICRO_ZOO
from hf_spider.errors import InvalidInputError
from hf_spider.spider.hub import load_ranker
from hf_spider.spider.recipe import RERANK_TOLERANCE, RankerRecipe, _label_candidates, _mean_rank, train_ranker
from hf_spider.spider.training import SampledTask, TrainConfig, choose_label_scores
from hf_spider.tasks import load_task

ZOO = MICRO_ZOO / "models"
MODELS = ("resnet10-tiny-animals", "mnv3-glyphs", "resnet10-glyphs")


def _train_ranker(*args: str):
    zoo = [arg for name in MODELS for arg in ("--zoo", str(ZOO / name))]
    pool = [arg for split in ("train", "test") for arg in ("--pool", f"{FIXTURES / 'digits-mini'}:{split}")]
    return invoke_cli("train-ranker", *zoo, *pool, "--encoder", str(ZOO / MODELS[0]), *args)


def test_train_ranker_chooses_supervision_and_budget_on_validation_and_saves_a_loadable_ranker(tmp_path):
    out = tmp_path / "ranker"
    run = _train_ranker("--token-source", "table", "--train-tasks", "12", "--validation-tasks", "4",
                        "--epochs", "3", "--names-org", "my-org", "--out", str(out), "--json")
    assert run.exit_code == 0, run.output[-3000:]
    report = json.loads(run.stdout)
    assert report["models"] == [f"my-org/{m}" for m in MODELS]
    quality = report["label_quality"]  # "logme+knn" -> validation τ of that aggregate (singletons for reference)
    best = max((k for k in quality if "+" in k), key=lambda k: (quality[k], -k.count("+")))  # ties: fewer scores
    assert "+".join(report["label_scores"]) == best and len(quality) == 5 + 10 + 10 + 5  # subsets of 1, 2, 3, 4
    taus = {int(k): v for k, v in report["validation_tau"].items()}
    assert sorted(taus) == list(range(11)) and len(report["loss"]) == 3
    best = max(taus.values())  # the budget: the cheapest k within the tolerance of the best validation τ
    assert report["default_rerank"] == min(k for k, v in taus.items() if v >= best - RERANK_TOLERANCE)
    ranks = report["mean_rank"]  # positions 0..M-1 in each training task's Copeland order, averaged
    assert sorted(ranks) == sorted(report["models"]) and all(0 <= r <= len(MODELS) - 1 for r in ranks.values())
    assert sum(ranks.values()) == pytest.approx(len(MODELS) * (len(MODELS) - 1) / 2, abs=0.01)

    ranker = load_ranker(str(out))
    assert ranker.default_rerank == report["default_rerank"] and ranker.models == report["models"]
    assert ranker.encoder == f"my-org/{MODELS[0]}"  # the encoder is a zoo folder: recorded by its Hub name
    assert ranker.label_scores == report["label_scores"] and ranker.specific_widths  # the zoo's feature widths
    with torch.inference_mode():
        scores = ranker(torch.randn(4, ranker.task_proj.in_features), ranker.model_tokens(models=ranker.models))
    assert scores.shape == (3,) and np.isfinite(scores.numpy()).all()
    assert "Model Spider" in (out / "README.md").read_text()

    # the same recipe in this process, after other draws from torch's global generator: the same ranker
    torch.rand(1000)
    recipe = RankerRecipe(encoder=str(ZOO / MODELS[0]), token_source="table", train_tasks=12, validation_tasks=4,
                          training=TrainConfig(epochs=3))
    pool = [load_task(str(FIXTURES / "digits-mini"), split=split) for split in ("train", "test")]
    again, _ = train_ranker([str(ZOO / m) for m in MODELS], pool, recipe, names=report["models"], progress=False)
    expected = ranker.state_dict()
    assert all(torch.equal(t, expected[k]) for k, t in again.state_dict().items())


def test_train_ranker_refuses_an_unknown_token_source_before_any_work(tmp_path):
    run = _train_ranker("--token-source", "tabel", "--out", str(tmp_path / "ranker"))
    assert str(run.exception) == "token_source must be one of ('table', 'embedding'), got 'tabel'"
    assert "zoo features" not in run.output
    assert not (tmp_path / "ranker").exists()


def test_train_ranker_without_a_pool_says_what_it_needs(monkeypatch):
    monkeypatch.delenv("HF_SPIDER_OFFLINE_DATA", raising=False)
    run = invoke_cli("train-ranker", "--zoo", str(ZOO / MODELS[0]))
    assert str(run.exception) == (
        "train-ranker needs a pool of labelled datasets: --pool DATASET[:split] ... (Hub ids or folders), or "
        "--data-root FOLDER (or HF_SPIDER_OFFLINE_DATA) holding the offline src-* and aux-* folders")


def test_training_inputs_resolve_names_under_the_data_root_and_the_defaults():
    from hf_spider.spider import training_inputs

    inputs = training_inputs(zoo=[str(ZOO)], exclude=["vit-glyphs"], pool=["digits-mini:test"], data_root=FIXTURES,
                             names_org="my-org")
    assert len(inputs.models) == 26 and str(ZOO / "vit-glyphs") not in inputs.models
    assert inputs.names == [f"my-org/{Path(m).name}" for m in inputs.models]
    assert [(len(t), t.name) for t in inputs.datasets] == [(len(load_task(str(FIXTURES / "digits-mini"),
                                                                          split="test")), inputs.datasets[0].name)]
    assert inputs.encoder == str(ZOO / "resnet18-all-mix")
    assert (inputs.embedder.baseline, inputs.embedder.reference) == (inputs.encoder, str(FIXTURES / "reference-mix"))


def test_mean_rank_prior_averages_each_models_position_in_the_training_orders():
    empty = np.zeros(0, dtype=int)
    tasks = [SampledTask(empty, empty, scores=np.array([[0.3, 0.1, 0.2], [0.9, 0.1, 0.5]])),  # order a, c, b
             SampledTask(empty, empty, scores=np.array([[0.1, 0.2, 0.3]]))]  # order c, b, a
    assert _mean_rank(["a", "b", "c"], tasks) == {"a": 1.0, "b": 1.5, "c": 0.5}


def test_supervision_candidates_drop_source_prob_scores_when_a_model_has_no_head():
    probs = np.full((4, 2), 0.5)
    assert _label_candidates(("logme", "leep", "knn", "nce"), [probs, probs]) == ("logme", "leep", "knn", "nce")
    assert _label_candidates(("logme", "leep", "knn", "nce"), [probs, None]) == ("logme", "knn")
    with pytest.raises(InvalidInputError, match="features-only score"):
        _label_candidates(("leep", "nce"), [None, probs])


def test_choosing_the_supervision_needs_a_classification_validation_task():
    """A pool too small for classification validation tasks (all regression) was a silent NaN choice."""
    rows = np.arange(4)
    regression = [SampledTask(rows, np.linspace(0, 1, 4), regression=True, scores=np.ones((2, 3)),
                              ground_truth=np.array([0.1, 0.2, 0.3]))]
    with pytest.raises(InvalidInputError, match="no classification validation task"):
        choose_label_scores(regression, ["logme", "knn"])
    classification = SampledTask(rows, np.array([0, 0, 1, 1]), scores=np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]),
                                 ground_truth=np.array([0.1, 0.2, 0.3]))
    best, quality = choose_label_scores([*regression, classification], ["logme", "knn"], sizes=(2,))
    assert best == ("logme", "knn") and quality[("logme",)] == pytest.approx(1.0) and quality[("knn",)] < 0
