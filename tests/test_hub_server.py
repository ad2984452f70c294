"""Contract tests: the unmodified huggingface_hub client against the local Hub server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    hf_hub_download,
    metadata_update,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hf_spider.localhub.server import LocalHub
from hf_spider.localhub.storage import HubStorage, Operation


def test_create_and_delete_model_and_dataset_repos(api: HfApi, repo_id: str):
    url = api.create_repo(repo_id)
    assert url.repo_id == repo_id
    assert api.repo_exists(repo_id)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(repo_id)
    assert exc.value.response.status_code == 409
    api.create_repo(repo_id, exist_ok=True)  # no error

    api.create_repo(repo_id, repo_type="dataset")  # same id, other type: independent repo
    assert api.repo_exists(repo_id, repo_type="dataset")
    api.delete_repo(repo_id)
    assert not api.repo_exists(repo_id)
    assert api.repo_exists(repo_id, repo_type="dataset")
    api.delete_repo(repo_id, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id, repo_type="dataset")
    api.delete_repo(repo_id, missing_ok=True)


def test_upload_file_and_folder_then_download(api: HfApi, repo_id: str, tmp_path: Path):
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"weights", path_in_repo="model.bin", repo_id=repo_id)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "notes.txt").write_text("nested")
    api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="add folder")

    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "config.json", "model.bin", "sub/notes.txt"]
    assert Path(hf_hub_download(repo_id, "sub/notes.txt")).read_text() == "nested"
    assert Path(hf_hub_download(repo_id, "model.bin")).read_bytes() == b"weights"
    snapshot = Path(snapshot_download(repo_id))
    assert json.loads((snapshot / "config.json").read_text()) == {"a": 1}
    assert (snapshot / "sub" / "notes.txt").read_text() == "nested"
    commits = api.list_repo_commits(repo_id)
    assert [c.title for c in commits][:2] == ["add folder", "Upload model.bin with huggingface_hub"]


def test_multi_operation_commit_and_revisions(api: HfApi, repo_id: str):
    api.create_repo(repo_id)
    first = api.create_commit(repo_id, commit_message="first",
                              operations=[CommitOperationAdd("a.txt", b"A1"), CommitOperationAdd("b.txt", b"B")])
    second = api.create_commit(repo_id, operations=[CommitOperationAdd("a.txt", b"A2"), CommitOperationDelete("b.txt")],
                               commit_message="second", parent_commit=first.oid)
    assert api.model_info(repo_id).sha == second.oid
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "a.txt"]
    # Old revisions stay readable, by commit sha.
    assert Path(hf_hub_download(repo_id, "a.txt", revision=first.oid)).read_bytes() == b"A1"
    assert Path(hf_hub_download(repo_id, "b.txt", revision=first.oid)).read_bytes() == b"B"
    assert Path(hf_hub_download(repo_id, "a.txt")).read_bytes() == b"A2"
    assert api.model_info(repo_id, revision=first.oid).sha == first.oid
    # A stale parent commit is refused (the Hub answers 412) and changes nothing.
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(repo_id, operations=[CommitOperationAdd("c.txt", b"C")], commit_message="stale",
                          parent_commit=first.oid)
    assert exc.value.response.status_code == 412
    assert api.model_info(repo_id).sha == second.oid
    # Deleting a folder.
    api.upload_file(path_or_fileobj=b"x", path_in_repo="dir/x.txt", repo_id=repo_id)
    api.delete_folder("dir", repo_id=repo_id)
    assert "dir/x.txt" not in api.list_repo_files(repo_id)


def test_pull_request_commits(api: HfApi, repo_id: str):
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"main", path_in_repo="f.txt", repo_id=repo_id)
    main_sha = api.model_info(repo_id).sha
    pr = api.create_commit(repo_id, operations=[CommitOperationAdd("f.txt", b"proposed")], commit_message="proposal",
                           create_pr=True)
    assert pr.pr_num == 1 and pr.pr_revision == "refs/pr/1"
    assert api.model_info(repo_id).sha == main_sha  # main untouched
    assert Path(hf_hub_download(repo_id, "f.txt", revision="refs/pr/1")).read_bytes() == b"proposed"
    # Pushing again to the same PR, then opening a second one.
    api.upload_file(path_or_fileobj=b"more", path_in_repo="g.txt", repo_id=repo_id, revision="refs/pr/1")
    assert "g.txt" in api.list_repo_files(repo_id, revision="refs/pr/1")
    second = api.upload_file(path_or_fileobj=b"x", path_in_repo="h.txt", repo_id=repo_id, create_pr=True)
    assert second.pr_num == 2
    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    assert sorted(r.ref for r in refs.pull_requests) == ["refs/pr/1", "refs/pr/2"]


def test_model_info_has_siblings_sha_tags_and_card_data(api: HfApi, repo_id: str):
    api.create_repo(repo_id)
    card = ModelCard("---\nlicense: mit\nlibrary_name: timm\ntags:\n- image-classification\n- hf-spider\n---\n# Hi\n")
    card.push_to_hub(repo_id)
    api.upload_file(path_or_fileobj=b"\0" * 8, path_in_repo="model.safetensors", repo_id=repo_id)
    info = api.model_info(repo_id, files_metadata=True)
    assert len(info.sha) == 40
    assert {s.rfilename: s.size for s in info.siblings}["model.safetensors"] == 8
    assert {"image-classification", "hf-spider", "timm", "license:mit", "safetensors"} <= set(info.tags)
    assert info.card_data.license == "mit" and info.library_name == "timm"
    assert ModelCard.load(repo_id).text.strip() == "# Hi"

    metadata_update(repo_id, {"tags": ["image-classification", "hf-spider", "extra"]}, overwrite=True)
    info = api.model_info(repo_id)
    assert "extra" in info.tags and info.card_data.license == "mit"
    assert ModelCard.load(repo_id).text.strip() == "# Hi"  # body preserved


def test_list_models_filters_search_author_and_pagination(hub, tmp_path: Path):
    with LocalHub(tmp_path / "hub", token=None, page_size=3) as small:
        api = HfApi(endpoint=small.url, token="anything")
        for org, name, tags in [("alpha", "resnet-a", ["hf-spider"]), ("alpha", "vit-b", ["hf-spider", "vit"]),
                                ("beta", "resnet-c", []), ("beta", "mlp-d", ["hf-spider"]),
                                ("beta", "resnet-e", ["hf-spider"]), ("gamma", "x", ["hf-spider"])]:
            api.create_repo(f"{org}/{name}")
            api.upload_file(path_or_fileobj=f"---\ntags: {json.dumps(tags)}\n---\n".encode(), path_in_repo="README.md",
                            repo_id=f"{org}/{name}")
        api.create_repo("alpha/a-dataset", repo_type="dataset")

        ids = lambda it: sorted(m.id for m in it)
        assert len(ids(api.list_models())) == 6  # paginated through pages of 3
        assert ids(api.list_models(filter="hf-spider")) == ["alpha/resnet-a", "alpha/vit-b", "beta/mlp-d",
                                                             "beta/resnet-e", "gamma/x"]
        assert ids(api.list_models(filter=["hf-spider", "vit"])) == ["alpha/vit-b"]
        assert ids(api.list_models(search="resnet")) == ["alpha/resnet-a", "beta/resnet-c", "beta/resnet-e"]
        assert ids(api.list_models(author="beta", filter="hf-spider")) == ["beta/mlp-d", "beta/resnet-e"]
        assert len(list(api.list_models(limit=4))) == 4
        assert ids(api.list_datasets(author="alpha")) == ["alpha/a-dataset"]
        full = next(iter(api.list_models(search="vit-b", full=True)))
        assert {s.rfilename for s in full.siblings} == {".gitattributes", "README.md"}


def test_missing_repo_file_and_revision_raise_the_clients_errors(api: HfApi, repo_id: str):
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "config.json")
    api.create_repo(repo_id)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="0" * 40)


def test_writes_need_the_right_token(hub, repo_id: str):
    bad = HfApi(token="wrong-token")
    with pytest.raises(HfHubHTTPError) as exc:
        bad.create_repo(repo_id)
    assert exc.value.response.status_code == 401
    good = HfApi()
    good.create_repo(repo_id)
    with pytest.raises(HfHubHTTPError) as exc:
        bad.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    assert exc.value.response.status_code == 401
    assert good.list_repo_files(repo_id) == [".gitattributes"]
    assert bad.model_info(repo_id).id == repo_id  # reads stay public


def test_private_repos_are_invisible_without_the_token(api: HfApi, repo_id: str):
    api.create_repo(repo_id, private=True)
    assert api.model_info(repo_id).private is True
    anonymous = HfApi(token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(repo_id)
    assert repo_id not in {m.id for m in anonymous.list_models(author="tests")}
    assert repo_id in {m.id for m in api.list_models(author="tests")}


def test_storage_survives_restart(tmp_path: Path):
    with LocalHub(tmp_path / "hub") as first:
        api = HfApi(endpoint=first.url, token="t")
        api.create_repo("org/persist")
        commit = api.upload_file(path_or_fileobj=b"kept", path_in_repo="f.txt", repo_id="org/persist")
    with LocalHub(tmp_path / "hub") as second:
        api = HfApi(endpoint=second.url, token="t")
        assert api.model_info("org/persist").sha == commit.oid
        path = api.hf_hub_download("org/persist", "f.txt", cache_dir=tmp_path / "cache")
        assert Path(path).read_bytes() == b"kept"


def commit_lost_before_its_refs(storage: HubStorage, repo, operations: list[Operation]) -> None:
    """A commit whose blobs and commit file are written and whose ``refs.json`` swap never happens (power loss)."""
    real_replace = os.replace

    def crash_on_refs(src, dst):
        if str(dst).endswith("refs.json"):
            raise OSError("simulated power loss")
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(os, "replace", crash_on_refs)
        with pytest.raises(OSError, match="power loss"):
            storage.commit(repo, operations, title="lost")


def test_a_crash_mid_commit_leaves_the_previous_revision(tmp_path: Path):
    storage = HubStorage(tmp_path / "hub")
    repo = storage.create_repo("model", "org/atomic")
    storage.commit(repo, [Operation("add", "f.txt", b"v1")], title="v1")
    before = storage.resolve(repo, "main")

    commit_lost_before_its_refs(storage, repo, [Operation("add", "f.txt", b"v2"), Operation("add", "g.txt", b"new")])

    storage.close()  # the crashed server is gone
    reopened = HubStorage(tmp_path / "hub")  # what a restarted server sees
    head = reopened.resolve(reopened.get("model", "org/atomic"), "main")
    assert head.oid == before.oid
    assert sorted(head.files) == [".gitattributes", "f.txt"]
    assert reopened.read_blob(head.files["f.txt"]) == b"v1"
    assert list((tmp_path / "hub" / "tmp").iterdir()) == []  # staging leftovers cleaned


def test_range_requests_return_the_exact_slice(api: HfApi, repo_id: str):
    import httpx2

    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=bytes(range(256)), path_in_repo="blob.bin", repo_id=repo_id)
    url = f"{os.environ['HF_ENDPOINT']}/{repo_id}/resolve/main/blob.bin"
    r = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == bytes(range(10, 20))
    assert r.headers["Content-Range"] == "bytes 10-19/256"
    r = httpx2.get(url, headers={"Range": "bytes=-6"})
    assert r.content == bytes(range(250, 256))
