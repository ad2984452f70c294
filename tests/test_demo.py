"""``hf_spider demo``: the zoo published with truthful metadata, ranked against the ground truth, figures written."""

from __future__ import annotations

import json
import sys

import numpy as np
import PIL.Image
import pytest
from conftest import invoke_cli
from huggingface_hub import HfApi
from rich.console import Console
from scipy import stats

from hf_spider.backbones import load_backbone
from hf_spider.demo import DEMO_DATA, RANKER_DIR, ZOO_DIR, publish_zoo, render, run_demo, run_local_demo
from hf_spider.errors import HfSpiderError
from hf_spider.formats.embedding import parse_embedding
from hf_spider.hub.embeddings import fetch_embedding
from hf_spider.ranking import METHODS

ORG = "demo-tests"
MODELS = ["resnet18-all-mix", "resnet10-wide-clipart", "vit-wesnoth", "mnv3-glyphs", "convnext-clipart"]
BASELINE = f"{ORG}/resnet18-all-mix"


@pytest.fixture(scope="module")
def demo(hub, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    steps: list[tuple[str, int | None]] = []
    result = run_demo(out, models=MODELS, org=ORG, step=lambda d, t: steps.append((d, t)) or (lambda: None))
    return result, out, steps


def test_demo_ranks_the_zoo_and_compares_with_the_ground_truth(demo):
    result, out, steps = demo
    selection = result.selections["embedder"]
    order = [c.repo_id for c in selection.candidates]
    assert sorted(order) == sorted(f"{ORG}/{m}" for m in MODELS)
    assert selection.forward_passes == 3
    reranked = [c.rerank_score for c in selection.candidates]
    assert None not in reranked[:3] and reranked[3:] == [None, None] and reranked[:3] == sorted(reranked[:3])[::-1]
    truth = json.loads((DEMO_DATA / "ground_truth.json").read_text())["models"]
    assert result.ground_truth == {f"{ORG}/{m}": truth[m] for m in MODELS}
    gt = [truth[r.split("/")[1]] for r in order]
    assert result.metrics["embedder"]["regret_top1"] == pytest.approx(100 * (max(gt) - gt[0]))
    assert result.metrics["embedder"]["regret_top3"] == pytest.approx(100 * (max(gt) - max(gt[:3])))
    position = -np.arange(len(order), dtype=float)  # the final order as scores: first = highest
    assert result.metrics["embedder"]["tau_sfda"] == pytest.approx(stats.weightedtau(gt, position).statistic)
    assert result.metrics["embedder"]["tau_spider"] == pytest.approx(
        stats.weightedtau(gt, position, rank=None).statistic)
    ranking_steps = [name for name, _ in steps if name.startswith("Ranking: ")]
    assert steps[0] == ("Publishing the zoo and its embeddings", 5) and len(steps) == 3 + len(ranking_steps)
    assert len(ranking_steps) == (len(METHODS) if (RANKER_DIR / "model.safetensors").exists() else 1)

    assert [f.name for f in result.files] == ["ranking.png", "spider.png", "demo.json"]
    for name in ("ranking.png", "spider.png"):
        with PIL.Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 400
    saved = json.loads((out / "demo.json").read_text())
    assert [r["repo_id"] for r in saved["selections"]["embedder"]["ranking"]] == order

    console = Console(record=True, width=160)
    render(result, console)
    text = console.export_text()
    assert "true accuracy" in text and "hf_spider select --dataset" in text
    best = max(result.ground_truth, key=result.ground_truth.__getitem__)
    assert f"true best: {best}, {100 * result.ground_truth[best]:.1f}%" in text
    for repo in order:
        assert repo.split("/")[1] in text


def test_demo_publishes_truthful_metadata_and_reuses_what_is_there(demo, api):
    repo = f"{ORG}/vit-wesnoth"
    published = fetch_embedding(repo, BASELINE)
    vector, precomputed = parse_embedding((ZOO_DIR / "embeddings" / "vit-wesnoth.safetensors").read_bytes())
    assert np.array_equal(published.vector, vector)
    meta = published.metadata
    assert (meta["model"], meta["baseline"]) == (repo, BASELINE)
    model_commits = api.list_repo_commits(repo)  # newest first: the embedding, the weights, the repo's creation
    assert meta["model_revision"] == model_commits[1].commit_id
    assert meta["baseline_revision"] in [c.commit_id for c in api.list_repo_commits(BASELINE)]
    assert meta["baseline_weights"] == f"sha256:{load_backbone(BASELINE).weights_hash()}"
    assert {k: meta[k] for k in ("reference", "reference_fingerprint", "model_weights", "fidelity_to", "steps")} == {
        k: precomputed[k] for k in ("reference", "reference_fingerprint", "model_weights", "fidelity_to", "steps")}

    repos = [f"{ORG}/{m}" for m in MODELS]
    before = {r: len(api.list_repo_commits(r)) for r in repos}
    assert publish_zoo(MODELS, org=ORG) == (BASELINE, repos)
    assert {r: len(api.list_repo_commits(r)) for r in repos} == before  # everything was already there


def test_demo_command_serves_its_own_hub_and_prints_json(tmp_path, hub):
    # in process: huggingface_hub, timm and datasets are imported and point at the session's Hub; the demo's
    # fresh process uses its own Hub, under --root
    assert "huggingface_hub" in sys.modules
    out, root = tmp_path / "out", tmp_path / "root"
    result = invoke_cli("demo", "--json", "--out", str(out), "--root", str(root),
                        "--model", "resnet10-wide-clipart", "--model", "vit-wesnoth")
    assert result.exit_code == 0, result.exception
    report = json.loads(result.stdout)
    ranking = report["selections"]["embedder"]["ranking"]
    assert sorted(r["repo_id"] for r in ranking) == [f"hf-spider-demo/{m}" for m in ("resnet10-wide-clipart",
                                                                                     "vit-wesnoth")]
    assert report["selections"]["embedder"]["forward_passes"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["demo.json", "ranking.png", "spider.png"]
    published = {p.name for p in (root / "hub" / "repos" / "models" / "hf-spider-demo").iterdir()}
    assert {"resnet10-wide-clipart", "vit-wesnoth", "resnet18-all-mix"} <= published
    assert not list(HfApi(endpoint=hub.url).list_models(author="hf-spider-demo"))  # nothing on the session's Hub


def test_a_demo_error_is_raised_here_with_the_demo_process_traceback(tmp_path):
    with pytest.raises(HfSpiderError, match="unknown-model") as caught:
        run_local_demo(tmp_path / "out", root=tmp_path / "root", models=["unknown-model"])
    assert any("in the demo process" in note and "Traceback" in note for note in caught.value.__notes__)
