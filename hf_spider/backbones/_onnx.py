"""ONNX models run by onnxruntime: a repo with ``model.onnx`` and a ``config.json`` naming its outputs.

The config (``hf_spider``'s ONNX repo format)::

    {"onnx": {"file": "model.onnx", "input": "pixel_values", "features": "pooled", "logits": null,
              "layout": "NCHW"},
     "preprocessing": {"input_size": [3, 224, 224], "mean": [0.485, 0.456, 0.406],
                       "std": [0.229, 0.224, 0.225], "interpolation": "bilinear", "crop_pct": 1.0,
                       "channel_order": "RGB"}}

``mean``/``std`` follow timm: the network sees ``(pixel / 255 - mean) / std``, listed in RGB order;
``channel_order: "BGR"`` flips the normalised tensor. ``layout`` is the input's
and, for a 4-D feature map, the features' layout; feature maps are averaged over space (4-D) or over
positions (3-D). The file is untrusted: its size is bounded before download, it is parsed without its
external data, external-data paths must stay inside the repo, and operators from unknown domains
(custom ops, which need a native library) are refused before onnxruntime sees the file.
"""

from __future__ import annotations

import logging
import math
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..constants import positive_int_env
from ..errors import InvalidArtifactError, ModelLoadError
from ._base import Backbone
from ._registry import register_library
from ._source import ModelSource

__all__ = ["OnnxBackbone", "OnnxSpec", "max_model_bytes"]

logger = logging.getLogger(__name__)

MAX_MODEL_BYTES = 2 << 30  # protobuf's own limit for one file
_REQUIRED = object()
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft"})


def max_model_bytes() -> int:
    """Largest ONNX model (file plus external data) loaded: ``$HF_SPIDER_MAX_MODEL_BYTES``, else 2 GiB."""
    return positive_int_env("HF_SPIDER_MAX_MODEL_BYTES", MAX_MODEL_BYTES)


@dataclass(frozen=True)
class OnnxSpec:
    """The ``onnx`` and ``preprocessing`` sections of an ONNX repo's ``config.json``, validated."""

    file: str
    input: str | None
    features: str
    logits: str | None
    layout: str
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float
    channel_order: str

    @classmethod
    def from_config(cls, config: dict[str, Any], *, where: str) -> OnnxSpec:
        onnx_cfg, pre = config.get("onnx"), config.get("preprocessing", {})
        if not isinstance(onnx_cfg, dict) or not isinstance(pre, dict):
            raise InvalidArtifactError(f"{where}: config.json's 'onnx' and 'preprocessing' must be objects")

        def field(section: dict, key: str, kind: type | tuple, default: Any = _REQUIRED, check=None) -> Any:
            value = section.get(key)
            if value is None:
                if default is _REQUIRED:
                    raise InvalidArtifactError(f"{where}: config.json has no {key!r}")
                return default
            if not isinstance(value, kind) or (check is not None and not check(value)):
                raise InvalidArtifactError(f"{where}: config.json has an invalid {key!r}: {value!r}")
            return value

        triple = lambda v: len(v) == 3 and all(isinstance(x, (int, float)) and np.isfinite(x) for x in v)
        image_size = lambda v: len(v) == 3 and v[0] == 3 and all(isinstance(x, int) and 0 < x <= 4096 for x in v)
        size = field(pre, "input_size", list, check=image_size)
        return cls(
            file=field(onnx_cfg, "file", str, "model.onnx", lambda v: v.endswith(".onnx")),
            input=field(onnx_cfg, "input", str, None),
            features=field(onnx_cfg, "features", str),
            logits=field(onnx_cfg, "logits", str, None),
            layout=field(onnx_cfg, "layout", str, "NCHW", lambda v: v in ("NCHW", "NHWC")),
            input_size=tuple(size),
            mean=tuple(field(pre, "mean", list, [0.485, 0.456, 0.406], triple)),
            std=tuple(field(pre, "std", list, [0.229, 0.224, 0.225], lambda v: triple(v) and min(v) > 0)),
            interpolation=field(pre, "interpolation", str, "bilinear",
                                lambda v: v in ("bilinear", "bicubic", "nearest", "lanczos")),
            crop_pct=float(field(pre, "crop_pct", (int, float), 1.0, lambda v: 0 < v <= 1)),
            channel_order=field(pre, "channel_order", str, "RGB", lambda v: v in ("RGB", "BGR")),
        )


class OnnxBackbone(Backbone):
    """An ONNX image model in an onnxruntime session (CPU, or CUDA where onnxruntime has it)."""

    library = "onnx"

    def __init__(self, path: Path, spec: OnnxSpec, data_files: list[Path], *, num_parameters: int,
                 **kwargs: Any) -> None:
        super().__init__(_transform(spec), **kwargs)
        self.path, self.spec, self.data_files = path, spec, data_files
        self._num_parameters = num_parameters
        self.session = _session(path, "cpu", where=self.model_id)
        self._fell_back_from: str | None = None  # a device asked for that has no onnxruntime provider here
        self.input_name, self.fixed_batch = _check_io(self.session, spec, where=self.model_id)

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu")

    @property
    def num_parameters(self) -> int:
        """Elements of the tensors stored in the graph (initializers and constants)."""
        return self._num_parameters

    def to(self, device: str | torch.device) -> OnnxBackbone:
        wanted = torch.device(device).type
        if wanted not in (self.device.type, self._fell_back_from):
            self.session = _session(self.path, wanted, where=self.model_id)
            # without a CUDA provider the session stays on CPU: asking again would only rebuild it
            self._fell_back_from = wanted if self.device.type != wanted else None
        return self

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = pixel_values.detach().float().cpu().numpy()  # [B, 3, H, W]
        if self.spec.channel_order == "BGR":
            x = x[:, ::-1]
        if self.spec.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        x = np.ascontiguousarray(x)
        names = [self.spec.features] + ([self.spec.logits] if self.spec.logits else [])
        batches = [x[i:i + 1] for i in range(len(x))] if self.fixed_batch else [x]
        outputs = [self.session.run(names, {self.input_name: b}) for b in batches]
        features = np.concatenate([_pool(o[0], self.spec.layout) for o in outputs])
        logits = np.concatenate([o[1].reshape(len(o[1]), -1) for o in outputs]) if self.spec.logits else None
        return torch.from_numpy(features), None if logits is None else torch.from_numpy(logits.astype(np.float32))

    def _hash_weights(self, digest) -> None:
        """The model file's bytes, then each external data file's."""
        for path in (self.path, *self.data_files):
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)


@register_library("onnx", detect=lambda config: "onnx" in config)
def load_onnx(source: ModelSource, config: dict[str, Any], **_: Any) -> OnnxBackbone:
    spec = OnnxSpec.from_config(config, where=source.where)
    if spec.file not in source.files:
        raise ModelLoadError(f"{source.where} has no {spec.file} (named by config.json's onnx.file)")
    limit = max_model_bytes()
    _check_size(source, [spec.file], limit)
    path = source.fetch(spec.file)
    model = _parse(path, where=source.where, limit=limit)
    data = _external_data(model, spec.file, source)
    _check_operators(model, where=source.where)
    if not data:  # the checker would look for external data files beside the working directory
        _check_graph(model, where=source.where)
    _check_size(source, [spec.file, *data], limit)
    data_files = [source.fetch(name) for name in data]
    num_classes = config.get("num_classes") if spec.logits else None
    parameters = sum(math.prod(t.dims) for t in _tensors(model.graph))
    return OnnxBackbone(path, spec, data_files, num_parameters=parameters, num_source_classes=num_classes or None,
                        model_id=source.name, revision=source.revision)


# ------------------------------------------------------------------------------------------- validation


def _check_size(source: ModelSource, files: list[str], limit: int) -> None:
    """Refuse before downloading when the repo's announced sizes add up to more than ``limit`` bytes."""
    total = sum(source.files.get(name) or 0 for name in files)
    if total > limit:
        raise InvalidArtifactError(
            f"{source.where}: {', '.join(files)} hold {total} bytes, more than the {limit} allowed "
            "(set HF_SPIDER_MAX_MODEL_BYTES to allow more)")


def _parse(path: Path, *, where: str, limit: int) -> Any:
    """The ModelProto without its external data; a truncated or damaged file is refused with the reason."""
    import onnx

    size = path.stat().st_size
    if size > limit:
        raise InvalidArtifactError(f"{where}: {path.name} has {size} bytes, more than the {limit} allowed")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError on a cut file
        raise InvalidArtifactError(f"{where}: {path.name} is not an ONNX model (truncated or damaged?): "
                                   f"{_first_line(exc)}") from exc
    if not model.graph.node:
        raise InvalidArtifactError(f"{where}: {path.name} has an empty graph (truncated?)")
    return model


def _check_graph(model: Any, *, where: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InvalidArtifactError(f"{where}: the ONNX graph is invalid (truncated or damaged?): "
                                   f"{_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _external_data(model: Any, model_file: str, source: ModelSource) -> list[str]:
    """Repo paths of the external data files, each checked to stay inside the repo and to exist there."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    found: list[str] = []
    for tensor in _tensors(model.graph):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        path = posixpath.normpath(posixpath.join(posixpath.dirname(model_file), location))
        if (not location or location.startswith(("/", "\\")) or "\\" in location or ":" in location
                or path.startswith("..")):
            raise InvalidArtifactError(
                f"{source.where}: {model_file} points tensor {tensor.name!r} at external data {location!r}, "
                "outside the repo; refusing to load it")
        if path not in source.files:
            raise InvalidArtifactError(
                f"{source.where}: {model_file} needs external data {path!r}, which the repo does not have")
        if path not in found:
            found.append(path)
    return found


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor stored in ``graph``: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def _check_operators(model: Any, *, where: str) -> None:
    """Refuse operators from a domain onnxruntime does not implement (custom ops need a native library)."""
    known = STANDARD_DOMAINS | {f.domain for f in model.functions}
    for node in model.graph.node:
        if node.domain not in known:
            raise ModelLoadError(
                f"{where}: operator {node.op_type!r} of domain {node.domain!r} is a custom op that onnxruntime "
                "cannot run without a native library, which hf_spider never loads")


# ------------------------------------------------------------------------------------------- runtime


def _session(path: Path, device: str, *, where: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            logger.warning("onnxruntime has no CUDA provider here (install onnxruntime-gpu); %s runs on CPU", where)
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:
        raise ModelLoadError(f"{where}: onnxruntime cannot load the model: {_first_line(exc)}") from exc


def _check_io(session: Any, spec: OnnxSpec, *, where: str) -> tuple[str, bool]:
    """The image input's name and whether its batch is fixed to 1; the named outputs must exist."""
    inputs = {i.name: i for i in session.get_inputs()}
    if spec.input is None and len(inputs) != 1:
        raise ModelLoadError(f"{where}: the model has inputs {sorted(inputs)}; name the image one in onnx.input")
    name = spec.input or next(iter(inputs))
    if name not in inputs:
        raise ModelLoadError(f"{where}: the model has no input {name!r} (inputs: {sorted(inputs)})")
    if len(inputs[name].shape) != 4 or inputs[name].type != "tensor(float)":
        raise ModelLoadError(f"{where}: input {name!r} is {inputs[name].type}{inputs[name].shape}, "
                             "not a float32 image batch")
    outputs = [o.name for o in session.get_outputs()]
    for key, output in (("features", spec.features), ("logits", spec.logits)):
        if output is not None and output not in outputs:
            raise ModelLoadError(f"{where}: config.json names {key} output {output!r}, which the model does not "
                                 f"have (outputs: {outputs})")
    return name, inputs[name].shape[0] == 1


def _transform(spec: OnnxSpec) -> Any:
    from timm.data import create_transform

    return create_transform(input_size=spec.input_size, mean=spec.mean, std=spec.std,
                            interpolation=spec.interpolation, crop_pct=spec.crop_pct, is_training=False)


def _pool(output: np.ndarray, layout: str) -> np.ndarray:
    """``[B, d]`` features: the mean over space (4-D, in ``layout``) or positions (3-D)."""
    if output.ndim == 4:
        output = output.mean(axis=(2, 3) if layout == "NCHW" else (1, 2))
    elif output.ndim == 3:
        output = output.mean(axis=1)
    return output.reshape(len(output), -1).astype(np.float32, copy=False)
