"""``hf_spider embed`` end to end on the local Hub: one commit, a valid file, the card kept, no-op re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, invoke_cli
from huggingface_hub import HfApi, ModelCard, hf_hub_download

from hf_spider.constants import MICRO_ZOO
from hf_spider.errors import InvalidArtifactError
from hf_spider.formats.embedding import embedding_path, parse_embedding, serialize_embedding
from hf_spider.hub.embeddings import fetch_embedding

ZOO = MICRO_ZOO / "models"
BASELINE, MODEL = "resnet10-animals", "resnet10-wesnoth"


@pytest.fixture(scope="module")
def embed_repos(api: HfApi) -> dict[str, str]:
    repos = {}
    for name in (BASELINE, MODEL):
        repo = f"embed-tests/{name}"
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=ZOO / name, repo_id=repo)
        repos[name] = repo
    owner_card = ("---\nlicense: mit\nlibrary_name: timm\ntags:\n- image-classification\n---\n"
                  "# My model\n\nOwner text.\n")
    api.upload_file(path_or_fileobj=owner_card.encode(), path_in_repo="README.md", repo_id=repos[MODEL])
    api.create_repo("embed-tests/reference", repo_type="dataset", exist_ok=True)
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id="embed-tests/reference", repo_type="dataset")
    return repos


def _embed(*args: str):
    return invoke_cli("embed", *args, "--json")


def test_embed_publishes_one_commit_and_reruns_are_no_ops(api: HfApi, embed_repos):
    model, baseline = embed_repos[MODEL], embed_repos[BASELINE]
    args = [model, "--baseline", baseline, "--reference", "embed-tests/reference:train", "--steps", "300"]
    before = [c.commit_id for c in api.list_repo_commits(model)]
    result = _embed(*args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["up_to_date"] is False
    commits = api.list_repo_commits(model)
    assert len(commits) == len(before) + 1  # file and card in ONE commit

    info = api.model_info(model)
    assert "hf-spider" in info.tags and "image-classification" in info.tags
    card = ModelCard.load(model)
    assert card.data.license == "mit" and "Owner text." in card.text and "hf_spider model embedding" in card.text
    assert "pip install hf_spider" not in card.text  # no PyPI package of that name: the card must not promise one

    published = fetch_embedding(model, baseline, expected={"baseline": baseline})
    meta = published.metadata
    assert published.vector.shape == (128,) and published.vector.dtype == np.float32  # resnet10-animals: N=128
    assert published.vector.min() >= 0 and published.vector.max() <= 1
    assert meta["model_revision"] == before[0] and meta["steps"] == "300"
    assert meta["reference"] == "embed-tests/reference" and meta["reference_split"] == "train"
    assert 0 < float(meta["fidelity_to"]) <= 1 and 0 < float(meta["fidelity_from"]) <= 1

    again = _embed(*args)  # unchanged model and baseline: nothing recomputed, nothing pushed
    assert json.loads(again.stdout)["up_to_date"] is True
    assert len(api.list_repo_commits(model)) == len(commits)

    pr = json.loads(_embed(*args, "--force", "--create-pr").stdout)
    assert pr["pr_url"].endswith("/discussions/1")
    assert api.model_info(model).sha == info.sha  # main untouched by the PR
    pr_file = hf_hub_download(model, embedding_path(baseline), revision="refs/pr/1")
    assert parse_embedding(Path(pr_file).read_bytes())[1]["model"] == model


def _valid_metadata() -> dict[str, str]:
    """Well-formed metadata for a hand-made embedding file (every required key, values that parse)."""
    return {"format_version": "1", "baseline": "org/base", "baseline_revision": "a" * 40, "reference": "org/ref",
            "reference_split": "train", "reference_fingerprint": "b" * 64, "model": "org/model",
            "model_revision": "c" * 40, "model_weights": "d" * 64, "steps": "100", "seed": "0",
            "fidelity_to": "0.5", "fidelity_from": "0.5", "tool_version": "0.1.0",
            "created_at": "2026-01-01T00:00:00+00:00"}


@pytest.mark.parametrize("mutate, message", [
    (lambda v, m: (v + 1, m), "lie in \\[0, 1\\]"),
    (lambda v, m: (np.where(np.arange(len(v)) == 0, np.nan, v), m), "NaN"),
    (lambda v, m: (v, {k: x for k, x in m.items() if k != "baseline"}), "lacks baseline"),
    (lambda v, m: (v, {**m, "format_version": "99"}), "format version"),
])
def test_parse_embedding_rejects_bad_vectors_and_metadata(mutate, message):
    from safetensors.numpy import save

    vector, metadata = mutate(np.full(8, 0.5, dtype=np.float32), _valid_metadata())
    data = save({"embedding": vector.astype(np.float32)}, metadata=metadata)
    with pytest.raises(InvalidArtifactError, match=message):
        parse_embedding(data)


def test_parse_embedding_rejects_wrong_tensors_truncation_and_expectations():
    good = serialize_embedding(np.linspace(0, 1, 8, dtype=np.float32), _valid_metadata())
    assert parse_embedding(good)[0].tolist() == pytest.approx(np.linspace(0, 1, 8).tolist())
    with pytest.raises(InvalidArtifactError, match="truncated"):
        parse_embedding(good[:-3])
    with pytest.raises(InvalidArtifactError, match="header"):
        parse_embedding((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(InvalidArtifactError, match="expected 'other'"):
        parse_embedding(good, expected={"baseline": "other"})
    from safetensors.numpy import save

    with pytest.raises(InvalidArtifactError, match="dtype"):
        parse_embedding(save({"embedding": np.zeros(8, np.float64)}, metadata=_valid_metadata()))
    with pytest.raises(InvalidArtifactError, match="exactly one tensor"):
        parse_embedding(save({"embedding": np.zeros(8, np.float32), "x": np.zeros(1, np.float32)},
                             metadata=_valid_metadata()))
