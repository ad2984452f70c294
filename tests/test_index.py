"""An index of published embeddings (issue 19): built and pushed from a scan, read in one download, re-validated,
and checked against the model repos for the top K of a selection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURES, invoke_cli
from huggingface_hub import HfApi
from test_scan_select import ZOO

from hf_spider.embedder.pipeline import embed_repo
from hf_spider.errors import InvalidArtifactError
from hf_spider.formats.index import IndexRow, read_index_shard, shard_name, write_index_shards
from hf_spider.hub.embeddings import publish_embedding
from hf_spider.hub.index import build_index, read_index, scan_index
from hf_spider.hub.scan import scan
from hf_spider.ranking import select_models
from hf_spider.tasks import load_task

ORG = "index-tests"
BASELINE = f"{ORG}/resnet10-animals"
REFERENCE = f"{ORG}/reference"
MODELS = [f"{ORG}/model-{i}" for i in range(6)]


@pytest.fixture(scope="module")
def published(api: HfApi) -> dict[str, np.ndarray]:
    """Six repos publishing embeddings over the micro zoo's baseline (random vectors, an honest embedding's
    metadata), and one tagged repo with a corrupt file. Returns each repo's vector."""
    api.create_repo(BASELINE, exist_ok=True)
    api.upload_folder(folder_path=ZOO / "resnet10-animals", repo_id=BASELINE)
    api.create_repo(REFERENCE, repo_type="dataset", exist_ok=True)
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id=REFERENCE, repo_type="dataset")
    honest = embed_repo(BASELINE, baseline=BASELINE, reference=REFERENCE, max_per_class=10, steps=20, push=False,
                        progress=False)
    rng = np.random.default_rng(0)
    vectors = {}
    for repo in MODELS:
        api.create_repo(repo, exist_ok=True)
        vectors[repo] = rng.random(honest.vector.size, dtype=np.float32)
        publish_embedding(repo, vectors[repo], {**honest.metadata, "model": repo})
    api.create_repo(f"{ORG}/broken", exist_ok=True)
    api.upload_file(path_or_fileobj=b"---\ntags:\n- hf-spider\n---\n", path_in_repo="README.md",
                    repo_id=f"{ORG}/broken")
    api.upload_file(path_or_fileobj=b"\x10" + b"\x00" * 7 + b"{not json}",
                    path_in_repo=f"hf_spider/{BASELINE.replace('/', '--')}.safetensors", repo_id=f"{ORG}/broken")
    return vectors


def test_index_scan_equals_the_per_repo_scan_and_a_rebuild_fetches_only_what_changed(api, published, tmp_path):
    first = build_index(f"{ORG}/index", BASELINE, author=ORG, progress=False)
    assert (first.rows, first.listed, first.fetched) == (6, 7, 7)
    assert "header" in first.skipped[f"{ORG}/broken"]
    assert [f for f in api.list_repo_files(f"{ORG}/index", repo_type="dataset") if f != ".gitattributes"] == [
        "README.md", "data/train-00000-of-00001.parquet"]
    card = api.dataset_info(f"{ORG}/index").card_data
    assert card.hf_spider_index == {"baseline": BASELINE, "built_at": first.built_at, "rows": 6, "format_version": "1"}

    per_repo = scan(BASELINE, author=ORG, index_dir=tmp_path / "a", progress=False)
    from_index = scan_index(f"{ORG}/index", BASELINE, index_dir=tmp_path / "b", progress=False)
    assert [e.repo_id for e in from_index.entries] == [e.repo_id for e in per_repo.entries] == MODELS
    for a, b in zip(per_repo.entries, from_index.entries, strict=True):
        assert (a.repo_sha, a.metadata, a.file_sha256) == (b.repo_sha, b.metadata, b.file_sha256)
        assert np.array_equal(a.vector, b.vector) and np.array_equal(b.vector, published[b.repo_id])
    assert from_index.downloaded == 0

    api.upload_file(path_or_fileobj=b"notes", path_in_repo="notes.txt", repo_id=MODELS[2])  # a new commit
    commits = len(api.list_repo_commits(f"{ORG}/index", repo_type="dataset"))
    second = build_index(f"{ORG}/index", BASELINE, author=ORG, progress=False)
    assert (second.rows, second.fetched) == (6, 2)  # the changed repo, and the broken file (never indexed)
    assert len(api.list_repo_commits(f"{ORG}/index", repo_type="dataset")) == commits + 1  # one commit per build


def test_since_merges_the_repos_changed_after_the_index(api, published, tmp_path):
    build_index(f"{ORG}/since-index", BASELINE, author=ORG, progress=False)
    vector = np.full_like(published[MODELS[0]], 0.5)
    metadata = read_index(f"{ORG}/since-index", BASELINE).entries[MODELS[0]]["metadata"]
    late = f"{ORG}/late-model"
    api.create_repo(late, exist_ok=True)
    publish_embedding(late, vector, {**metadata, "model": late})

    without = scan_index(f"{ORG}/since-index", BASELINE, index_dir=tmp_path, progress=False)
    merged = scan_index(f"{ORG}/since-index", BASELINE, since=True, author=ORG, index_dir=tmp_path, progress=False)
    assert late not in without.vectors
    assert merged.downloaded == 1 and np.array_equal(merged.vectors[late], vector)
    assert sorted(merged.vectors) == sorted([*MODELS, late])


def _push_rows(api: HfApi, repo: str, rows: list[IndexRow], tmp_path) -> None:
    """Replace the shards of the index ``repo`` with ``rows`` (a hand-edited index)."""
    write_index_shards(rows, tmp_path)
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=tmp_path / "data", path_in_repo="data",
                      delete_patterns=["*.parquet"])


def _rows(repo: str) -> list[IndexRow]:
    entries = read_index(repo, BASELINE).entries
    return [IndexRow(r, e["sha"], e["last_modified"], e["file_sha256"], e["metadata"], e["vector"])
            for r, e in entries.items() if e["status"] == "ok"]


def test_an_inflated_index_row_is_caught_by_the_top_k_check(api, published, tmp_path):
    build_index(f"{ORG}/lying-index", BASELINE, author=ORG, progress=False)
    task = load_task(REFERENCE, split="test")
    honest = select_models(task, baseline=BASELINE, author=ORG, progress=False)
    last = honest.candidates[-1].repo_id
    rows = [IndexRow(r.repo_id, r.commit, r.last_modified, r.file_sha256, r.metadata,
                     np.ones_like(r.vector) if r.repo_id == last else r.vector) for r in _rows(f"{ORG}/lying-index")]
    _push_rows(api, f"{ORG}/lying-index", rows, tmp_path)

    unchecked = select_models(task, baseline=BASELINE, index=f"{ORG}/lying-index", verify_top=0, progress=False)
    assert unchecked.candidates[0].repo_id == last  # the lie works when nothing is checked...
    checked = select_models(task, baseline=BASELINE, index=f"{ORG}/lying-index", verify_top=3, progress=False)
    assert checked.checked[last].startswith("index row dropped: its vector or metadata is not the file's")
    assert [c.repo_id for c in checked.candidates] == [c.repo_id for c in honest.candidates]  # ...and is undone
    u = checked.task_embedding.vector
    assert checked.candidates[-1].score == pytest.approx(float(np.minimum(u, published[last]).sum()), rel=1e-5)
    assert sum(found == "verified" for found in checked.checked.values()) >= 3


def test_a_stale_row_is_refetched_and_a_missing_source_dropped(api, published, tmp_path):
    build_index(f"{ORG}/stale-index", BASELINE, author=ORG, progress=False)
    task = load_task(REFERENCE, split="test")
    metadata = read_index(f"{ORG}/stale-index", BASELINE).entries[MODELS[4]]["metadata"]
    new_vector = np.ones_like(published[MODELS[4]]) * 0.9
    publish_embedding(MODELS[4], new_vector, metadata)  # after the index was built
    api.delete_file(f"hf_spider/{BASELINE.replace('/', '--')}.safetensors", repo_id=MODELS[5])

    result = select_models(task, baseline=BASELINE, index=f"{ORG}/stale-index", verify_top=6, progress=False)
    assert result.checked[MODELS[4]].startswith("refetched: its file changed since the index")
    assert result.checked[MODELS[5]] == "dropped: its repo no longer publishes an embedding over the baseline"
    assert result.skipped[MODELS[5]] == result.checked[MODELS[5]]
    scores = {c.repo_id: c.score for c in result.candidates}
    u = result.task_embedding.vector
    assert scores[MODELS[4]] == pytest.approx(float(np.minimum(u, new_vector).sum()), rel=1e-5)
    assert MODELS[5] not in scores and set(MODELS[:5]) <= set(scores)
    publish_embedding(MODELS[4], published[MODELS[4]], metadata)  # restore
    publish_embedding(MODELS[5], published[MODELS[5]], {**metadata, "model": MODELS[5]})


def test_index_rows_are_validated_like_downloaded_files(api, published, tmp_path):
    build_index(f"{ORG}/bad-index", BASELINE, author=ORG, progress=False)
    rows = {r.repo_id: r for r in _rows(f"{ORG}/bad-index")}
    first, second = rows[MODELS[0]], rows[MODELS[1]]
    bad = first.vector.copy()
    bad[3] = 2.0
    rows[MODELS[0]] = IndexRow(first.repo_id, first.commit, first.last_modified, first.file_sha256, first.metadata, bad)
    rows[MODELS[1]] = IndexRow(second.repo_id, second.commit, second.last_modified, second.file_sha256,
                               {**second.metadata, "baseline": "other/baseline"}, second.vector)
    rows = list(rows.values())
    _push_rows(api, f"{ORG}/bad-index", rows, tmp_path)
    result = scan_index(f"{ORG}/bad-index", BASELINE, index_dir=tmp_path / "i", progress=False)
    assert result.skipped[MODELS[0]] == ("invalid index row: embedding values must lie in [0, 1] "
                                         f"(found {bad.min():.3g}..2)")
    assert result.skipped[MODELS[1]] == ("invalid index row: embedding baseline is 'other/baseline', expected "
                                         f"'{BASELINE}'")
    assert sorted(result.vectors) == sorted({r.repo_id for r in rows} - set(MODELS[:2]))


def test_a_file_that_is_not_an_index_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"repo_id": ["a/b"], "vector": [[0.5]]}), tmp_path / "x.parquet")
    with pytest.raises(InvalidArtifactError, match="is not an hf_spider index"):
        list(read_index_shard(tmp_path / "x.parquet"))
    (tmp_path / "y.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(InvalidArtifactError, match="not readable parquet"):
        list(read_index_shard(tmp_path / "y.parquet"))
    rows = [IndexRow(f"o/m{i}", "c" * 40, "", "", {"baseline": "b"}, np.full(4, i / 10, np.float32)) for i in range(5)]
    names = write_index_shards(rows, tmp_path / "s", rows_per_shard=2)
    assert names == [shard_name(0, 3), shard_name(1, 3), shard_name(2, 3)]
    read = [r for name in names for r in read_index_shard(tmp_path / "s" / name)]
    assert [(r.repo_id, float(r.vector[0])) for r in read] == [(f"o/m{i}", pytest.approx(i / 10)) for i in range(5)]


def test_cli_index_build_then_scan_and_select_from_it(published):
    built = invoke_cli("index", "build", "--push", f"{ORG}/cli-index", "--baseline", BASELINE, "--author", ORG,
                       "--json")
    assert built.exit_code == 0, built.output
    scanned = invoke_cli("scan", "--baseline", BASELINE, "--index", f"{ORG}/cli-index", "--json")
    assert scanned.exit_code == 0, scanned.output
    repos = [e["repo_id"] for e in json.loads(scanned.stdout)["embeddings"]]
    assert set(MODELS) <= set(repos) and json.loads(built.stdout)["rows"] == len(repos)
    selected = invoke_cli("select", "--dataset", REFERENCE, "--split", "test", "--baseline", BASELINE, "--index",
                          f"{ORG}/cli-index", "--verify-top", "2", "--json")
    assert selected.exit_code == 0, selected.output
    out = json.loads(selected.stdout)
    assert list(out["checked"].values()) == ["verified", "verified"]
    assert sorted(out["checked"]) == sorted(r["repo_id"] for r in out["ranking"][:2])
    refused = invoke_cli("scan", "--baseline", BASELINE, "--since")
    assert refused.exit_code == 2 and "--since merges the repos changed since an index" in refused.output
