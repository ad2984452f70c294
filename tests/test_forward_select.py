"""``select --models``: Hub models that published nothing, ranked by a prior and a forward-based score."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import FIXTURES, invoke_cli, safetensors_parameters
from huggingface_hub import HfApi

from hf_spider import scores
from hf_spider.backbones import load_backbone
from hf_spider.constants import MICRO_ZOO
from hf_spider.features import extract_features
from hf_spider.ranking import rank_candidates
from hf_spider.tasks import load_task

ZOO = MICRO_ZOO / "models"
ORG = "forward-tests"
MODELS = ["resnet10-wesnoth", "resnet18-emoji-google", "convnext-glyphs", "mnv3-glyphs", "vit-papirus"]
DATASET = str(FIXTURES / "digits-mini")


@pytest.fixture(scope="module")
def zoo(api: HfApi) -> list[str]:
    """Five micro-zoo models pushed as they are (no embedding), and a repo holding only pickle weights."""
    for name in MODELS:
        api.create_repo(f"{ORG}/{name}", exist_ok=True)
        api.upload_folder(folder_path=ZOO / name, repo_id=f"{ORG}/{name}")
    api.create_repo(f"{ORG}/pickled", exist_ok=True)
    api.upload_file(path_or_fileobj=b"not really a pickle", path_in_repo="pytorch_model.bin", repo_id=f"{ORG}/pickled")
    return [f"{ORG}/{m}" for m in MODELS]


def _parameters(name: str) -> int:
    return safetensors_parameters(ZOO / name / "model.safetensors")


def test_select_models_ranks_by_logme_computed_directly_and_skips_bad_candidates(zoo):
    args = ["select", "--dataset", DATASET, "--split", "test", "--models", ",".join(zoo[:3]),
            "--models", f"{zoo[3]},{ORG}/pickled", "--models", zoo[4], "--models", f"{ORG}/missing", "--score", "logme"]
    result = invoke_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)

    task = load_task(DATASET, split="test")
    direct = {}
    for repo in zoo:
        f = extract_features(load_backbone(repo), task, progress=False)
        direct[repo] = scores.score("logme", features=f.features, labels=task.labels)
    assert [r["repo_id"] for r in out["ranking"]] == sorted(direct, key=lambda r: -direct[r])
    assert [r["score"] for r in out["ranking"]] == pytest.approx([direct[r["repo_id"]] for r in out["ranking"]],
                                                                 abs=1e-6)
    sizes = {f"{ORG}/{m}": _parameters(m) for m in MODELS}
    assert {r["repo_id"]: r["parameters"] for r in out["ranking"]} == sizes
    by_size = sorted(sizes, key=lambda r: -sizes[r])
    assert {r["repo_id"]: r["prior_rank"] for r in out["ranking"]} == {r: by_size.index(r) + 1 for r in sizes}
    assert out["forward_passes"] == 5 and out["method"] == "prior+logme(k=5)"
    assert out["skipped"] == {
        f"{ORG}/missing": "not found on the Hub (or private: `hf auth login`)",
        f"{ORG}/pickled": f"{ORG}/pickled@{HfApi().model_info(f'{ORG}/pickled').sha[:8]} only has pickle weights "
                          "(pytorch_model.bin), which can run arbitrary code when loaded; pass allow_pickle=True if "
                          "you trust this repo"}

    table = invoke_cli(*args)
    assert table.exit_code == 0, table.output
    assert "prior rank" in table.output and "parameters" in table.output
    assert f"skipped {ORG}/missing: not found on the Hub (or private: `hf auth login`)" in table.output


def test_the_budget_scores_only_the_priors_top_k(zoo):
    task = load_task(DATASET, split="test")
    result = rank_candidates(task, zoo, rerank=2, progress=False)
    sizes = {f"{ORG}/{m}": _parameters(m) for m in MODELS}
    by_size = sorted(sizes, key=lambda r: -sizes[r])
    assert result.forward_passes == 2
    assert {c.repo_id for c in result.candidates[:2]} == set(by_size[:2])
    assert [c.repo_id for c in result.candidates[2:]] == by_size[2:]  # unscored, in the prior's order
    assert all(c.score is None for c in result.candidates[2:])
    assert result.candidates[0].score >= result.candidates[1].score

    prior_only = rank_candidates(task, zoo, rerank=0, progress=False)
    assert [c.repo_id for c in prior_only.candidates] == by_size and prior_only.forward_passes == 0


def test_a_candidate_that_fails_gives_its_place_in_the_budget_to_the_next(api, zoo):
    sizes = {f"{ORG}/{m}": _parameters(m) for m in MODELS}
    biggest = max(sizes, key=sizes.get)
    broken = f"{ORG}/broken-config"  # the biggest weights (prior rank 1), but a config no library reads
    api.create_repo(broken, exist_ok=True)
    api.upload_file(path_or_fileobj=ZOO / biggest.split("/")[1] / "model.safetensors",
                    path_in_repo="model.safetensors", repo_id=broken)
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=broken)
    task = load_task(DATASET, split="test")
    result = rank_candidates(task, [broken, *zoo], rerank=2, progress=False)
    by_size = sorted(sizes, key=lambda r: -sizes[r])
    assert list(result.skipped) == [broken] and result.forward_passes == 2
    assert {c.repo_id for c in result.candidates[:2]} == set(by_size[:2])  # the next two in the prior's order


def test_candidates_from_a_hub_query_and_refusals_before_work(zoo):
    task = load_task(DATASET, split="test")
    listed = rank_candidates(task, author=ORG, rerank=0, progress=False)
    assert {*zoo, f"{ORG}/pickled"} <= {c.repo_id for c in listed.candidates}  # every repo of the author
    named = rank_candidates(task, [zoo[0], "resnet18"], rerank=0, progress=False)  # a typo, not random weights
    assert [c.repo_id for c in named.candidates] == [zoo[0]]
    assert named.skipped == {"resnet18": "not a Hub repo id (org/name) or a folder"}
    folder = rank_candidates(task, [f"local-dir:{ZOO / MODELS[0]}"], rerank=0, progress=False).candidates
    assert [c.parameters for c in folder] == [_parameters(MODELS[0])]  # a folder's prior: its safetensors headers
    result = invoke_cli("select", "--dataset", DATASET, "--models", zoo[0], "--score", "logmee")
    assert "did you mean 'logme'" in str(result.exception)
    result = invoke_cli("select", "--dataset", DATASET, "--models", zoo[0], "--rerank", "three")
    assert str(result.exception) == "--rerank expects a number of candidates or `all`, got 'three'"


def test_token_reads_private_repos(api, monkeypatch):
    private = f"{ORG}/private-model"
    api.create_repo(private, private=True, exist_ok=True)
    api.upload_folder(folder_path=ZOO / MODELS[0], repo_id=private)
    token = os.environ["HF_TOKEN"]
    monkeypatch.delenv("HF_TOKEN")
    args = ["select", "--dataset", DATASET, "--split", "test", "--models", private, "--rerank", "0", "--json"]
    anonymous = json.loads(invoke_cli(*args).stdout)
    assert anonymous["ranking"] == [] and anonymous["skipped"] == {
        private: "not found on the Hub (or private: `hf auth login`)"}
    with_token = json.loads(invoke_cli(*args, "--token", token).stdout)
    assert [r["repo_id"] for r in with_token["ranking"]] == [private] and with_token["skipped"] == {}


def test_published_embeddings_join_the_prior_in_the_first_stage(zoo):
    """Over a baseline, candidates that published an embedding get the embedder's score, min-sum of the task and model
    vectors, and the first stage orders everyone by the mean of their normalised prior and embedder ranks."""
    from hf_spider.demo import publish_zoo
    from hf_spider.formats.embedding import parse_embedding
    from hf_spider.ranking import select_models

    baseline, published = publish_zoo(["resnet18-icons-mix", "vit-wesnoth"], org="forward-published")
    task = load_task(DATASET, split="test")
    candidates = [*zoo[:3], *published]
    result = rank_candidates(task, candidates, rerank=0, baseline=baseline, progress=False)
    assert result.method == "prior+embedder" and result.forward_passes == 0

    u = select_models(task, baseline=baseline, author="forward-published", progress=False).task_embedding.vector
    vectors = {repo: parse_embedding((MICRO_ZOO / "embeddings" / f"{repo.split('/')[1]}.safetensors").read_bytes())[0]
               for repo in published}
    direct = {repo: float(np.minimum(u, v).sum()) for repo, v in vectors.items()}
    got = {c.repo_id: c.embedder_score for c in result.candidates}
    assert {r: got[r] for r in published} == pytest.approx(direct, abs=1e-4)
    assert all(got[r] is None for r in zoo[:3])

    sizes = {r: _parameters(r.split("/")[1]) for r in candidates}
    prior = {r: (i + 1) / 5 for i, r in enumerate(sorted(candidates, key=lambda r: (-sizes[r], r)))}
    embedder = {r: (i + 1) / 2 for i, r in enumerate(sorted(direct, key=lambda r: -direct[r]))}
    mean = {r: (prior[r] + embedder[r]) / 2 if r in embedder else prior[r] for r in candidates}
    assert [c.repo_id for c in result.candidates] == sorted(candidates, key=lambda r: (mean[r], prior[r]))
    assert [c.repo_id for c in result.candidates] != sorted(candidates, key=prior.get)  # the embedder moved some
    assert {c.repo_id: c.prior_rank for c in result.candidates} == {r: round(prior[r] * 5) for r in candidates}

    table = invoke_cli("select", "--dataset", DATASET, "--split", "test", "--models", ",".join(candidates),
                       "--baseline", baseline, "--rerank", "0")
    assert table.exit_code == 0, table.output
    assert "embedder" in table.output and "by prior+embedder" in table.output
