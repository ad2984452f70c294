"""extract_features: equal to a direct forward, cached (no forward on a hit), robust cache, accelerate shards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from safetensors import safe_open
from test_backbones import new_repo_id, push_hf_vit, push_timm_model
from test_tasks import image_dataset, png, push_digits

from hf_spider.backbones import load_backbone
from hf_spider.errors import DatasetError, InvalidInputError
from hf_spider.features import default_cache_dir, extract_features
from hf_spider.tasks import load_task


@pytest.fixture(scope="module")
def digits(api: HfApi) -> str:
    return push_digits(api)


@pytest.fixture(scope="module")
def timm_repo(api: HfApi) -> str:
    repo = new_repo_id("feat-timm")
    push_timm_model(repo, num_classes=5)
    return repo


@pytest.fixture(scope="module")
def task(digits: str):
    return load_task(digits, split="test")


def direct(backbone, task, fn) -> torch.Tensor:
    """``fn`` applied to the whole task preprocessed in one batch, in one thread: the reference."""
    x = torch.stack([backbone.transform(task.image(i)) for i in range(len(task))])
    with torch.inference_mode():
        return fn(backbone.model, x)


def count_forwards(module: torch.nn.Module) -> list[int]:
    """Calls of every leaf module (Backbone.forward uses forward_features/forward_head, not the root)."""
    calls = [0]
    for leaf in module.modules():
        if not list(leaf.children()):
            leaf.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_timm_features_and_source_probs_match_direct_forward(timm_repo: str, task, tmp_path: Path):
    backbone = load_backbone(timm_repo, device="cpu")
    layouts = []  # convolutions get channels-last batches, the faster layout on CPU too
    stem = next(m for m in backbone.model.modules() if isinstance(m, torch.nn.Conv2d))
    stem.register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    result = extract_features(backbone, task, batch_size=16, num_workers=1, with_source_probs=True,
                              cache_dir=tmp_path, progress=False)
    assert layouts and all(layouts)
    ref = direct(backbone, task, lambda m, x: m.forward_head(m.forward_features(x), pre_logits=True))
    probs = direct(backbone, task, lambda m, x: torch.softmax(m(x), dim=-1))
    assert result.features.dtype == np.float32 and result.features.shape == (40, 64)
    np.testing.assert_allclose(result.features, ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(result.source_probs, probs.numpy(), atol=1e-5)
    assert np.array_equal(result.labels, task.labels)
    assert (result.revision, result.task_fingerprint, result.from_cache) == (backbone.revision, task.fingerprint, False)
    assert result.stats["forward"] > 0 and result.stats["total"] >= result.stats["forward"]

    # batch size and workers change nothing
    other = extract_features(backbone, task, batch_size=7, num_workers=0, use_cache=False, progress=False)
    np.testing.assert_allclose(other.features, result.features, atol=1e-5)


def test_transformers_features_match_pooler_and_logits(task, tmp_path: Path):
    repo = new_repo_id("feat-vit")
    push_hf_vit(repo)
    backbone = load_backbone(repo, device="cpu")
    result = extract_features(backbone, task, batch_size=16, num_workers=0, cache_dir=tmp_path, progress=False)
    ref = direct(backbone, task, lambda m, x: m(pixel_values=x).pooler_output)
    np.testing.assert_allclose(result.features, ref.numpy(), atol=1e-5)
    with pytest.raises(InvalidInputError, match="no classifier head"):
        extract_features(backbone, task, with_source_probs=True, use_cache=False, progress=False)

    repo = new_repo_id("feat-vitcls")
    push_hf_vit(repo, num_labels=3)
    classifier = load_backbone(repo, device="cpu")
    result = extract_features(classifier, task, num_workers=0, with_source_probs=True, cache_dir=tmp_path,
                              progress=False)
    probs = direct(classifier, task, lambda m, x: torch.softmax(m(pixel_values=x).logits, dim=-1))
    np.testing.assert_allclose(result.source_probs, probs.numpy(), atol=1e-5)
    assert result.source_probs.shape == (40, 3)


def test_second_call_is_a_cache_hit_without_forward(timm_repo: str, task, tmp_path: Path):
    backbone = load_backbone(timm_repo, device="cpu")
    calls = count_forwards(backbone.model)
    first = extract_features(backbone, task, with_source_probs=True, cache_dir=tmp_path, num_workers=0, progress=False)
    assert calls[0] > 0 and first.cache_path.is_file() and not first.from_cache
    # no temp file left behind; the model's signature is remembered by its commit (features.cached_features)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.cache_path.name, "models"])
    assert [p.suffix for p in (tmp_path / "models").iterdir()] == [".json"]
    with safe_open(str(first.cache_path), framework="np") as f:
        meta = f.metadata()
    assert (meta["model_id"], meta["revision"], meta["task_fingerprint"]) == (
        timm_repo, backbone.revision, task.fingerprint)
    assert (meta["n"], meta["d"]) == ("40", "64") and "hf_spider_version" in meta
    assert first.stats["computed"] == first.stats["total"] > 0 and float(meta["seconds"]) > 0

    calls[0] = 0
    second = extract_features(backbone, task, with_source_probs=True, cache_dir=tmp_path, progress=False)
    assert second.from_cache and calls[0] == 0
    assert second.stats["total"] == 0 and second.stats["computed"] == pytest.approx(first.stats["total"], abs=1e-3)
    assert np.array_equal(second.features, first.features) and np.array_equal(second.source_probs, first.source_probs)

    # a freshly loaded backbone (same commit) and a model id string hit the same file
    fresh = load_backbone(timm_repo, device="cpu")
    fresh.forward = lambda x: (_ for _ in ()).throw(AssertionError("forward on a cache hit"))
    assert extract_features(fresh, task, with_source_probs=True, cache_dir=tmp_path, progress=False).from_cache
    assert extract_features(timm_repo, task, with_source_probs=True, cache_dir=tmp_path, progress=False).from_cache

    # other outputs, another task or other preprocessing: other keys
    calls[0] = 0
    assert not extract_features(backbone, task, cache_dir=tmp_path, num_workers=0, progress=False).from_cache
    sub = task.select(range(10))
    assert not extract_features(backbone, sub, cache_dir=tmp_path, num_workers=0, progress=False).from_cache
    assert calls[0] > 0 and len(list(tmp_path.glob("*.safetensors"))) == 3


def test_corrupt_or_mismatched_cache_is_recomputed(timm_repo: str, task, tmp_path: Path, caplog):
    backbone = load_backbone(timm_repo, device="cpu")
    reference = extract_features(backbone, task, cache_dir=tmp_path, num_workers=0, progress=False)
    path = reference.cache_path
    calls = count_forwards(backbone.model)

    path.write_bytes(path.read_bytes()[:200])  # truncated
    again = extract_features(backbone, task, cache_dir=tmp_path, num_workers=0, progress=False)
    assert not again.from_cache and calls[0] > 0 and "Ignoring feature cache" in caplog.text
    np.testing.assert_array_equal(again.features, reference.features)
    assert extract_features(backbone, task, cache_dir=tmp_path, progress=False).from_cache  # rewritten

    from safetensors.numpy import save_file

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    save_file({"features": np.zeros((39, 64), np.float32), "labels": task.labels[:39]}, str(path), metadata=meta)
    assert not extract_features(backbone, task, cache_dir=tmp_path, num_workers=0, progress=False).from_cache
    save_file({"features": np.zeros((40, 64), np.float32), "labels": task.labels}, str(path),
              metadata={**meta, "key": "0" * 64})
    recomputed = extract_features(backbone, task, cache_dir=tmp_path, num_workers=0, progress=False)
    assert not recomputed.from_cache
    np.testing.assert_array_equal(recomputed.features, reference.features)


def test_builtin_model_cache_keyed_by_weights(task, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_SPIDER_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "features"
    small = task.select(range(6))
    one = load_backbone("test_vit", device="cpu")
    first = extract_features(one, small, num_workers=0, progress=False)
    assert first.cache_path.parent == tmp_path / "features" and first.revision is None
    assert extract_features(one, small, progress=False).from_cache
    other = load_backbone("test_vit", device="cpu")  # different random weights: a different key
    assert not extract_features(other, small, num_workers=0, progress=False).from_cache


def test_decoding_error_in_a_worker_names_the_image(tmp_path: Path):
    images = [png((i * 30, 0, 0)) for i in range(6)]
    images[4] = b"broken"
    task = load_task(image_dataset(images, [0, 1, 0, 1, 0, 1]), check_images=False)
    backbone = load_backbone("test_vit", device="cpu")
    with pytest.raises(DatasetError, match="image 4 cannot be decoded"):
        extract_features(backbone, task, num_workers=1, use_cache=False, progress=False)


def test_accelerate_two_processes_match_one(timm_repo: str, digits: str, tmp_path: Path):
    split = "test[:39]"  # odd: the second shard is padded, the padding must be dropped
    task = load_task(digits, split=split)
    single = extract_features(load_backbone(timm_repo, device="cpu"), task, with_source_probs=True,
                              use_cache=False, num_workers=0, progress=False)
    out = tmp_path / "features.npz"
    # --multi_gpu is accelerate's torchrun launcher; with no GPU visible each process runs on CPU (gloo).
    # (`accelerate launch --cpu` starts a single process unless an MPI hostfile is given.)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", "0", str(Path(__file__).with_name("accelerate_extract.py")),
               timm_repo, digits, split, str(out), str(tmp_path / "cache")]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    parallel = np.load(out)
    assert int(parallel["num_processes"]) == 2
    assert parallel["features"].shape == (39, 64)
    np.testing.assert_allclose(parallel["features"], single.features, atol=1e-5)
    np.testing.assert_allclose(parallel["source_probs"], single.source_probs, atol=1e-5)
    assert np.array_equal(parallel["labels"], task.labels)
    # the main process wrote the cache; the second call was a hit in both processes
    assert parallel["from_cache"].tolist() == [False, True]
    assert np.array_equal(parallel["cached_features"], parallel["features"])
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
