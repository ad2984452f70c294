"""Bulk embedding on a local Ray cluster (issue 19): one task per repo, a broken repo reported without failing the
batch, and a rerun that resumes from the journal and does nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, invoke_cli
from huggingface_hub import HfApi
from test_scan_select import ZOO

from hf_spider.bulk import read_repo_list
from hf_spider.errors import InvalidInputError
from hf_spider.formats.embedding import embedding_path
from hf_spider.hub.embeddings import fetch_embedding

ORG = "bulk-tests"
BASELINE = f"{ORG}/resnet10-animals"
REFERENCE = f"{ORG}/reference"
MODELS = ["resnet10-wesnoth", "resnet18-emoji-google", "resnet10-glyphs", "convnext-papirus", "vit-papirus",
          "mnv3-glyphs"]
BROKEN = f"{ORG}/no-weights"


@pytest.fixture(scope="module")
def repo_list(api: HfApi, tmp_path_factory) -> list[str]:
    for name in ["resnet10-animals", *MODELS]:
        api.create_repo(f"{ORG}/{name}", exist_ok=True)
        api.upload_folder(folder_path=ZOO / name, repo_id=f"{ORG}/{name}")
    api.create_repo(REFERENCE, repo_type="dataset", exist_ok=True)
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id=REFERENCE, repo_type="dataset")
    api.create_repo(BROKEN, exist_ok=True)
    api.upload_file(path_or_fileobj=b"# a card and no weights\n", path_in_repo="README.md", repo_id=BROKEN)
    return [f"{ORG}/{name}" for name in MODELS] + [BROKEN]


def test_embed_repos_on_ray_publishes_each_reports_the_broken_one_and_resumes(api, repo_list, tmp_path):
    listing = tmp_path / "repos.txt"
    listing.write_text("# zoo\n" + "\n".join(repo_list) + f"\n\n{repo_list[0]}  # again\n")
    args = ("embed", "--repos", str(listing), "--baseline", BASELINE, "--reference", f"{REFERENCE}:train",
            "--max-per-class", "5", "--steps", "30", "--workers", "2", "--json")
    first = invoke_cli(*args)
    assert first.exit_code == 1, first.output  # one repo failed: the batch still ran
    report = json.loads(first.stdout)
    assert sorted(report["done"]) == sorted(repo_list[:-1])
    assert list(report["failed"]) == [BROKEN] and report["failed"][BROKEN].startswith("ModelLoadError: ")
    for repo in repo_list[:-1]:
        published = fetch_embedding(repo, BASELINE)
        assert published.metadata["steps"] == "30" and published.metadata["model"] == repo
        assert report["done"][repo]["commit_url"].endswith(published.repo_sha)
    journal = [json.loads(line) for line in Path(report["journal"]).read_text().splitlines()]
    assert [(r["repo"], r["attempts"]) for r in journal if r["status"] == "failed"] == [(BROKEN, 2)]  # one retry
    assert not api.file_exists(BROKEN, embedding_path(BASELINE))

    heads = {repo: api.model_info(repo).sha for repo in repo_list}
    again = invoke_cli(*args)
    rerun = json.loads(again.stdout)
    assert again.exit_code == 0 and rerun["done"] == {} and rerun["failed"] == {}
    assert sorted(rerun["skipped"]) == sorted(repo_list)
    assert {repo: api.model_info(repo).sha for repo in repo_list} == heads  # nothing was pushed

    listing.write_text("\n".join(repo_list[:2]))
    verified = invoke_cli("verify", "--repos", str(listing), "--baseline", BASELINE, "--workers", "2", "--json")
    assert verified.exit_code == 0, verified.output
    reports = json.loads(verified.stdout)["done"]
    assert sorted(reports) == repo_list[:2] and all(r["passed"] and r["max_abs"] == 0 for r in reports.values())


def test_repo_lists_and_bad_arguments_get_one_clear_line(tmp_path):
    (tmp_path / "ok.txt").write_text("a/b\n# c/d\n\na/b\ne/f # comment\n")
    assert read_repo_list(tmp_path / "ok.txt") == ["a/b", "e/f"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InvalidInputError, match="names no repo"):
        read_repo_list(tmp_path / "empty.txt")
    both = invoke_cli("embed", "a/b", "--repos", str(tmp_path / "ok.txt"))
    assert both.exit_code == 2 and "pass one REPO_ID or --repos FILE" in both.output
    single = invoke_cli("embed", "--repos", str(tmp_path / "ok.txt"), "--out", "x.safetensors")
    assert single.exit_code == 2 and "--out applies to one repo, not to --repos" in single.output
