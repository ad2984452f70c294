"""Contract tests: timm, transformers, PyTorchModelHubMixin and datasets against the local Hub."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import FIXTURES
from huggingface_hub import HfApi, PyTorchModelHubMixin


def test_timm_push_to_hf_hub_then_create_model_from_hf_hub(api: HfApi, repo_id: str):
    import timm
    from timm.models import push_to_hf_hub

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=7).eval()
    push_to_hf_hub(model, repo_id)
    assert {"config.json", "model.safetensors", "README.md"} <= set(api.list_repo_files(repo_id))

    loaded = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    x = torch.randn(2, 3, 160, 160)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert loaded.pretrained_cfg["hf_hub_id"] == repo_id
    assert "timm" in api.model_info(repo_id).tags


def test_transformers_auto_model_from_pretrained(api: HfApi, repo_id: str):
    from transformers import AutoImageProcessor, AutoModel, ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                       image_size=32, patch_size=8)
    model = ViTModel(config).eval()
    model.push_to_hub(repo_id)
    ViTImageProcessor(size={"height": 32, "width": 32}).push_to_hub(repo_id)

    loaded = AutoModel.from_pretrained(repo_id).eval()
    processor = AutoImageProcessor.from_pretrained(repo_id)
    assert type(loaded).__name__ == "ViTModel" and processor.size == {"height": 32, "width": 32}
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(pixel_values=x).pooler_output, loaded(pixel_values=x).pooler_output)
    assert "model.safetensors" in api.list_repo_files(repo_id)


class TinyRanker(torch.nn.Module, PyTorchModelHubMixin, library_name="hf_spider", tags=["hf-spider-test"]):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_pytorch_model_hub_mixin_push_and_load(api: HfApi, repo_id: str):
    torch.manual_seed(0)
    model = TinyRanker(width=5)
    model.push_to_hub(repo_id)
    loaded = TinyRanker.from_pretrained(repo_id)
    assert loaded.linear.in_features == 5
    x = torch.randn(3, 5)
    assert torch.equal(model(x), loaded(x))
    info = api.model_info(repo_id)
    assert info.library_name == "hf_spider" and "hf-spider-test" in info.tags


def test_datasets_load_dataset_from_a_dataset_repo(api: HfApi, repo_id: str):
    import datasets

    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id=repo_id, repo_type="dataset")

    ds = datasets.load_dataset(repo_id)
    assert ds["train"].num_rows == 120 and ds["test"].num_rows == 40
    assert ds["train"].features["label"].names == [str(i) for i in range(10)]
    image = ds["train"][0]["image"]
    assert image.size == (32, 32)
    assert sorted(set(ds["test"]["label"])) == list(range(10))

    streamed = datasets.load_dataset(repo_id, split="test", streaming=True)  # Range requests on resolve
    assert sum(1 for _ in streamed) == 40
    assert api.dataset_info(repo_id).card_data.license == "bsd-3-clause"


def test_hf_spiders_client_names_itself_and_reads_the_endpoint_at_each_call(tmp_path, monkeypatch):
    """Every hf_spider call to the Hub says ``hf_spider/<version>`` in its User-Agent (``library_name``), and goes
    to the endpoint ``HF_ENDPOINT`` names when the call is made, whatever it was when huggingface_hub was imported."""
    from hf_spider import __version__
    from hf_spider.hub.client import download, hub_api
    from hf_spider.localhub import LocalHub, server

    agents: list[str] = []
    dispatch = server._Handler._dispatch

    def recording(self, method):
        agents.append(self.headers.get("User-Agent", ""))
        dispatch(self, method)

    monkeypatch.setattr(server._Handler, "_dispatch", recording)
    with LocalHub(tmp_path / "other-hub") as other:
        HfApi(endpoint=other.url, token="t").create_repo("elsewhere/model")
        HfApi(endpoint=other.url, token="t").upload_file(path_or_fileobj=b"x", path_in_repo="f.txt",
                                                         repo_id="elsewhere/model")
        agents.clear()
        monkeypatch.setenv("HF_ENDPOINT", other.url)
        assert hub_api().model_info("elsewhere/model").id == "elsewhere/model"
        assert Path(download("elsewhere/model", "f.txt", revision="main")).read_text() == "x"
    assert agents and all(f"hf_spider/{__version__}" in agent for agent in agents), agents
