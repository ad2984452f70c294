"""Network faults between the clients and the Hub: scan, embed --push and a killed embed still end well.

A :class:`FaultyProxy` sits between the CLI (a subprocess pointed at it by ``HF_ENDPOINT``) and a local Hub of
this module's own (50 repos per listing page, so listings are paginated through the faults). It drops,
delays, truncates, 5xx-es and 429-s a seeded share of the requests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, HUB_TOKEN
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.utils import get_session
from safetensors import safe_open

from hf_spider.backbones import load_backbone
from hf_spider.constants import MICRO_ZOO
from hf_spider.features import extract_features
from hf_spider.formats.embedding import embedding_path, parse_embedding, serialize_embedding
from hf_spider.hub.scan import load_local_index
from hf_spider.localhub.server import LocalHub
from hf_spider.tasks import load_task
from hf_spider.testing.faults import KINDS, FaultyProxy

ZOO = MICRO_ZOO / "models"
ORG = "faults"
BASELINE_ID = f"{ORG}/bench-baseline"  # the scan repos' embeddings are over this (never loaded)
N_REPOS, DIM = 200, 16
BROKEN = {f"{ORG}/m-{i:03d}" for i in range(N_REPOS) if i % 25 == 3}  # a corrupt embedding file
NO_FILE = {f"{ORG}/m-{i:03d}" for i in range(N_REPOS) if i % 25 == 13}  # tagged, nothing published
MODEL, BASELINE = "faults-embed/resnet10-wesnoth", "faults-embed/resnet10-animals"  # not listed by the scans
REFERENCE = f"{FIXTURES / 'digits-mini'}:train"


def _metadata(repo: str) -> dict[str, str]:
    return {"format_version": "1", "baseline": BASELINE_ID, "baseline_revision": "a" * 40, "reference": "org/ref",
            "reference_split": "train", "reference_fingerprint": "b" * 64, "model": repo, "model_revision": "c" * 40,
            "model_weights": "d" * 64, "steps": "100", "seed": "0", "fidelity_to": "0.5", "fidelity_from": "0.5",
            "tool_version": "0.1.0", "created_at": "2026-01-01T00:00:00+00:00"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with LocalHub(tmp_path_factory.mktemp("faults-hub"), token=HUB_TOKEN, page_size=50) as hub:
        yield hub


@pytest.fixture(scope="module")
def published(upstream) -> dict[str, np.ndarray]:
    """200 tagged repos: 184 valid embeddings (N=16), 8 corrupt files, 8 without a file. Returns the valid ones."""
    api = HfApi(endpoint=upstream.url)
    card = b"---\ntags:\n- hf-spider\n---\n# model\n"

    def publish(i: int) -> tuple[str, np.ndarray | None]:
        repo = f"{ORG}/m-{i:03d}"
        api.create_repo(repo)
        vector = np.random.default_rng(i).random(DIM, dtype=np.float32)
        data = serialize_embedding(vector, _metadata(repo))
        operations = [CommitOperationAdd("README.md", card)]
        if repo not in NO_FILE:
            operations.append(CommitOperationAdd(embedding_path(BASELINE_ID), data[:-5] if repo in BROKEN else data))
        api.create_commit(repo, operations=operations, commit_message="publish")
        return repo, None if repo in BROKEN | NO_FILE else vector

    with ThreadPoolExecutor(4) as pool:
        return {repo: v for repo, v in pool.map(publish, range(N_REPOS)) if v is not None}


@pytest.fixture(scope="module")
def model_repos(upstream) -> None:
    api = HfApi(endpoint=upstream.url)
    for repo in (MODEL, BASELINE):
        api.create_repo(repo)
        api.upload_folder(folder_path=ZOO / repo.split("/")[1], repo_id=repo)
    owner_card = "---\nlicense: mit\ntags:\n- image-classification\n---\n# My model\n\nOwner text.\n"
    api.upload_file(path_or_fileobj=owner_card.encode(), path_in_repo="README.md", repo_id=MODEL)


def _env(endpoint: str, home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(home / "hf"), "HF_SPIDER_CACHE": str(home / "cache"),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", **extra}


def _cli(*args: str, endpoint: str, home: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_spider.cli", *args], capture_output=True, text=True,
                          timeout=400, env=_env(endpoint, home, **extra), check=False)


def _scan(proxy: FaultyProxy, home: Path, *args: str, **extra: str) -> dict:
    run = _cli("scan", "--baseline", BASELINE_ID, "--author", ORG, "--json", *args, endpoint=proxy.url, home=home,
               **extra)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def _index(home: Path) -> dict[str, dict]:
    """The scan's local index as the scan itself reads it back (vectors included)."""
    (folder,) = (home / "cache" / "index").glob("*/*")
    return load_local_index(folder)


def test_proxy_injects_every_kind_counts_them_and_keeps_pagination_behind_it(upstream, published):
    with FaultyProxy(upstream.url, rate=0.0) as proxy:
        assert len(list(HfApi(endpoint=proxy.url).list_models(author=ORG))) == N_REPOS
        assert proxy.requests == 4  # 200 repos, 50 per page: every "next" link pointed at the proxy

    outcomes: dict[str, int] = {"ok": 0, "5xx": 0, "429": 0, "broken": 0}
    start = time.perf_counter()
    with FaultyProxy(upstream.url, rate=0.6, seed=3) as proxy:
        for _ in range(40):
            try:
                r = get_session().get(f"{proxy.url}/api/models", params={"author": ORG, "limit": 3})
                outcomes["429" if r.status_code == 429 else "5xx" if r.status_code >= 500 else "ok"] += 1
                assert r.status_code != 429 or r.headers["Retry-After"] == "1"
            except Exception as e:  # dropped or truncated: the client sees a broken connection
                assert type(e).__name__ in ("RemoteProtocolError", "ReadError"), e
                outcomes["broken"] += 1
    injected = proxy.injected
    assert proxy.requests == 40 and set(injected) == set(KINDS)
    assert 15 <= sum(injected.values()) <= 33
    assert outcomes["5xx"] == injected["error"] and outcomes["429"] == injected["throttle"]
    assert outcomes["broken"] == injected["drop_request"] + injected["drop_response"] + injected["truncate"]
    assert outcomes["ok"] == 40 - sum(injected.values()) + injected["delay"]
    assert time.perf_counter() - start >= 0.5 * injected["delay"]

    with FaultyProxy(upstream.url, rate=1.0, kinds=("truncate",)) as proxy:  # a HEAD answer has no body to cut
        url = f"{proxy.url}/{ORG}/m-000/resolve/main/README.md"
        assert get_session().head(url).status_code == 200 and not proxy.injected
        with pytest.raises(Exception, match=r"incomplete|peer closed"):
            get_session().get(url)
        assert proxy.injected == {"truncate": 1}


def test_scan_of_200_repos_through_20_percent_faults_indexes_every_valid_one(upstream, published, tmp_path):
    start = time.perf_counter()
    with FaultyProxy(upstream.url, rate=0.2, seed=1) as proxy:
        # short read timeouts, so that some of the 0.5-2 s delays become client timeouts
        out = _scan(proxy, tmp_path, HF_HUB_ETAG_TIMEOUT="1", HF_HUB_DOWNLOAD_TIMEOUT="1")
        faults = dict(proxy.injected)
        indexed = {e["repo_id"] for e in out["embeddings"]}
        skipped = out["skipped"]
        assert indexed | set(skipped) == set(published) | BROKEN | NO_FILE  # nothing lost
        assert not indexed & set(skipped) and indexed <= set(published)
        assert all("invalid embedding file" in skipped[r] for r in BROKEN)
        assert all("no hf_spider/" in skipped[r] for r in NO_FILE)
        failed = set(published) - indexed  # valid but never downloaded whole: reported, with the reason
        assert all(re.match(r"download failed after 4 attempts: ", skipped[r]) for r in failed), skipped
        assert len(failed) <= 2
        index = _index(tmp_path)
        for repo in indexed:  # byte-exact: nothing truncated or corrupted was accepted
            assert np.array_equal(index[repo]["vector"], published[repo])
        assert all(index[r]["status"] == "error" for r in failed)

        proxy.rate = 0.0  # the network heals: the next scan fetches exactly what failed, nothing else
        again = _scan(proxy, tmp_path)
    assert again["downloaded"] == len(failed) and {e["repo_id"] for e in again["embeddings"]} == set(published)
    assert sum(faults.values()) >= 0.15 * proxy.requests and set(faults) == set(KINDS), faults
    print(f"\nscan of {N_REPOS} repos through {proxy.requests} requests, faults {faults}: "
          f"{len(indexed)} indexed, {len(failed)} reported failed, {time.perf_counter() - start:.1f} s")


def test_download_that_keeps_failing_is_skipped_with_the_reason_and_fetched_next_time(upstream, published, tmp_path):
    victim = f"{ORG}/m-004"
    with FaultyProxy(upstream.url, rate=1.0, kinds=("error",), match=f"^GET /{victim}/resolve/") as proxy:
        first = _scan(proxy, tmp_path, "--search", "m-00")
        assert proxy.injected["error"] == 4  # one per attempt: huggingface_hub does not retry a 5xx download
        reason = first["skipped"][victim]
        assert re.fullmatch(r"download failed after 4 attempts: HfHubHTTPError: .*\b50[023]\b.*", reason), reason
        assert {e["repo_id"] for e in first["embeddings"]} == {f"{ORG}/m-00{i}" for i in range(10)} - {victim} - BROKEN
        proxy.rate = 0.0
        second = _scan(proxy, tmp_path, "--search", "m-00")
    assert second["downloaded"] == 1 and victim not in second["skipped"]


def test_truncated_downloads_are_resumed_and_never_accepted_short(upstream, published, tmp_path):
    with FaultyProxy(upstream.url, rate=1.0, kinds=("truncate",), match=r"^GET /.*/resolve/", limit=10) as proxy:
        out = _scan(proxy, tmp_path, "--search", "m-01")
    assert proxy.injected["truncate"] == 10
    valid = {f"{ORG}/m-01{i}" for i in range(10)} - NO_FILE
    assert {e["repo_id"] for e in out["embeddings"]} == valid
    index = _index(tmp_path)
    assert all(np.array_equal(index[repo]["vector"], published[repo]) for repo in valid)


def _commits(api: HfApi, repo: str) -> list[str]:
    return [c.commit_id for c in api.list_repo_commits(repo)]


def _assert_published_whole(api: HfApi, repo: str, baseline: str, sha: str) -> dict[str, str]:
    """The repo at ``sha`` holds a valid embedding, the tag and the card section, and the owner's card."""
    data = Path(api.hf_hub_download(repo, embedding_path(baseline), revision=sha)).read_bytes()
    metadata = parse_embedding(data, expected={"baseline": baseline, "model": repo})[1]
    card = Path(api.hf_hub_download(repo, "README.md", revision=sha)).read_text()
    assert "hf-spider" in api.model_info(repo, revision=sha).tags
    assert "hf_spider model embedding" in card and "Owner text." in card and "license: mit" in card
    return metadata


OWNED = "faults-embed/owned"  # a repo with the owner's card, for publish_embedding alone
_PUBLISH = """
import json, sys
import numpy as np
from hf_spider.hub.embeddings import publish_embedding
repo, seed, create_pr, metadata = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "pr", json.loads(sys.argv[4])
vector = np.random.default_rng(seed).random(16, dtype=np.float32)
commit = publish_embedding(repo, vector, metadata, create_pr=create_pr)
print(json.dumps({"commit_url": commit.commit_url, "pr_url": commit.pr_url}))
"""


def _publish(proxy: FaultyProxy, home: Path, seed: int, create_pr: bool = False) -> subprocess.CompletedProcess:
    """``publish_embedding`` in a subprocess whose clients go through ``proxy``."""
    args = [OWNED, str(seed), "pr" if create_pr else "main", json.dumps(_metadata(OWNED))]
    return subprocess.run([sys.executable, "-c", _PUBLISH, *args], capture_output=True, text=True, timeout=300,
                          env=_env(proxy.url, home), check=False)


@pytest.fixture(scope="module")
def owned(upstream) -> None:
    api = HfApi(endpoint=upstream.url)
    api.create_repo(OWNED)
    owner_card = "---\nlicense: mit\ntags:\n- image-classification\n---\n# My model\n\nOwner text.\n"
    api.upload_file(path_or_fileobj=owner_card.encode(), path_in_repo="README.md", repo_id=OWNED)


@pytest.mark.parametrize("create_pr", [False, True], ids=["main", "pull-request"])
def test_a_commit_whose_answer_is_lost_is_found_not_sent_twice(upstream, owned, tmp_path, create_pr):
    api = HfApi(endpoint=upstream.url)
    before, prs = _commits(api, OWNED), api.list_repo_refs(OWNED, include_pull_requests=True).pull_requests
    # the Hub makes the commit, the client never hears back; a blind retry would conflict (412) or open a 2nd PR
    with FaultyProxy(upstream.url, rate=1.0, kinds=("drop_response",), match=r"^POST /api/models/.*/commit/",
                     limit=1) as proxy:
        run = _publish(proxy, tmp_path, seed=int(create_pr), create_pr=create_pr)
    assert run.returncode == 0, run.stderr[-3000:]
    assert proxy.injected["drop_response"] == 1
    commit = json.loads(run.stdout)
    after_prs = api.list_repo_refs(OWNED, include_pull_requests=True).pull_requests
    if create_pr:
        assert _commits(api, OWNED) == before and len(after_prs) == len(prs) + 1
        new = next(r for r in after_prs if r.ref not in {p.ref for p in prs})
        assert commit["pr_url"].endswith(f"/discussions/{new.ref.rsplit('/', 1)[-1]}")
        _assert_published_whole(api, OWNED, BASELINE_ID, new.target_commit)
    else:
        after = _commits(api, OWNED)
        assert after[1:] == before and commit["commit_url"].endswith(after[0]) and len(after_prs) == len(prs)
        _assert_published_whole(api, OWNED, BASELINE_ID, after[0])


def test_a_push_that_keeps_failing_leaves_the_repo_as_it_was(upstream, owned, tmp_path):
    api = HfApi(endpoint=upstream.url)
    before = _commits(api, OWNED)
    with FaultyProxy(upstream.url, rate=1.0, kinds=("error",), match=r"^POST /api/models/.*/commit/") as proxy:
        run = _publish(proxy, tmp_path, seed=2)
    assert run.returncode == 1 and proxy.injected["error"] == 4
    assert f"HubUnavailableError: publishing to {OWNED} failed after 4 attempts" in run.stderr
    assert _commits(api, OWNED) == before


@pytest.fixture(scope="module")
def embed_home(tmp_path_factory) -> Path:
    """HF_HOME shared by the embed runs (the first one downloads the weights)."""
    return tmp_path_factory.mktemp("embed-home")


@pytest.mark.slow  # ~15 s unloaded (torch start-up, two models, 50 steps); the CI tests above cover its parts
def test_embed_push_through_20_percent_faults_lands_once_and_whole(upstream, model_repos, embed_home):
    api = HfApi(endpoint=upstream.url)
    before = _commits(api, MODEL)
    with FaultyProxy(upstream.url, rate=0.2, seed=4) as proxy:
        run = _cli("embed", MODEL, "--baseline", BASELINE, "--reference", REFERENCE, "--steps", "50", "--force",
                   "--json", endpoint=proxy.url, home=embed_home)
    assert run.returncode == 0, run.stderr[-3000:]
    after = _commits(api, MODEL)
    assert after[1:] == before  # exactly one new commit, on top of the one read
    metadata = _assert_published_whole(api, MODEL, BASELINE, after[0])
    assert metadata["model_revision"] == before[0]
    assert json.loads(run.stdout)["commit_url"].endswith(after[0])
    assert sum(proxy.injected.values()) >= 3, proxy.injected
    print(f"\nembed --push through {proxy.requests} requests, faults {dict(proxy.injected)}: one commit, whole")


def _checkpoints(cache: Path) -> dict[str, tuple[int, int]]:
    """Checkpoint files of interrupted extractions -> (inode, mtime)."""
    return {str(p.relative_to(cache)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in cache.glob("features/*.partial/rows-*.safetensors")}


def test_extraction_resumes_from_its_checkpoints(tmp_path):
    task = load_task(str(FIXTURES / "digits-mini"), split="train")  # 120 images: 8 checkpoints of 16 rows
    backbone = load_backbone(str(ZOO / "resnet10-wesnoth"))
    reference = extract_features(backbone, task, use_cache=False, num_workers=0, progress=False).features
    forward, calls = backbone.forward, [0]

    def dies_after_three_batches(x):
        calls[0] += 1
        if calls[0] > 3:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of an extraction
        return forward(x)

    backbone.forward = dies_after_three_batches
    with pytest.raises(KeyboardInterrupt):
        extract_features(backbone, task, batch_size=16, checkpoint_rows=16, num_workers=0, cache_dir=tmp_path,
                         progress=False)
    (folder,) = tmp_path.glob("*.partial")
    assert sorted(p.name for p in folder.iterdir()) == ["rows-0-16.safetensors", "rows-16-32.safetensors",
                                                        "rows-32-48.safetensors"]
    calls[0] = -100  # no more failures; count the forward passes of the resumed run
    resumed = extract_features(backbone, task, batch_size=16, checkpoint_rows=16, num_workers=0, cache_dir=tmp_path,
                               progress=False)
    assert resumed.resumed_rows == 48 and calls[0] == -100 + 5  # only the 5 missing chunks ran
    np.testing.assert_allclose(resumed.features, reference, rtol=1e-5, atol=1e-6)
    assert not folder.exists() and resumed.cache_path.is_file()  # checkpoints folded into the cache


def test_killed_embed_resumes_from_its_checkpoints(upstream, model_repos, embed_home, tmp_path):
    home = tmp_path  # a fresh feature cache; the weights come from the module's HF_HOME
    env = _env(upstream.url, home, HF_HOME=str(embed_home / "hf"), HF_SPIDER_CHECKPOINT_ROWS="8")
    args = ["embed", MODEL, "--baseline", BASELINE, "--reference", REFERENCE, "--steps", "50", "--no-push", "--force",
            "--json"]
    first = subprocess.Popen([sys.executable, "-m", "hf_spider.cli", *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not _checkpoints(home / "cache") and first.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=60) == -signal.SIGKILL, first.stderr.read().decode()[-3000:]
    saved = _checkpoints(home / "cache")
    assert saved, "killed before any checkpoint was written"
    saved_rows = sum(int(b) - int(a) for a, b in (re.search(r"rows-(\d+)-(\d+)", p).groups() for p in saved))

    # the same command, with hf_spider's INFO log shown so that the resumption can be read
    show_log = ("import logging, sys; logging.basicConfig(); logging.getLogger('hf_spider').setLevel(logging.INFO); "
                "from hf_spider.cli import main; sys.argv[0] = 'hf_spider'; main()")
    second = subprocess.run([sys.executable, "-c", show_log, *args], env=env, capture_output=True, text=True,
                            timeout=400, check=False)
    assert second.returncode == 0, second.stderr[-3000:]
    reported = [int(m) for m in re.findall(r"Resuming features of .*: (\d+) of 120 rows", second.stderr)]
    assert sum(reported) == saved_rows and saved_rows % 8 == 0  # every saved chunk reused, none recomputed
    assert not _checkpoints(home / "cache") and len(list((home / "cache" / "features").glob("*.partial"))) == 0

    task = load_task(str(FIXTURES / "digits-mini"), split="train")
    cached = {}
    for path in (home / "cache" / "features").glob("*.safetensors"):
        with safe_open(str(path), framework="np") as f:
            cached[f.metadata()["model_id"]] = f.get_tensor("features")
    assert set(cached) == {MODEL, BASELINE}
    for repo, features in cached.items():  # the resumed features are those of an uninterrupted run
        direct = extract_features(load_backbone(str(ZOO / repo.split("/")[1])), task, use_cache=False,
                                  num_workers=0, progress=False).features
        np.testing.assert_allclose(features, direct, rtol=1e-5, atol=1e-6)
