"""Rankers from the Hub are untrusted: 200 malformed ranker repos are each rejected with a reason."""

from __future__ import annotations

import json
import pickle
import random

import pytest
import torch
from huggingface_hub import CommitOperationAdd
from safetensors.torch import save as save_tensors

from hf_spider.errors import InvalidArtifactError, ModelLoadError, UnsafeArtifactError
from hf_spider.spider.hub import MAX_WIDTH, load_ranker
from hf_spider.spider.model import SpiderRanker

CONFIG = {"encoder": "org/enc", "encoder_dim": 8, "dim": 16, "token_source": "embedding", "models": [],
          "baseline": "org/base", "embedding_dim": 6, "specific_widths": [4], "dropout": 0.1, "default_rerank": 2,
          "label_scores": ["logme"]}


KINDS = 13


def _valid_files() -> dict[str, bytes]:
    torch.manual_seed(0)
    ranker = SpiderRanker(**CONFIG)
    return {"config.json": json.dumps(CONFIG).encode(),
            "model.safetensors": save_tensors({k: v.contiguous() for k, v in ranker.state_dict().items()})}


def _malformed(rng: random.Random, i: int) -> dict[str, bytes]:
    """One of many ways a ranker repo can be broken or hostile."""
    files = _valid_files()
    config = dict(CONFIG)
    kind = i % KINDS
    if kind == 0:  # the config is not JSON / not an object / truncated
        files["config.json"] = rng.choice([b"{", b"[1, 2]", b"\xff\xfe", b"null",
                                           files["config.json"][: rng.randint(1, 40)]])
    elif kind == 1:  # unknown or hostile keys
        config[rng.choice(["__class__", "trust_remote_code", "eval", f"x{i}"])] = 1
    elif kind == 2:  # sizes that would allocate gigabytes, or nonsense
        config[rng.choice(["dim", "encoder_dim", "embedding_dim"])] = rng.choice([0, -3, 10**9, 2**40, "16", 1.5, True])
    elif kind == 3:
        config["specific_widths"] = rng.choice([[0], [-1], ["4"], 4, [10**9], None])
    elif kind == 4:
        config[rng.choice(["models", "label_scores"])] = rng.choice([[1], "logme", [None], {"a": 1}])
    elif kind == 5:
        config[rng.choice(["encoder", "baseline", "token_source"])] = rng.choice([3, ["x"], {"a": 1}, "", "  "])
    elif kind == 6:  # weights truncated or garbage
        blob = files["model.safetensors"]
        files["model.safetensors"] = rng.choice([blob[: rng.randint(0, len(blob) - 1)], b"\x00" * 64,
                                                 (2**62).to_bytes(8, "little") + b"{}", rng.randbytes(200)])
    elif kind == 7:  # weights of another shape (a tensor resized) or a tensor missing / extra
        tensors = {k: v.clone() for k, v in SpiderRanker(**CONFIG).state_dict().items()}
        key = rng.choice(sorted(tensors))
        action = rng.choice(["resize", "drop", "extra"])
        if action == "resize":
            tensors[key] = torch.zeros(tensors[key].numel() + 1)
        elif action == "drop":
            del tensors[key]
        else:
            tensors["backdoor.weight"] = torch.zeros(3)
        files["model.safetensors"] = save_tensors(tensors)
    elif kind == 8:  # pickled weights only
        del files["model.safetensors"]
        files["pytorch_model.bin"] = pickle.dumps({"not": "loaded"})
    elif kind == 9:  # the config describes a different architecture than the weights
        config["dim"] = 32
    elif kind == 10:  # a weight that is NaN or infinite
        tensors = {k: v.clone() for k, v in SpiderRanker(**CONFIG).state_dict().items()}
        tensors[rng.choice(sorted(tensors))].view(-1)[0] = rng.choice([float("nan"), float("inf"), -float("inf")])
        files["model.safetensors"] = save_tensors(tensors)
    elif kind == 11:  # weights with nothing saying what they are
        del files["config.json"]
    else:  # every field legal, together gigabytes: refused before anything is allocated
        widths = [MAX_WIDTH - j for j in range(rng.randint(2, 60))]
        config.update(dim=4096, encoder_dim=MAX_WIDTH, specific_widths=widths)
    if kind in (1, 2, 3, 4, 5, 9, 12):
        files["config.json"] = json.dumps(config).encode()
    return files


def test_two_hundred_malformed_ranker_repos_are_rejected_with_reasons(api, repo_id):
    rng = random.Random(0)
    repos = {}
    for i in range(200):
        repo = f"{repo_id}-{i}"
        api.create_repo(repo)
        api.create_commit(repo, [CommitOperationAdd(name, data) for name, data in _malformed(rng, i).items()],
                          commit_message="malformed ranker")
        repos[repo] = i % KINDS
    reasons = {}
    for repo in repos:
        with pytest.raises((InvalidArtifactError, UnsafeArtifactError)) as caught:
            load_ranker(repo)
        reasons[repo] = str(caught.value)
    assert len(reasons) == 200 and all(repo in reason for repo, reason in reasons.items())
    expected = {8: "pickled", 10: "NaN or infinite", 11: "no config.json", 12: "parameters, more than"}
    assert all(expected[kind] in reasons[r] for r, kind in repos.items() if kind in expected), reasons
    with pytest.raises(ModelLoadError, match="not found"):
        load_ranker(f"{repo_id}-never-created")
    good = f"{repo_id}-valid"
    api.create_repo(good)
    api.create_commit(good, [CommitOperationAdd(n, d) for n, d in _valid_files().items()], commit_message="ok")
    assert load_ranker(good).default_rerank == 2  # the validator does not reject a valid ranker


def test_the_mixins_from_pretrained_is_the_safe_loader(api, repo_id, tmp_path):
    """``SpiderRanker.from_pretrained`` (huggingface_hub's public path) never unpickles: a repo holding only a
    pickle that would create a marker file is refused, and the marker never appears."""
    import os

    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    files = _valid_files()
    del files["model.safetensors"]
    files["pytorch_model.bin"] = pickle.dumps(Payload())
    api.create_repo(repo_id)
    api.create_commit(repo_id, [CommitOperationAdd(n, d) for n, d in files.items()], commit_message="pickle only")
    for load in (SpiderRanker.from_pretrained, super(SpiderRanker, SpiderRanker).from_pretrained):  # ours, the mixin's
        with pytest.raises(UnsafeArtifactError, match="pickled weights are never loaded"):
            load(repo_id)
    assert not marker.exists()
    good = f"{repo_id}-valid"
    api.create_repo(good)
    api.create_commit(good, [CommitOperationAdd(n, d) for n, d in _valid_files().items()], commit_message="ok")
    ranker = SpiderRanker.from_pretrained(good)
    torch.manual_seed(0)
    expected = SpiderRanker(**CONFIG)
    assert all(torch.equal(a, b) for a, b in zip(ranker.state_dict().values(), expected.state_dict().values(),
                                                strict=True))
