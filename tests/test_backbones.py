"""load_backbone against the local Hub: timm and transformers repos, local folders, builtins, safety checks."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from huggingface_hub import HfApi

from hf_spider.backbones import Backbone, check_weight_files, load_backbone, parse_model_id
from hf_spider.constants import MICRO_ZOO
from hf_spider.errors import ModelLoadError, UnsafeArtifactError

VIT_SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, image_size=32,
                 patch_size=8)


# ------------------------------------------------------------------- helpers (also used by test_features)


def new_repo_id(prefix: str) -> str:
    return f"tests/{prefix}-{uuid.uuid4().hex[:8]}"


def push_timm_model(repo_id: str, *, num_classes: int = 5) -> torch.nn.Module:
    """A tiny timm ViT (test_vit at 64 px, d=64) with a ``num_classes`` head, pushed with timm's own tool."""
    import timm
    from timm.models import push_to_hf_hub

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=num_classes, img_size=64,
                              pretrained_cfg_overlay={"input_size": (3, 64, 64)}).eval()
    push_to_hf_hub(model, repo_id, safe_serialization=True)
    return model


def push_hf_vit(repo_id: str, *, num_labels: int | None = None) -> torch.nn.Module:
    """A tiny transformers ViT (32 px, d=32): ``ViTModel`` with a pooler, or a classifier with ``num_labels``."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    if num_labels is None:
        model = ViTModel(ViTConfig(**VIT_SIZES)).eval()
    else:
        config = ViTConfig(**VIT_SIZES, num_labels=num_labels, id2label={i: f"c{i}" for i in range(num_labels)})
        model = ViTForImageClassification(config).eval()
    model.push_to_hub(repo_id)
    ViTImageProcessor(size={"height": 32, "width": 32}).push_to_hub(repo_id)
    return model


def digit_images(n: int = 4) -> list[PIL.Image.Image]:
    rng = np.random.default_rng(0)
    return [PIL.Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def batch(backbone: Backbone, images: list[PIL.Image.Image]) -> torch.Tensor:
    return torch.stack([backbone.transform(im) for im in images])


# ------------------------------------------------------------------------------------------------ tests


def test_parse_model_id_forms():
    assert parse_model_id("hf-hub:org/name@v1") == ("hub", "org/name", "v1")
    assert parse_model_id("org/name@abc") == ("hub", "org/name", "abc")
    assert parse_model_id("org/name") == ("hub", "org/name", None)
    assert parse_model_id("resnet18") == ("builtin", "resnet18", None)
    assert parse_model_id("local-dir:/x/y") == ("local", "/x/y", None)


def test_timm_repo_from_hub(api: HfApi):
    from timm.data import create_transform, resolve_model_data_config

    repo = new_repo_id("timm")
    model = push_timm_model(repo)
    sha = api.model_info(repo).sha
    backbone = load_backbone(repo, device="cpu")
    assert (backbone.library, backbone.revision, backbone.model_id) == ("timm", sha, repo)
    assert (backbone.feature_dim, backbone.num_source_classes) == (64, 5)
    assert not backbone.model.training
    expected = create_transform(**resolve_model_data_config(model), is_training=False)
    assert backbone.preprocess_config == repr(expected)  # the model's own preprocessing (64 px, mean 0.5)
    assert "CenterCrop(size=(64, 64))" in backbone.preprocess_config

    x = batch(backbone, digit_images())
    assert x.shape == (4, 3, 64, 64)
    with torch.inference_mode():
        features, logits = backbone.forward(x)
        assert torch.allclose(features, model.forward_head(model.forward_features(x), pre_logits=True), atol=1e-6)
        assert torch.allclose(logits, model(x), atol=1e-6)

    # same commit through the hf-hub: prefix and an explicit @revision
    assert load_backbone(f"hf-hub:{repo}", device="cpu").revision == sha
    assert load_backbone(f"{repo}@main", device="cpu").revision == sha


def test_transformers_vit_model_uses_pooler_output(api: HfApi):
    repo = new_repo_id("vit")
    model = push_hf_vit(repo)
    backbone = load_backbone(repo, device="cpu")
    assert (backbone.library, backbone.feature_dim, backbone.num_source_classes) == ("transformers", 32, None)
    assert backbone.revision == api.model_info(repo).sha
    x = batch(backbone, digit_images())
    assert x.shape == (4, 3, 32, 32)
    with torch.inference_mode():
        features, logits = backbone.forward(x)
        assert logits is None
        assert torch.allclose(features, model(pixel_values=x).pooler_output, atol=1e-6)


def test_transformers_classifier_gives_logits_and_cls_features():
    repo = new_repo_id("vitcls")
    model = push_hf_vit(repo, num_labels=3)
    backbone = load_backbone(repo, device="cpu")
    assert type(backbone.model).__name__ == "ViTForImageClassification"
    assert (backbone.feature_dim, backbone.num_source_classes) == (32, 3)
    x = batch(backbone, digit_images())
    with torch.inference_mode():
        features, logits = backbone.forward(x)
        assert torch.allclose(logits, model(pixel_values=x).logits, atol=1e-6)
        assert torch.allclose(features, model.vit(pixel_values=x).last_hidden_state[:, 0], atol=1e-6)


def test_pickle_only_timm_repo_needs_allow_pickle(api: HfApi, tmp_path: Path):
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(1)
    model = timm.create_model("test_vit", num_classes=4, img_size=64,
                              pretrained_cfg_overlay={"input_size": (3, 64, 64)}).eval()
    save_for_hf(model, tmp_path, safe_serialization=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "pytorch_model.bin"]
    repo = new_repo_id("pickle-timm")
    api.create_repo(repo)
    api.upload_folder(folder_path=tmp_path, repo_id=repo)

    with pytest.raises(UnsafeArtifactError, match=r"pytorch_model\.bin"):
        load_backbone(repo, device="cpu")
    backbone = load_backbone(repo, allow_pickle=True, device="cpu")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(backbone.forward(x)[1], model(x), atol=1e-6)


def test_pickle_only_transformers_repo_needs_allow_pickle(api: HfApi, tmp_path: Path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(2)
    model = ViTModel(ViTConfig(**VIT_SIZES)).eval()
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    repo = new_repo_id("pickle-vit")
    api.create_repo(repo)
    api.upload_folder(folder_path=tmp_path, repo_id=repo)

    with pytest.raises(UnsafeArtifactError, match="allow_pickle"):
        load_backbone(repo, device="cpu")
    backbone = load_backbone(repo, allow_pickle=True, device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(backbone.forward(x)[0], model(pixel_values=x).pooler_output, atol=1e-6)


def test_remote_code_is_refused_without_trust(api: HfApi, tmp_path: Path):
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "custom", "architectures": ["CustomModel"], "auto_map": {"AutoModel": "modeling.CustomModel"}}))
    save_file({"w": torch.zeros(1)}, tmp_path / "model.safetensors")
    repo = new_repo_id("remote-code")
    api.create_repo(repo)
    api.upload_folder(folder_path=tmp_path, repo_id=repo)
    with pytest.raises(UnsafeArtifactError, match="trust_remote_code"):
        load_backbone(repo, device="cpu")


def test_builtin_and_local_folder(tmp_path: Path):
    from timm.models import save_for_hf

    builtin = load_backbone("test_vit", device="cpu")
    assert (builtin.library, builtin.revision, builtin.feature_dim, builtin.num_source_classes) == (
        "timm", None, 64, 1000)
    digest = builtin.weights_hash()
    assert len(digest) == 64 and builtin.weights_hash() == digest
    assert load_backbone("test_vit", device="cpu").weights_hash() != digest  # random init: other weights

    save_for_hf(builtin.model, tmp_path, safe_serialization=True)
    local = load_backbone(str(tmp_path), device="cpu")
    assert (local.library, local.revision, local.model_id) == ("timm", None, str(tmp_path))
    assert local.weights_hash() == digest
    x = torch.randn(2, 3, 160, 160)
    with torch.inference_mode():
        assert torch.equal(local.forward(x)[0], builtin.forward(x)[0])


def test_load_errors(api: HfApi, tmp_path: Path):
    with pytest.raises(ModelLoadError, match="resnet18"):
        load_backbone("resnet18x", device="cpu")  # close match suggested
    with pytest.raises(ModelLoadError, match="not found"):
        load_backbone("tests/no-such-model", device="cpu")
    repo = new_repo_id("unknown-config")
    api.create_repo(repo)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    api.upload_folder(folder_path=tmp_path, repo_id=repo)
    with pytest.raises(ModelLoadError, match="architecture"):
        load_backbone(repo, device="cpu")
    with pytest.raises(ModelLoadError, match="no weights"):
        check_weight_files(["config.json", "README.md"], allow_pickle=True, where="x")
    check_weight_files(["model.safetensors", "pytorch_model.bin"], allow_pickle=False, where="x")  # safe wins
    with pytest.raises(UnsafeArtifactError, match="only has pickle weights"):  # a file in a folder is no weights
        check_weight_files(["hf_spider/org--base.safetensors", "pytorch_model.bin"], allow_pickle=False, where="x")


def test_local_folder_backbone_is_identified_by_a_hash_of_its_weights():
    """Folder models have no commit: their cache identity is a hash of every parameter and buffer
    (BatchNorm's 0-d ``num_batches_tracked`` included)."""
    folder = MICRO_ZOO / "models" / "resnet10-animals"
    first, second = load_backbone(str(folder)), load_backbone(str(folder))
    assert first.revision is None and first.library == "timm"
    assert len(first.weights_hash()) == 64 and first.weights_hash() == second.weights_hash()
    with torch.no_grad():
        next(second.model.parameters()).add_(1e-3)
    second._weights_hash = None
    assert second.weights_hash() != first.weights_hash()
