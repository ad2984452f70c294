"""An ONNX repo goes through the product as a timm repo does: embed, select with --rerank, verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES
from huggingface_hub import HfApi
from test_onnx_backbone import exported, onnx_config, push_model, push_onnx_model
from typer.testing import CliRunner

from hf_spider.bench import plot, run_bench
from hf_spider.cli import app
from hf_spider.constants import MICRO_ZOO
from hf_spider.features import extract_features
from hf_spider.scores import score
from hf_spider.tasks import load_task

ZOO = MICRO_ZOO / "models"
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


def test_bench_ranks_headless_models_by_features_and_the_others_by_source_probs(published, api: HfApi,
                                                                               tmp_path: Path):
    """A zoo mixing models with and without a classifier head: LEEP ranks the two with one (against their ground
    truth), LogME all three; a selection's forward seconds are what each extraction took."""
    headless = f"{ORG}/tiny-onnx-headless"
    config = onnx_config()
    del config["onnx"]["logits"], config["num_classes"]
    push_model(api, headless, tmp_path, exported(tmp_path), config)
    zoo, target = [BASELINE, ONNX_MODEL, headless], str(FIXTURES / "digits-mini")
    report = run_bench(zoo, [target], methods=["logme", "leep"], progress=False)
    rows = {r["method"]: r for r in report.rows}
    keys = ["resnet10-animals", "tiny-onnx", "tiny-onnx-headless"]
    assert (rows["logme"]["models"], rows["leep"]["models"]) == (3, 2)
    assert rows["leep"]["forward_passes"] == 2 and sorted(report.predictions["digits-mini"]["leep"]) == keys[:2]
    gt, pred = report.ground_truth["digits-mini"], report.predictions["digits-mini"]["leep"]
    assert rows["leep"]["regret_top1"] == pytest.approx(max(gt[k] for k in keys[:2]) - gt[max(pred, key=pred.get)])
    task = load_task(target, split="train")
    seconds = [extract_features(m, task, with_source_probs=m != headless, progress=False).stats["computed"]
               for m in zoo]
    assert rows["logme"]["forward_s"] == pytest.approx(sum(seconds), abs=0.01) and min(seconds) > 0
    assert rows["leep"]["forward_s"] == pytest.approx(sum(seconds[:2]), abs=0.01)
    plot(report, tmp_path / "bench.png")  # each method's scatter over the models it scored
    assert (tmp_path / "bench.png").stat().st_size > 0
