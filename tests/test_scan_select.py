"""``scan`` discovers and validates published embeddings; ``select`` ranks them for a task."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURES, invoke_cli, safetensors_parameters
from huggingface_hub import HfApi

from hf_spider import scores
from hf_spider.backbones import load_backbone
from hf_spider.constants import MICRO_ZOO
from hf_spider.embedder.pipeline import embed_repo
from hf_spider.features import extract_features
from hf_spider.formats.embedding import embedding_path
from hf_spider.hub.scan import scan
from hf_spider.ranking import select_models
from hf_spider.tasks import load_task

ZOO = MICRO_ZOO / "models"
ORG = "scan-tests"
BASELINE = f"{ORG}/resnet10-animals"
MODELS = ["resnet10-wesnoth", "resnet18-emoji-google", "resnet10-glyphs", "convnext-papirus", "vit-papirus"]


@pytest.fixture(scope="module")
def published(api: HfApi) -> list[str]:
    for name in ["resnet10-animals", *MODELS]:
        api.create_repo(f"{ORG}/{name}", exist_ok=True)
        api.upload_folder(folder_path=ZOO / name, repo_id=f"{ORG}/{name}")
    api.create_repo(f"{ORG}/reference", repo_type="dataset", exist_ok=True)
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id=f"{ORG}/reference", repo_type="dataset")
    repos = [f"{ORG}/{m}" for m in MODELS]
    for repo in repos:
        embed_repo(repo, baseline=BASELINE, reference=f"{ORG}/reference", steps=200, progress=False)
    # A tagged repo with a corrupt embedding, and one tagged without any.
    card = b"---\ntags:\n- hf-spider\n---\n"
    for name, files in [("broken", {embedding_path(BASELINE): b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}"}),
                        ("no-file", {})]:
        api.create_repo(f"{ORG}/{name}", exist_ok=True)
        api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id=f"{ORG}/{name}")
        for path, data in files.items():
            api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=f"{ORG}/{name}")
    return repos


def test_scan_indexes_valid_embeddings_skips_bad_ones_and_rescans_incrementally(api, published, tmp_path):
    first = scan(BASELINE, author=ORG, index_dir=tmp_path, progress=False)
    assert sorted(e.repo_id for e in first.entries) == sorted(published)
    assert first.downloaded == 6  # five valid files and the broken one
    assert "header" in first.skipped[f"{ORG}/broken"]
    assert "no hf_spider/" in first.skipped[f"{ORG}/no-file"]
    assert f"{ORG}/resnet10-animals" not in first.skipped  # the baseline is not tagged: not listed at all

    again = scan(BASELINE, author=ORG, index_dir=tmp_path, progress=False)
    assert again.downloaded == 0
    for a, b in zip(first.entries, again.entries, strict=True):
        assert a.repo_id == b.repo_id and np.array_equal(a.vector, b.vector)

    api.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id=published[0])  # new sha
    third = scan(BASELINE, author=ORG, index_dir=tmp_path, progress=False)
    assert third.downloaded == 1  # only the changed repo (the broken file is unchanged: still invalid)
    assert sorted(e.repo_id for e in third.entries) == sorted(published)


def test_select_ranks_by_fuzzy_intersection_and_reranks_only_the_top_k(published):
    task = load_task(f"{ORG}/reference", split="test")
    plain = select_models(task, baseline=BASELINE, author=ORG, progress=False)
    assert plain.forward_passes == 0 and len(plain.candidates) == 5
    vectors = scan(BASELINE, author=ORG, progress=False).vectors
    u = plain.task_embedding.vector
    expected = sorted(((float(np.minimum(u, v).sum()), repo) for repo, v in vectors.items()), key=lambda t: -t[0])
    assert [c.repo_id for c in plain.candidates] == [repo for _, repo in expected]
    assert [c.score for c in plain.candidates] == pytest.approx([s for s, _ in expected], rel=1e-5)
    # the prior column: rank by parameter count, read by the Hub listing from the safetensors headers
    sizes = {f"{ORG}/{name}": safetensors_parameters(ZOO / name / "model.safetensors") for name in MODELS}
    by_size = sorted(sizes, key=lambda r: -sizes[r])
    assert {c.repo_id: (c.prior_rank, c.parameters) for c in plain.candidates} == {
        r: (by_size.index(r) + 1, sizes[r]) for r in sizes}

    reranked = select_models(task, baseline=BASELINE, author=ORG, rerank=2, progress=False)
    assert reranked.forward_passes == 2
    assert [c.repo_id for c in reranked.candidates[2:]] == [c.repo_id for c in plain.candidates[2:]]  # untouched
    top = reranked.candidates[:2]
    assert {c.repo_id for c in top} == {c.repo_id for c in plain.candidates[:2]}
    for c in top:
        f = extract_features(load_backbone(c.repo_id), task, progress=False)
        assert c.rerank_score == pytest.approx(scores.score("logme", features=f.features, labels=task.labels))
    assert top[0].rerank_score >= top[1].rerank_score


def test_select_cli_prints_json(published):
    result = invoke_cli("select", "--dataset", f"{ORG}/reference", "--split", "test", "--baseline", BASELINE,
                        "--author", ORG, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["rank"] for r in out["ranking"]] == [1, 2, 3, 4, 5] and out["forward_passes"] == 0
    assert set(out["skipped"]) == {f"{ORG}/broken", f"{ORG}/no-file"}
    assert set(out["timings"]) == {"task load", "scan", "baseline load", "baseline forward", "task embedding",
                                   "sweep"}
    every = json.loads(invoke_cli("select", "--dataset", f"{ORG}/reference", "--split", "test", "--baseline",
                                  BASELINE, "--author", ORG, "--rerank", "all", "--json").stdout)
    assert every["forward_passes"] == 5 and all(r["rerank_score"] is not None for r in every["ranking"])


def test_select_cli_table_few_shot(published):
    result = invoke_cli("select", "--dataset", f"{ORG}/reference", "--baseline", BASELINE, "--author", ORG,
                        "--shots", "4")
    assert result.exit_code == 0, result.output
    assert "(40 images)" in result.stdout and "published" in result.stdout and "prior rank" in result.stdout
    assert all(repo in result.stdout for repo in published)
    bad = invoke_cli("select", "--dataset", f"{ORG}/reference", "--method", "nope")
    assert bad.exit_code != 0 and str(bad.exception).startswith("unknown method 'nope'")


def _spider_ranker(n_baseline: int, **kwargs):
    import torch

    from hf_spider.spider import SpiderRanker

    torch.manual_seed(0)
    widths = sorted({load_backbone(str(ZOO / m)).feature_dim for m in MODELS})
    return SpiderRanker(encoder=BASELINE, encoder_dim=n_baseline, dim=32, baseline=BASELINE, specific_widths=widths,
                        **kwargs).eval()


def test_spider_ranks_every_published_model_including_ones_it_never_saw(published):
    """Embedding tokens: a model published after the ranker was trained is ranked with no retraining."""
    import torch

    from hf_spider.rankagg import borda
    from hf_spider.spider.tokens import class_means

    task = load_task(f"{ORG}/reference", split="test")
    entries = {e.repo_id: e for e in scan(BASELINE, author=ORG, progress=False).entries}
    base = extract_features(load_backbone(BASELINE), task, progress=False).features
    ranker = _spider_ranker(base.shape[1], embedding_dim=base.shape[1])
    spider = select_models(task, method="spider", ranker=ranker, baseline=BASELINE, author=ORG, progress=False)
    assert sorted(c.repo_id for c in spider.candidates) == sorted(published) and spider.forward_passes == 0
    repos = sorted(entries)
    with torch.inference_mode():
        direct = ranker(class_means(base, task.labels),
                        ranker.model_tokens(embeddings=torch.as_tensor(np.stack([entries[r].vector for r in repos]))))
    expected = [repos[i] for i in np.argsort(-direct.numpy(), kind="stable")]
    assert [c.repo_id for c in spider.candidates] == expected
    assert [c.score for c in spider.candidates] == pytest.approx(sorted(direct.tolist(), reverse=True), rel=1e-5)

    reranked = select_models(task, method="spider", ranker=ranker, baseline=BASELINE, author=ORG, rerank=2,
                             progress=False)
    assert reranked.forward_passes == 2 and reranked.method == "spider+rerank(k=2)"
    assert {c.repo_id for c in reranked.candidates[:2]} == set(expected[:2])
    assert [c.repo_id for c in reranked.candidates[2:]] == expected[2:]
    assert all(c.rerank_score is not None for c in reranked.candidates[:2])

    combined = select_models(task, method="spider+embedder", ranker=ranker, baseline=BASELINE, author=ORG,
                             progress=False)
    plain = select_models(task, baseline=BASELINE, author=ORG, progress=False)
    embedder = {c.repo_id: c.score for c in plain.candidates}
    mean_rank = borda(np.stack([direct.numpy(), [embedder[r] for r in repos]]))[0]
    assert [c.repo_id for c in combined.candidates] == [repos[i] for i in np.lexsort((-direct.numpy(), -mean_rank))]


def test_table_token_spider_ranks_only_its_training_zoo(published):
    task = load_task(f"{ORG}/reference", split="test")
    width = load_backbone(str(ZOO / "resnet10-animals")).feature_dim
    ranker = _spider_ranker(width, token_source="table", models=[f"zoo/{m}" for m in MODELS[:3]])
    result = select_models(task, method="spider", ranker=ranker, baseline=BASELINE, author=ORG, progress=False)
    assert sorted(c.repo_id for c in result.candidates) == sorted(f"{ORG}/{m}" for m in MODELS[:3])


def test_select_again_finds_the_baseline_features_by_commit_without_loading_it(published, monkeypatch):
    import hf_spider.backbones._factory as module

    task = load_task(f"{ORG}/reference", split="test")
    first = select_models(task, baseline=BASELINE, author=ORG, progress=False)

    def no_loading(*args, **kwargs):
        raise AssertionError("the baseline was loaded although its features are cached")

    monkeypatch.setattr(module, "load_backbone", no_loading)
    again = select_models(task, baseline=BASELINE, author=ORG, progress=False)
    assert [(c.repo_id, c.score) for c in again.candidates] == [(c.repo_id, c.score) for c in first.candidates]
    assert np.array_equal(again.task_embedding.vector, first.task_embedding.vector)


def test_a_selection_from_cached_features_never_imports_torch(published):
    """A re-run of ``select`` finds the baseline's features and the task embedding in the caches: it loads no model,
    so it does not pay for importing torch (seconds of a warm selection's wall time)."""
    import subprocess
    import sys

    task = load_task(f"{ORG}/reference", split="test")
    first = select_models(task, baseline=BASELINE, author=ORG, progress=False)  # fills the caches
    code = ("import json, sys\nfrom hf_spider.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nprint(json.dumps(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules)), "
            "file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code, "select", "--dataset", f"{ORG}/reference", "--split", "test",
                          "--baseline", BASELINE, "--author", ORG, "--json"], capture_output=True, text=True,
                         check=True, timeout=300)
    assert json.loads(run.stderr.strip().splitlines()[-1]) == []
    out = json.loads(run.stdout)
    assert [(r["repo_id"], r["score"]) for r in out["ranking"]] == [(c.repo_id, c.score) for c in first.candidates]


def test_cached_features_are_found_by_the_current_commit_only(api, repo_id):
    from hf_spider.features import cached_features

    api.create_repo(repo_id)
    api.upload_folder(folder_path=ZOO / "resnet10-wesnoth", repo_id=repo_id)
    task = load_task(str(FIXTURES / "digits-mini"), split="test")
    assert cached_features(repo_id, task) is None  # never extracted
    backbone = load_backbone(repo_id)
    extracted = extract_features(backbone, task, progress=False)
    found, weights = cached_features(repo_id, task)
    assert np.array_equal(found.features, extracted.features) and weights == backbone.weights_hash()
    assert found.revision == backbone.revision and found.from_cache
    api.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id=repo_id)  # a new commit
    assert cached_features(repo_id, task) is None


def test_scan_and_select_name_the_baselines_that_have_embeddings(published):
    scanned = json.loads(invoke_cli("scan", "--baseline", "nobody/other-baseline", "--author", ORG, "--json").stdout)
    assert scanned["embeddings"] == [] and scanned["baselines"] == {BASELINE: 6}  # 5 valid files and the broken one
    table = invoke_cli("scan", "--baseline", "nobody/other-baseline", "--author", ORG)
    assert f"Published embeddings by baseline (repos): {BASELINE} (6)" in table.stdout
    result = invoke_cli("select", "--dataset", str(FIXTURES / "digits-mini"), "--baseline", "nobody/other-baseline",
                        "--author", ORG)
    assert str(result.exception).startswith("the baseline nobody/other-baseline (the model the embeddings are over)")
    assert str(result.exception).endswith(f"by baseline (repos): {BASELINE} (6)")


def test_spider_selection_uses_the_baseline_its_ranker_records(published, tmp_path):
    """Without --baseline, --method spider ranks over the ranker's own baseline, not the default one."""
    folder = tmp_path / "ranker"
    _spider_ranker(128, token_source="embedding", embedding_dim=128).save_pretrained(folder)
    result = invoke_cli("select", "--dataset", f"{ORG}/reference", "--split", "test", "--method", "spider",
                        "--ranker", str(folder), "--author", ORG, "--rerank", "0", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert sorted(r["repo_id"] for r in out["ranking"]) == sorted(published)  # the embeddings over BASELINE


def test_a_dataset_alias_missing_from_the_hub_says_what_it_stands_for(hub):
    result = invoke_cli("select", "--dataset", "cifar100")
    from huggingface_hub import constants

    assert str(result.exception) == (f"'cifar100' stands for the Hub dataset 'uoft-cs/cifar100', which is not on the "
                                     f"Hub at {constants.ENDPOINT} (or it is gated: log in with `hf auth login`)")


def test_an_unloadable_candidate_gives_its_rerank_place_to_the_next(api):
    """select --rerank K: a candidate that cannot be loaded is skipped with its reason, the next one is re-scored
    in its place, and neither the embedder nor the spider path aborts."""
    import torch

    from hf_spider.demo import publish_zoo
    from hf_spider.spider import SpiderRanker

    baseline, repos = publish_zoo(["resnet10-glyphs", "mnv3-glyphs"], org="rerank-tests")  # precomputed vectors
    task = load_task(str(FIXTURES / "digits-mini"), split="test")
    first = select_models(task, baseline=baseline, author="rerank-tests", progress=False).candidates[0].repo_id
    api.delete_file("model.safetensors", repo_id=first)  # now pickle-only: refused without allow_pickle
    api.upload_file(path_or_fileobj=b"not loaded", path_in_repo="pytorch_model.bin", repo_id=first)

    reranked = select_models(task, baseline=baseline, author="rerank-tests", rerank=1, progress=False)
    assert reranked.skipped == {first: f"{first}@{api.model_info(first).sha[:8]} only has pickle weights "
                                       "(pytorch_model.bin), which can run arbitrary code when loaded; pass "
                                       "allow_pickle=True if you trust this repo"}
    assert reranked.forward_passes == 1 and [c.repo_id for c in reranked.candidates] == [
        r for r in repos if r != first]
    assert reranked.candidates[0].rerank_score is not None

    torch.manual_seed(0)
    widths = sorted({load_backbone(str(ZOO / m)).feature_dim for m in ("resnet10-glyphs", "mnv3-glyphs")})
    ranker = SpiderRanker(encoder=baseline, encoder_dim=128, dim=32, baseline=baseline, specific_widths=widths,
                          token_source="embedding", embedding_dim=128).eval()  # resnet18-all-mix: N = 128
    spider = select_models(task, method="spider", ranker=ranker, baseline=baseline, author="rerank-tests", rerank=2,
                           progress=False)
    assert first in spider.skipped and first not in [c.repo_id for c in spider.candidates]
    assert spider.forward_passes == 1  # the budget went to the one that loads
