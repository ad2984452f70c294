"""An ONNX repo goes through the product as a timm repo does: embed, select with --rerank, verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES
from huggingface_hub import HfApi
from test_onnx_backbone import push_onnx_model
from typer.testing import CliRunner

from hf_spider.cli import app
from hf_spider.features import extract_features
from hf_spider.scores import score
from hf_spider.tasks import load_task

ZOO = Path(__file__).parents[1] / "benchmarks" / "zoo" / "models"
ORG = "onnx-product"
BASELINE, ONNX_MODEL = f"{ORG}/resnet10-animals", f"{ORG}/tiny-onnx"
REFERENCE = f"{ORG}/reference"


@pytest.fixture(scope="module")
def published(api: HfApi, tmp_path_factory) -> None:
    api.create_repo(BASELINE, exist_ok=True)
    api.upload_folder(folder_path=ZOO / "resnet10-animals", repo_id=BASELINE)
    push_onnx_model(api, ONNX_MODEL, tmp_path_factory.mktemp("onnx"))
    api.create_repo(REFERENCE, repo_type="dataset", exist_ok=True)
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id=REFERENCE, repo_type="dataset")
    result = CliRunner().invoke(app, ["embed", ONNX_MODEL, "--baseline", BASELINE, "--reference",
                                      f"{REFERENCE}:train", "--steps", "200", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["up_to_date"] is False


def test_select_reranks_an_onnx_candidate_with_its_forward_score(published):
    result = CliRunner().invoke(app, ["select", "--dataset", str(FIXTURES / "digits-mini"), "--baseline", BASELINE,
                                      "--author", ORG, "--rerank", "1", "--rerank-score", "logme", "--json"])
    assert result.exit_code == 0, result.output
    candidates = {c["repo_id"]: c for c in json.loads(result.stdout)["ranking"]}
    assert list(candidates) == [ONNX_MODEL]
    task = load_task(str(FIXTURES / "digits-mini"))
    features = extract_features(ONNX_MODEL, task, progress=False)
    assert features.features.shape == (len(task), 16)
    want = score("logme", features=features.features, labels=task.labels)
    assert candidates[ONNX_MODEL]["rerank_score"] == pytest.approx(want, rel=1e-6)


def test_verify_replays_an_onnx_embedding(published):
    result = CliRunner().invoke(app, ["verify", ONNX_MODEL, "--baseline", BASELINE, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["max_abs"] == 0
