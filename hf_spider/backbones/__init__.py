"""Any timm, transformers or ONNX image model, from the Hub or a folder, as a frozen feature extractor.

:func:`load_backbone` turns a model id into a :class:`Backbone`: the model ready for inference, its *own*
preprocessing (timm's data config, the repo's ``AutoImageProcessor``, or an ONNX repo's ``preprocessing``),
its feature width and source head size, and the commit sha it was loaded from (the feature cache key).
One method, :meth:`Backbone.forward`, returns ``(features, logits)`` whatever the library: each library
has one adapter, registered with :func:`register_library`.

Safety first, as in ``timm.models._hub``: safetensors or ONNX weights are preferred; a repo that only has
pickle weights is refused unless ``allow_pickle=True``; remote code never runs unless ``trust_remote_code=True``;
ONNX files are size-bounded and checked before onnxruntime opens them.

    >>> backbone = load_backbone("timm/resnet18.a1_in1k")          # doctest: +SKIP
    >>> backbone.library, backbone.feature_dim, backbone.num_source_classes
    ('timm', 512, 1000)
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from ._ids import expand_model_folders, model_key, parse_model_id, resolve_revision
from ._source import ModelSource, check_weight_files, hub_source

if TYPE_CHECKING:
    from ._base import Backbone, TorchBackbone
    from ._factory import list_libraries, load_backbone, register_library
    from ._onnx import OnnxBackbone
    from ._timm import TimmBackbone
    from ._transformers import TransformersBackbone

__all__ = ["Backbone", "ModelSource", "OnnxBackbone", "TimmBackbone", "TorchBackbone", "TransformersBackbone",
           "check_weight_files", "expand_model_folders", "hub_source", "list_libraries", "load_backbone", "model_key",
           "parse_model_id", "register_library", "resolve_revision"]

# Model ids are parsed without torch; the models themselves load it on first use.
__getattr__ = lazy_attributes(__name__, {
    "Backbone": "_base", "TorchBackbone": "_base", "load_backbone": "_factory", "list_libraries": "_factory",
    "register_library": "_factory", "OnnxBackbone": "_onnx", "TimmBackbone": "_timm",
    "TransformersBackbone": "_transformers",
})
