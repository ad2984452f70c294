"""Loading untrusted weights never unpickles: each payload here would create a marker file if it ever were.

The guard looks at the file that will actually be loaded, not at the repo's file list: a repo carrying an
hf_spider embedding (``hf_spider/*.safetensors``) beside a pickle, or a timm config naming a ``.pth`` file,
is refused; with ``allow_pickle=True`` the pickle still goes through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hf_spider.backbones import load_backbone
from hf_spider.constants import MICRO_ZOO
from hf_spider.errors import ModelLoadError, UnsafeArtifactError

ZOO_MODEL = MICRO_ZOO / "models" / "resnet10-animals"


class _Payload:
    """Unpickling this creates ``marker``: the test fails if the file exists afterwards."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _payload(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": _Payload(marker)}, protocol=2)  # the protocol torch.save uses


def _repo(api: HfApi, files: dict[str, bytes | Path]) -> str:
    repo = f"pickle-guard/{uuid.uuid4().hex[:10]}"
    api.create_repo(repo)
    for path, content in files.items():
        api.upload_file(path_or_fileobj=content if isinstance(content, bytes) else str(content), path_in_repo=path,
                        repo_id=repo)
    return repo


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "unpickled"
    yield path
    assert not path.exists(), "a pickle payload was unpickled"


def test_an_embedding_file_beside_a_pickle_does_not_count_as_safe_weights(api, marker):
    repo = _repo(api, {"config.json": ZOO_MODEL / "config.json", "pytorch_model.bin": _payload(marker),
                       "hf_spider/org--baseline.safetensors": ZOO_MODEL / "model.safetensors"})
    with pytest.raises(UnsafeArtifactError, match=r"only has pickle weights \(pytorch_model\.bin\)"):
        load_backbone(repo, device="cpu")


def test_a_timm_config_naming_a_pickle_file_is_refused(api, marker):
    config = json.loads((ZOO_MODEL / "config.json").read_text())
    config["pretrained_cfg"]["hf_hub_filename"] = "weights.pth"
    repo = _repo(api, {"config.json": json.dumps(config).encode(), "model.safetensors": ZOO_MODEL / "model.safetensors",
                       "weights.pth": _payload(marker)})
    with pytest.raises(UnsafeArtifactError, match=r"pretrained_cfg\.hf_hub_filename names weights\.pth"):
        load_backbone(repo, device="cpu")


def test_allow_pickle_still_refuses_code_in_a_pickle(api, marker):
    repo = _repo(api, {"config.json": ZOO_MODEL / "config.json", "pytorch_model.bin": _payload(marker)})
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_backbone(repo, allow_pickle=True, device="cpu")


def test_a_config_describing_a_huge_model_is_refused_before_any_allocation(api, monkeypatch):
    config = json.loads((ZOO_MODEL / "config.json").read_text())
    config["num_classes"] = config["pretrained_cfg"]["num_classes"] = 2_000_000_000  # a 1e12-parameter head
    weights = ZOO_MODEL / "model.safetensors"
    repo = _repo(api, {"config.json": json.dumps(config).encode(), "model.safetensors": weights})
    with pytest.raises(ModelLoadError, match=r"describes a model of [\d,]+ parameters, above the limit of "
                                             r"2,000,000,000 \(set HF_SPIDER_MAX_PARAMETERS to allow more\)"):
        load_backbone(repo, device="cpu")
    monkeypatch.setenv("HF_SPIDER_MAX_PARAMETERS", "1000")  # the limit is the user's: even the real model is over
    with pytest.raises(ModelLoadError, match="above the limit of 1,000"):
        load_backbone(str(ZOO_MODEL), device="cpu")


def test_a_transformers_config_describing_a_huge_model_is_refused(api, tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=4_000_000_000,
              image_size=32, patch_size=8).save_pretrained(tmp_path)
    repo = _repo(api, {"config.json": tmp_path / "config.json", "model.safetensors": ZOO_MODEL / "model.safetensors"})
    with pytest.raises(ModelLoadError, match="above the limit of 2,000,000,000"):
        load_backbone(repo, device="cpu")
