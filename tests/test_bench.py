"""``hf_spider bench`` on a CI-sized slice: 3 zoo models from the local Hub x 1 target dataset repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import FIXTURES, invoke_cli
from huggingface_hub import HfApi
from scipy import stats

from hf_spider.backbones import load_backbone
from hf_spider.bench import model_id
from hf_spider.constants import MICRO_ZOO

ZOO = MICRO_ZOO / "models"
ZOO_RECORD = Path(__file__).parents[1] / "benchmarks" / "zoo" / "zoo.json"
MODELS = ["resnet10-animals", "resnet10-wesnoth", "resnet18-emoji-google"]
METHODS = ["logme", "leep", "h_score", "nce"]


@pytest.fixture(scope="module")
def bench_repos(api: HfApi) -> tuple[list[str], str]:
    zoo = []
    for name in MODELS:
        repo = f"zoo-bench/{name}"
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=ZOO / name, repo_id=repo)
        zoo.append(repo)
    target = "tests/digits-bench"
    api.create_repo(target, repo_type="dataset", exist_ok=True)
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id=target, repo_type="dataset")
    return zoo, target


def _bench(*args: str):
    return invoke_cli("bench", *args)


def test_bench_ranks_a_zoo_against_linear_probe_ground_truth(bench_repos, tmp_path: Path):
    zoo, target = bench_repos
    gt_file, out = tmp_path / "gt.json", tmp_path / "out"
    args = [a for m in zoo for a in ("--zoo", m)] + ["--targets", target, "--ground-truth", str(gt_file),
                                                     "--out", str(out)]
    args += [a for m in [*METHODS, "embedder"] for a in ("--method", m)]
    embedder = ["--baseline", zoo[0], "--reference", f"{target}:train", "--embed-steps", "100"]
    result = _bench(*args, *embedder)
    assert result.exit_code == 0, result.output
    assert "τw sfda" in result.stdout and "digits-bench" in result.stdout

    report = json.loads((out / "bench.json").read_text())
    (stored,) = json.loads(gt_file.read_text())["targets"].values()
    stored = stored["linear-probe"]
    ids = {m: model_id(load_backbone(repo, device="cpu")) for m, repo in zip(MODELS, zoo, strict=True)}
    assert stored["metric"] == "accuracy" and sorted(stored["models"]) == sorted(ids.values())
    gt = report["ground_truth"]["digits-bench"]
    assert all(0.0 <= v <= 1.0 for v in gt.values())
    assert gt == pytest.approx({m: stored["models"][i] for m, i in ids.items()}, abs=1e-6)
    assert sorted(r["method"] for r in report["rows"]) == sorted([*METHODS, "embedder", "prior:params"])
    recorded = json.loads(ZOO_RECORD.read_text())["models"]  # counted when the zoo was trained
    assert report["predictions"]["digits-bench"]["prior:params"] == {m: recorded[m]["params"] for m in MODELS}
    assert {"method": "prior:input-size", "target": "digits-bench",  # all 32 px: no ordering to report
            "reason": "every model has the same value"} in report["skipped"]
    for row in report["rows"]:  # every metric recomputed directly from the raw predictions
        pred = report["predictions"]["digits-bench"][row["method"]]
        g, p = np.array([gt[m] for m in MODELS]), np.array([pred[m] for m in MODELS])
        assert row["tau_sfda"] == pytest.approx(stats.weightedtau(g, p, rank=True).statistic)
        assert row["tau_spider"] == pytest.approx(stats.weightedtau(g, p, rank=None).statistic)
        assert row["pearson"] == pytest.approx(stats.pearsonr(g, p).statistic)
        assert row["regret_top1"] == pytest.approx(g.max() - g[np.argmax(p)])
        assert row["forward_passes"] == (0 if row["method"] in ("embedder", "prior:params") else 3)
        assert report["summary"][row["method"]]["mean_tau"] == pytest.approx(row["tau_sfda"])  # one target
    assert "Summary against linear-probe ground truth" in result.stdout
    for method in ("leep", "nce"):
        assert all(v <= 0 for v in report["predictions"]["digits-bench"][method].values())
    with PIL.Image.open(out / "bench.png") as image:  # a figure, not an empty file
        assert image.format == "PNG" and min(image.size) > 400

    # Few-shot mode reuses the stored ground truth and reports a 95% CI over the trials.
    before = gt_file.read_text()
    result = _bench(*args[:-2 * (len(METHODS) + 1)], "--method", "logme", "--shots", "3", "--trials", "4", "--json")
    assert result.exit_code == 0, result.output
    assert gt_file.read_text() == before
    rows = {r["method"]: r for r in json.loads((out / "bench.json").read_text())["rows"]}
    assert set(rows) == {"logme", "prior:params"} and rows["logme"]["tau_sfda_ci95"] >= 0
    assert rows["prior:params"]["tau_sfda_ci95"] == 0  # a fixed ordering: every draw ranks alike


@pytest.mark.slow
def test_full_bench_on_the_development_targets(tmp_path: Path):
    """`hf_spider bench` with its defaults: the bundled zoo on every tgt-*/reg-* target (about 30 min
    on 2 CPU cores). Needs the offline data pack: set HF_SPIDER_OFFLINE_DATA to its folder."""
    root = os.environ.get("HF_SPIDER_OFFLINE_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("set HF_SPIDER_OFFLINE_DATA to the offline data pack to run the full benchmark")
    result = subprocess.run([sys.executable, "-m", "hf_spider.cli", "bench", "--data-root", root, "--out",
                             str(tmp_path), "--ground-truth", str(tmp_path / "gt.json"), "--json"],
                            capture_output=True, text=True, timeout=7200, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    targets = {p.name for p in Path(root).iterdir() if p.name.startswith(("tgt-", "reg-"))}
    assert set(report["ground_truth"]) == targets
    assert {r["method"] for r in report["rows"]} >= {"logme", "leep", "nce", "h_score", "embedder"}


def test_bench_without_targets_says_what_it_needs(monkeypatch):
    monkeypatch.delenv("HF_SPIDER_OFFLINE_DATA", raising=False)
    result = invoke_cli("bench")
    assert str(result.exception) == (
        "bench needs target tasks: --targets DATASET ... (Hub ids or folders with train and test splits), or "
        "--data-root FOLDER (or HF_SPIDER_OFFLINE_DATA) holding tgt-*/reg-* folders")


def test_bench_inputs_default_to_the_bundled_zoo_and_the_data_pack(tmp_path):
    from hf_spider.bench import bench_inputs

    for name in ("tgt-b", "reg-a", "src-x", "reference-mix"):
        (tmp_path / name).mkdir()
    bundled = MICRO_ZOO / "models"
    inputs = bench_inputs(data_root=tmp_path, embed_steps=50)
    assert inputs.targets == [str(tmp_path / "reg-a"), str(tmp_path / "tgt-b")]  # not src-*, nor the reference
    assert inputs.models == sorted(str(p) for p in bundled.iterdir() if p.is_dir()) and len(inputs.models) == 27
    assert (inputs.embedder.baseline, inputs.embedder.reference, inputs.embedder.steps) == (
        str(bundled / "resnet18-all-mix"), str(tmp_path / "reference-mix"), 50)
    assert inputs.ranker.models == json.loads((MICRO_ZOO / "ranker" / "config.json").read_text())["models"]

    named = bench_inputs(zoo=[str(bundled / "vit-glyphs")], targets=["tgt-b", "org/hub-target"], data_root=tmp_path)
    assert named.targets == [str(tmp_path / "tgt-b"), "org/hub-target"]  # a name under the data root is its folder
    assert (named.models, named.embedder, named.ranker) == ([str(bundled / "vit-glyphs")], None, None)


def test_summary_means_per_method_over_the_targets_it_scored():
    from hf_spider.bench import BenchReport, render_summary

    def row(method: str, target: str, tau: float, regret: float) -> dict:
        return {"method": method, "target": target, "tau_sfda": tau, "regret_top3": regret,
                "forward_passes": 0 if method == "spider" else 27}

    report = BenchReport(rows=[row("spider", "reg", 0.6, 0.0), row("spider", "a", 0.2, 0.05),
                               row("spider", "b", 0.4, 0.01), row("knn", "a", 0.7, 0.0), row("knn", "b", 0.5, 0.02)],
                         ground_truth={"reg": {}, "a": {}, "b": {}}, regression_targets=["reg"])
    summary = report.summary()
    assert summary["spider"]["mean_tau"] == pytest.approx((0.6 + 0.2 + 0.4) / 3)
    assert summary["spider"]["mean_tau_classification"] == pytest.approx(0.3)
    assert summary["knn"]["mean_tau"] == summary["knn"]["mean_tau_classification"] == pytest.approx(0.6)
    assert summary["knn"]["forward_passes"] == 27 and summary["spider"]["regret_top3"]["a"] == 0.05
    only_regression = BenchReport(rows=[row("logme", "reg", 0.5, 0.0)], regression_targets=["reg"])
    assert only_regression.summary()["logme"]["mean_tau_classification"] is None

    table = render_summary(report)
    assert [c.header for c in table.columns] == ["method", "fwd passes", "reg", "a", "b", "mean τw",
                                                 "mean τw (classification)"]
    assert list(table.columns[0].cells) == ["knn", "spider"]  # best mean first
    assert list(table.columns[2].cells) == ["–", "0.60 / 0.0"] and list(table.columns[3].cells)[1] == "0.20 / 5.0"
