"""ONNX repos as backbones: a tiny torch model exported to ONNX, pushed to the local Hub, run by onnxruntime."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import PIL.Image
import pytest
import torch
from huggingface_hub import HfApi, try_to_load_from_cache
from onnx import numpy_helper

from hf_spider.backbones import OnnxBackbone, load_backbone
from hf_spider.errors import InvalidArtifactError, InvalidInputError, ModelLoadError

MEAN, STD = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]


class TinyNet(torch.nn.Module):
    """conv-BN-ReLU-conv: a 4-D feature map ``[B, 16, 8, 8]`` and logits of its spatial mean."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8),
                                        torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.head = torch.nn.Linear(16, 5)
        with torch.no_grad():  # BN statistics that are not the identity
            self.body[1].running_mean.uniform_(-0.5, 0.5)
            self.body[1].running_var.uniform_(0.5, 2.0)
        self.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.body(x)
        return fmap, self.head(fmap.mean(dim=(2, 3)))


class NhwcBgr(torch.nn.Module):
    """The same network behind an NHWC, BGR input, with an NHWC feature map."""

    def __init__(self, net: TinyNet) -> None:
        super().__init__()
        self.net = net
        self.eval()  # the exporter restores the wrapper's mode, and with it the network's

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap, logits = self.net(x.permute(0, 3, 1, 2)[:, [2, 1, 0]])
        return fmap.permute(0, 2, 3, 1), logits


def export(module: torch.nn.Module, path: Path, *, nhwc: bool = False) -> None:
    example = torch.zeros(1, 32, 32, 3) if nhwc else torch.zeros(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=["pixels"], output_names=["fmap", "logits"],
                          dynamic_axes={"pixels": {0: "b"}, "fmap": {0: "b"}, "logits": {0: "b"}}, dynamo=False)


def onnx_config(**onnx_fields) -> dict:
    return {"onnx": {"file": "model.onnx", "input": "pixels", "features": "fmap", "logits": "logits",
                     "layout": "NCHW", **onnx_fields},
            "preprocessing": {"input_size": [3, 32, 32], "mean": MEAN, "std": STD, "interpolation": "bilinear",
                              "crop_pct": 1.0, "channel_order": "RGB"},
            "num_classes": 5}


def push_folder(api: HfApi, repo_id: str, folder: Path, config: dict) -> None:
    (folder / "config.json").write_text(json.dumps(config))
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=repo_id)


def push_onnx_model(api: HfApi, repo_id: str, folder: Path) -> TinyNet:
    """TinyNet exported to ONNX with an NCHW RGB input, pushed as an hf_spider ONNX repo."""
    folder.mkdir(parents=True, exist_ok=True)
    net = TinyNet()
    export(net, folder / "model.onnx")
    push_folder(api, repo_id, folder, onnx_config())
    return net


def push_model(api: HfApi, repo_id: str, tmp_path: Path, model: onnx.ModelProto | bytes,
               config: dict | None = None) -> None:
    """``model`` (a graph, or raw bytes) pushed as ``model.onnx`` with ``config`` (default :func:`onnx_config`)."""
    folder = tmp_path / "repo"
    folder.mkdir()
    if isinstance(model, bytes):
        (folder / "model.onnx").write_bytes(model)
    else:
        onnx.save_model(model, str(folder / "model.onnx"))
    push_folder(api, repo_id, folder, config or onnx_config())


def exported(tmp_path: Path) -> onnx.ModelProto:
    export(TinyNet(), tmp_path / "exported.onnx")
    return onnx.load(str(tmp_path / "exported.onnx"))


def images(n: int = 8) -> list[PIL.Image.Image]:
    rng = np.random.default_rng(0)
    return [PIL.Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def reference(net: TinyNet, imgs: list[PIL.Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch features (spatial mean of the map) and logits, with the preprocessing written out by hand."""
    x = np.stack([(np.asarray(im, dtype=np.float64) / 255 - MEAN) / STD for im in imgs])  # [B, H, W, 3]
    with torch.no_grad():
        fmap, logits = net(torch.from_numpy(x).permute(0, 3, 1, 2).float())
    return fmap.mean(dim=(2, 3)), logits


def assert_matches_torch(backbone, net: TinyNet, n: int = 8) -> torch.Tensor:
    """The backbone's features and logits equal the torch network's on ``n`` images to 1e-5; returns the features."""
    features, logits = run(backbone, images(n))
    want_features, want_logits = reference(net, images(n))
    torch.testing.assert_close(features, want_features, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=0)
    return features


def run(backbone, imgs) -> tuple[torch.Tensor, torch.Tensor | None]:
    with torch.inference_mode():
        return backbone.forward(torch.stack([backbone.transform(im) for im in imgs]))


def test_onnx_repo_from_the_hub_matches_torch(api: HfApi, repo_id: str, tmp_path: Path):
    net = push_onnx_model(api, repo_id, tmp_path / "repo")
    backbone = load_backbone(repo_id, device="cpu")
    assert isinstance(backbone, OnnxBackbone) and backbone.library == "onnx"
    assert (backbone.feature_dim, backbone.num_source_classes, backbone.input_size) == (16, 5, (32, 32))
    graph = onnx.load(str(tmp_path / "repo" / "model.onnx")).graph  # weights: initializers and Constant nodes
    stored = [*graph.initializer, *(a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute)]
    assert backbone.num_parameters == sum(numpy_helper.to_array(t).size for t in stored) > 1000
    assert backbone.revision == api.model_info(repo_id).sha
    assert assert_matches_torch(backbone, net).shape == (8, 16)


def test_nhwc_bgr_input_and_feature_map(api: HfApi, repo_id: str, tmp_path: Path):
    """mean/std are listed in RGB order (as timm lists them); BGR flips the normalised tensor."""
    folder = tmp_path / "repo"
    folder.mkdir()
    net = TinyNet()
    export(NhwcBgr(net), folder / "model.onnx", nhwc=True)
    config = onnx_config(layout="NHWC")
    config["preprocessing"]["channel_order"] = "BGR"
    push_folder(api, repo_id, folder, config)
    assert_matches_torch(load_backbone(repo_id, device="cpu"), net)


def test_external_data_inside_the_repo_loads(api: HfApi, repo_id: str, tmp_path: Path):
    folder = tmp_path / "repo"
    folder.mkdir()
    net = TinyNet()
    export(net, tmp_path / "inline.onnx")
    onnx.save_model(onnx.load(str(tmp_path / "inline.onnx")), str(folder / "model.onnx"),
                    save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data",
                    size_threshold=0)
    push_folder(api, repo_id, folder, onnx_config())
    backbone = load_backbone(repo_id, device="cpu")
    assert [p.name for p in backbone.data_files] == ["model.onnx.data"]
    assert_matches_torch(backbone, net, n=2)


def test_features_cache_and_weights_hash_follow_the_file(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, seed in ((first, 0), (second, 1)):
        folder.mkdir()
        net = TinyNet()
        torch.manual_seed(seed)
        with torch.no_grad():
            net.head.weight.normal_()
        export(net, folder / "model.onnx")
        (folder / "config.json").write_text(json.dumps(onnx_config()))
    a, b = load_backbone(f"local-dir:{first}"), load_backbone(f"local-dir:{second}")
    assert a.revision is None and a.weights_hash() != b.weights_hash()
    assert a.weights_hash() == load_backbone(str(first)).weights_hash()


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime has CUDA here")
def test_asking_for_cuda_without_a_provider_builds_the_cpu_session_once(tmp_path: Path, caplog):
    export(TinyNet(), tmp_path / "model.onnx")
    (tmp_path / "config.json").write_text(json.dumps(onnx_config()))
    backbone = load_backbone(f"local-dir:{tmp_path}", device="cpu")
    backbone.to("cuda")
    session = backbone.session
    assert backbone.device.type == "cpu" and "no CUDA provider" in caplog.text
    assert backbone.to("cuda").session is session  # not rebuilt on every extraction


# ------------------------------------------------------------------------------------------ hostile files


def test_oversized_model_is_refused_before_download(api: HfApi, repo_id: str, tmp_path: Path, monkeypatch):
    push_onnx_model(api, repo_id, tmp_path / "repo")
    size = (tmp_path / "repo" / "model.onnx").stat().st_size
    monkeypatch.setenv("HF_SPIDER_MAX_MODEL_BYTES", str(size - 1))
    with pytest.raises(InvalidArtifactError, match=rf"model.onnx hold {size} bytes, more than the {size - 1} allowed"):
        load_backbone(repo_id)
    assert try_to_load_from_cache(repo_id, "model.onnx") is None


def test_external_data_outside_the_repo_is_refused(api: HfApi, repo_id: str, tmp_path: Path):
    model = exported(tmp_path)
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    (tmp_path / "outside.bin").write_bytes(weight.raw_data)  # a loader following the path would find valid data
    nbytes = len(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../outside.bin"), ("offset", "0"), ("length", str(nbytes))):
        weight.external_data.add(key=key, value=value)
    push_model(api, repo_id, tmp_path, model)
    with pytest.raises(InvalidArtifactError, match=r"external data '../outside.bin', outside the repo"):
        load_backbone(repo_id)


def test_truncated_model_is_refused(api: HfApi, repo_id: str, tmp_path: Path):
    data = exported(tmp_path).SerializeToString()
    push_model(api, repo_id, tmp_path, data[: len(data) // 2])
    with pytest.raises(InvalidArtifactError, match=r"model.onnx is not an ONNX model \(truncated or damaged\?\)"):
        load_backbone(repo_id)


def test_custom_op_is_refused(api: HfApi, repo_id: str, tmp_path: Path):
    model = exported(tmp_path)
    model.graph.node[-1].domain = "com.example.ops"
    model.opset_import.add(domain="com.example.ops", version=1)
    push_model(api, repo_id, tmp_path, model)
    with pytest.raises(ModelLoadError, match=r"of domain 'com.example.ops' is a custom op"):
        load_backbone(repo_id)


def test_missing_feature_output_is_named(api: HfApi, repo_id: str, tmp_path: Path):
    push_model(api, repo_id, tmp_path, exported(tmp_path), onnx_config(features="pooled"))
    with pytest.raises(ModelLoadError, match=r"names features output 'pooled', which the model does not have "
                                             r"\(outputs: \['fmap', 'logits'\]\)"):
        load_backbone(repo_id)


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("preprocessing", "input_size", [3, 0, 32], "invalid 'input_size'"),
    ("preprocessing", "std", [1.0, 0.0, 1.0], "invalid 'std'"),
    ("onnx", "layout", "NWHC", "invalid 'layout'"),
    ("onnx", "file", "weights.bin", "invalid 'file'"),
])
def test_malformed_config_is_refused(tmp_path: Path, section, key, value, message):
    export(TinyNet(), tmp_path / "model.onnx")
    config = onnx_config()
    config[section][key] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidArtifactError, match=message):
        load_backbone(f"local-dir:{tmp_path}")


def test_fine_tuning_an_onnx_model_is_refused(tmp_path: Path):
    from hf_spider.groundtruth import fine_tune
    from hf_spider.tasks import task_from_arrays

    export(TinyNet(), tmp_path / "model.onnx")
    (tmp_path / "config.json").write_text(json.dumps(onnx_config()))
    task = task_from_arrays(np.stack([np.asarray(im) for im in images(8)]), np.arange(8) % 2)
    with pytest.raises(InvalidInputError, match=r"is an onnx model, which cannot be trained"):
        fine_tune(f"local-dir:{tmp_path}", task, task)
