"""Inflated embeddings (issue 9): flagged by ``select``, failed by ``verify``; honest ones pass ``verify``.

An owner embeds their model honestly (``embed_repo(push=False)``), then publishes an inflated vector
with the honest metadata: all ones, or the honest vector times 3 clipped to [0, 1].
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURES, invoke_cli
from huggingface_hub import HfApi
from test_scan_select import ZOO

from hf_spider.embedder.pipeline import embed_repo
from hf_spider.hub.embeddings import publish_embedding
from hf_spider.ranking import select_models
from hf_spider.tasks import load_task
from hf_spider.verify import MAX_MASS_EXCESS, verify_repo

ORG = "inflate-tests"
BASELINE = f"{ORG}/resnet10-animals"
REFERENCE = f"{ORG}/reference"
HONEST = f"{ORG}/resnet10-wesnoth"
ALL_ONES, SCALED = f"{ORG}/resnet10-glyphs", f"{ORG}/convnext-papirus"
INFLATE = {ALL_ONES: lambda v: np.ones_like(v), SCALED: lambda v: np.clip(v * 3, 0, 1)}
# 200 steps leave this small reference's masks nearly binary, where v·3 adds little; 1,000 spread them
STEPS = {HONEST: 200, ALL_ONES: 200, SCALED: 1000}


@pytest.fixture(scope="module")
def repos(api: HfApi) -> dict[str, np.ndarray]:
    """Every repo of the org with its honest vector (as computed by its owner)."""
    for repo in [BASELINE, HONEST, *INFLATE]:
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=ZOO / repo.split("/")[1], repo_id=repo)
    api.create_repo(REFERENCE, repo_type="dataset", exist_ok=True)
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id=REFERENCE, repo_type="dataset")
    honest = {}
    for repo in [HONEST, *INFLATE]:
        result = embed_repo(repo, baseline=BASELINE, reference=REFERENCE, max_per_class=10, steps=STEPS[repo],
                            push=repo == HONEST, progress=False)
        honest[repo] = result.vector
        if repo in INFLATE:
            publish_embedding(repo, INFLATE[repo](result.vector), result.metadata)
    return honest


def test_select_flags_inflated_embeddings_and_honest_ones_are_not_flagged(repos):
    task = load_task(REFERENCE, split="test")
    selection = select_models(task, baseline=BASELINE, author=ORG, progress=False)
    by_repo = {c.repo_id: c for c in selection.candidates}
    assert selection.candidates[0].repo_id == ALL_ONES  # the attack works: all ones wins the ranking...
    assert selection.candidates[0].score == pytest.approx(float(selection.task_embedding.vector.sum()), rel=1e-5)
    assert [f.split(":")[0] for f in by_repo[ALL_ONES].flags] == ["mass", "saturated"]  # ...but is flagged
    assert [f.split(":")[0] for f in by_repo[SCALED].flags] == ["saturated"]
    assert by_repo[HONEST].flags == []
    ranking = selection.to_json()["ranking"]
    assert {r["repo_id"]: r["flags"] for r in ranking}[ALL_ONES] == by_repo[ALL_ONES].flags


def test_verify_fails_inflated_embeddings_passes_honest_ones_and_select_keeps_the_verified(repos, api: HfApi):
    report = verify_repo(HONEST, baseline=BASELINE, progress=False)
    assert report.passed and report.reasons == [] and report.flags == []
    assert report.max_abs == 0.0  # same inputs, seed and settings on a CPU: bit-identical
    for repo, inflate in INFLATE.items():
        report = verify_repo(repo, baseline=BASELINE, progress=False)
        honest = repos[repo]
        assert not report.passed and report.reasons[0].endswith(": inflated")
        assert report.mean_abs == pytest.approx(float(np.abs(inflate(honest) - honest).mean()), abs=1e-6)
        assert report.mass_excess == pytest.approx(report.mean_abs, abs=1e-6)
        assert report.mass_excess > 2 * MAX_MASS_EXCESS
        assert report.flags  # the published vector's plausibility flags are reported too

    task = load_task(REFERENCE, split="test")
    verified = select_models(task, baseline=BASELINE, author=ORG, verified_only=True, progress=False)
    assert [c.repo_id for c in verified.candidates] == [HONEST]
    assert all("not verified" in verified.skipped[r] for r in INFLATE)
    flagged = {c.repo_id: c.flags for c in select_models(task, baseline=BASELINE, author=ORG, progress=False)
               .candidates}
    assert all(flagged[r][-1].startswith("verify-failed: the published vector claims") for r in INFLATE)

    # a new commit makes the record stale; new weights make the embedding describe another model
    api.upload_file(path_or_fileobj=b"\0" * 16, path_in_repo="extra.safetensors", repo_id=HONEST)
    again = select_models(task, baseline=BASELINE, author=ORG, verified_only=True, progress=False)
    assert again.candidates == [] and "not verified" in again.skipped[HONEST]
    changed = verify_repo(HONEST, baseline=BASELINE, progress=False)
    assert not changed.passed and changed.reasons == [
        "the model's weights changed since the embedding was computed: it describes another model"]


def test_verify_cli_exits_1_with_the_differences(repos):
    result = invoke_cli("verify", ALL_ONES, "--baseline", BASELINE, "--json")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["passed"] is False and out["mass_excess"] > 0.1 and out["repo_id"] == ALL_ONES
    table = invoke_cli("select", "--dataset", REFERENCE, "--split", "test", "--baseline", BASELINE, "--author", ORG)
    assert table.exit_code == 0, table.output
    assert "flags" in table.stdout and f"flagged {ALL_ONES}: mass: mean mask 1.000" in table.stdout
