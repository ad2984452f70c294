"""Convert the three tf.js models shipped in the npm package ``nsfwjs@4.3.0`` into timm checkpoints, and prove it.

Build-time tool for the real-network zoo; nothing here is a runtime dependency of hf_spider.

Source: ``npm pack nsfwjs@4.3.0`` (MIT). Its ``dist/models/<name>/`` folders hold a tf.js model (``model.min.js``) and
its weight shards (``group1-shard*.min.js``) as browserify modules: the model JSON as a JavaScript object literal, each
shard as one base64 string. Every weight is uint8-quantised; tf.js dequantises it as ``q * scale + min`` (in float64,
stored as float32), which this script repeats bit for bit.

=================  ==============================  =================================================================
nsfwjs model       source                          timm form
=================  ==============================  =================================================================
mobilenet_v2       tf.js *layers* model, Keras     ``mobilenetv2_100`` with ``pad_type="same"``, ``bn_eps=1e-3``
                   2.2.4 ``keras.applications``    (Keras's asymmetric ZeroPadding before stride-2 convs is TF
                   MobileNetV2 (alpha 1.0), 224 px  "SAME"; Keras BN eps is 1e-3). Backbone only: the source head is
                   head: Flatten -> Dense 256 relu  an MLP (1280 -> 256 relu -> 128 relu -> 5 softmax) that a timm
                   -> Dense 128 relu -> Dense 5     classifier (one Linear) cannot hold; it is written next to the
                   softmax                          checkpoint as ``head.safetensors`` (torch Linear layout).
mobilenet_v2_mid   tf.js *graph* model (TF-Hub      ``mobilenetv2_140`` with ``pad_type="same"``; the graph's BN is
                   MobileNetV2 1.4 feature vector   folded into the convs (weights + ``bn_offset``), so each timm BN
                   + one Dense 5 softmax), 224 px   gets weight 1, bias = offset, mean 0, var = 1 - eps. The hub input
                                                    layer computes ``2 * x - 1`` from x in [0, 1]: mean = std = 0.5.
                                                    The 1792 -> 5 Dense is the timm classifier.
inception_v3       tf.js layers model, Keras        ``inception_v3`` (timm's BN eps is already 1e-3; Keras convs have
                   InceptionV3, 299 px, same MLP    no bias and BN ``scale=False``, so BN weight = 1). Backbone only
                   head as mobilenet_v2             plus ``head.safetensors`` (2048 -> 256 -> 128 -> 5).
=================  ==============================  =================================================================

nsfwjs feeds ``pixel / 255`` (``dist/cjs/core.js``: ``img.toFloat().div(255)``, bilinear resize with
``alignCorners=true`` only when the image is not already ``size x size``), so timm's mean/std are 0/1, except for
mobilenet_v2_mid whose graph starts with ``x * 2 - 1``.

Known inexactness: Keras's ``AveragePooling2D(3, strides=1, padding="same")`` (the pool branch of every Inception
block) divides by the number of *valid* pixels at the border (TF semantics), timm's ``F.avg_pool2d(..., padding=1)``
by 9 (``count_include_pad=True``), and timm offers no argument to change it. The inception_v3 timm check therefore
measures a real, small difference at the borders; it is reported, not hidden (its check.json keeps ``pass: false``,
and the script counts it as known rather than as a failure).

The exact form of inception_v3 is an ONNX repo in hf_spider's format (``hf_spider/backbones/_onnx.py``),
``<cache>/onnx/nsfwjs-inception_v3/``: the same converted weights traced with TF's border rule swapped into timm's pool
branches (``count_include_pad=False``), plus the MLP head, so the graph has input ``pixels`` (NCHW float32
``pixel / 255``, dynamic batch) and two outputs, ``features`` [B, 2048] (globally pooled backbone) and ``logits``
[B, 5] (pre-softmax). mobilenet_v2 needs no such form: its timm checkpoint is exact (its head stays in
``head.safetensors``).

Reference: the real tf.js runtime. ``reference`` installs nothing itself; it runs node with ``@tensorflow/tfjs@4.22.0``
(nsfwjs's own dev pin; ``npm install --no-audit --no-fund @tensorflow/tfjs@4.22.0 buffer@6.0.3`` in
``<cache>/tfjs_ref``) and loads the models through nsfwjs's own ``load()`` from the extracted package, i.e. the source
network exactly as shipped, its own dequantisation included. It records, for 8 deterministic images, the pooled
features, the pre-softmax logits and the probabilities, and checks that nsfwjs's ``infer()`` (its whole uint8 -> /255
pipeline) gives the same probabilities.

Steps (all with the project venv, ``.venv/bin/python benchmarks/realzoo/nsfwjs.py [convert|reference|check|all]``):

* ``convert``: extract the tarball, dequantise, map by layer onto timm, write ``model.safetensors`` (+
  ``head.safetensors``) and ``config.json`` into ``<cache>/timm/nsfwjs-<name>/``; also the 8 input images.
* ``reference``: run tf.js in node on those images, save ``<cache>/ref/nsfwjs-<name>.npz``.
* ``check``: load the folder back with ``timm.create_model("local-dir:...", pretrained=True)``, compare, write
  ``check.json``; exit 1 if any model is outside tolerance (1e-4 of the reference's max |value|), except a model
  marked ``timm_exact=False`` (inception_v3), whose inexactness is known.
* ``onnx`` (models marked ``onnx=True``: inception_v3): export ``model.onnx`` + ``config.json`` into
  ``<cache>/onnx/nsfwjs-<name>/`` from the timm folder, load it back with
  ``hf_spider.backbones.load_backbone("local-dir:...", device="cpu")``, compare its ``forward`` with the reference,
  write ``check.json`` there; exit 1 if outside tolerance.

``all`` (the default) runs them per model and skips each part (timm folder, ONNX repo) whose files exist and whose
check.json passed (the timm part of a ``timm_exact=False`` model: whose check.json exists).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import types
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("HF_SPIDER_REALZOO", "/root/.cache/hf_spider_realzoo"))
TARBALL = CACHE / "packages" / "nsfwjs-4.3.0.tgz"
EXTRACT = CACHE / "extract" / "nsfwjs-4.3.0"
PKG = EXTRACT / "package"
TFJS_DIR = CACHE / "tfjs_ref"
OUT_ROOT = CACHE / "timm"
ONNX_ROOT = CACHE / "onnx"
ONNX_OPSET = 17
REF_ROOT = CACHE / "ref"
N_IMAGES = 8
TOL_REL = 1e-4
LABELS = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"]  # dist/esm/nsfw_classes.js

MODELS = {
    "mobilenet_v2": dict(
        nsfwjs_name="MobileNetV2", size=224, kind="layers", arch="mobilenetv2_100",
        model_args={"pad_type": "same", "bn_eps": 1e-3}, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        feature_layer="flatten_1", head_layers=["dense_1", "dense_2", "dense_3"]),
    "mobilenet_v2_mid": dict(
        nsfwjs_name="MobileNetV2Mid", size=224, kind="graph", arch="mobilenetv2_140",
        model_args={"pad_type": "same"}, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "inception_v3": dict(
        nsfwjs_name="InceptionV3", size=299, kind="layers", arch="inception_v3",
        model_args={}, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        feature_layer="flatten_1", head_layers=["dense_1", "dense_2", "dense_3"],
        timm_exact=False, onnx=True),
}
GRAPH_PREFIX = ("StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/StatefulPartitionedCall/"
                "StatefulPartitionedCall/predict/")
GRAPH_FEATURE_NODE = GRAPH_PREFIX + "feature_vector/SpatialSqueeze"
GRAPH_LOGITS_NODE = "StatefulPartitionedCall/sequential/dense/BiasAdd"


# ----------------------------------------------------------------------------------------------- source reading
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<num>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<bang>![01])
  | (?P<ident>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[{}\[\]:,])
""", re.VERBOSE | re.DOTALL)


def _js_string(tok: str) -> str:
    body = tok[1:-1]
    if tok[0] == "'":
        body = body.replace('\\\'', "'").replace('"', '\\"')
    body = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: "\\u00" + m.group(1), body)
    return json.loads('"' + body + '"')


def parse_js_literal(text: str, start: int):
    """Parse the JavaScript object literal (minified JSON-like: bare keys, !0/!1, .5) that begins at ``start``."""
    pos = start

    def tokens():
        nonlocal pos
        while True:
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ValueError(f"unexpected JS at {pos}: {text[pos:pos + 40]!r}")
            pos = m.end()
            if m.lastgroup != "ws":
                return m.lastgroup, m.group()

    def value(kind, tok):
        if kind == "punct" and tok == "{":
            out = {}
            kind, tok = tokens()
            while not (kind == "punct" and tok == "}"):
                key = _js_string(tok) if kind == "str" else tok
                _, t2 = tokens()
                assert t2 == ":", (key, t2)
                out[key] = value(*tokens())
                kind, tok = tokens()
                if tok == ",":
                    kind, tok = tokens()
            return out
        if kind == "punct" and tok == "[":
            out = []
            kind, tok = tokens()
            while not (kind == "punct" and tok == "]"):
                out.append(value(kind, tok))
                kind, tok = tokens()
                if tok == ",":
                    kind, tok = tokens()
            return out
        if kind == "str":
            return _js_string(tok)
        if kind == "num":
            return float(tok) if any(c in tok for c in ".eE") else int(tok)
        if kind == "bang":
            return tok == "!0"
        if kind == "ident" and tok in ("null", "undefined"):
            return None
        if kind == "ident" and tok in ("true", "false"):
            return tok == "true"
        raise ValueError(f"unexpected token {tok!r} at {pos}")

    return value(*tokens())


def _exports_payload(path: Path) -> tuple[str, int]:
    text = path.read_text()
    m = re.search(r"\{1:\[function\([A-Za-z_$,]*\)\{[A-Za-z_$]+\.exports=", text)
    if m is None:
        raise ValueError(f"{path}: not a browserify module exporting a value")
    return text, m.end()


def read_model_json(model_dir: Path) -> dict:
    text, at = _exports_payload(model_dir / "model.min.js")
    return parse_js_literal(text, at)


def read_weights(model_dir: Path, model_json: dict) -> dict[str, np.ndarray]:
    """All weights of the model, dequantised exactly as tf.js does (float64 q*scale+min, then float32)."""
    out: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        blobs = []
        for p in group["paths"]:
            text, at = _exports_payload(model_dir / f"{p}.min.js")
            m = re.compile(r'"([A-Za-z0-9+/=]*)"').match(text, at)
            blobs.append(base64.b64decode(m.group(1)))
        data = b"".join(blobs)
        off = 0
        for spec in group["weights"]:
            n = int(np.prod(spec["shape"])) if spec["shape"] else 1
            q = spec.get("quantization")
            assert spec["dtype"] == "float32" and q and q["dtype"] == "uint8", spec
            raw = np.frombuffer(data, dtype=np.uint8, count=n, offset=off)
            off += n
            vals = (raw.astype(np.float64) * float(q["scale"]) + float(q["min"])).astype(np.float32)
            out[spec["name"]] = vals.reshape(spec["shape"])
        assert off == len(data), (off, len(data))
    return out


def extract_package() -> None:
    if (PKG / "dist" / "models").is_dir():
        return
    EXTRACT.mkdir(parents=True, exist_ok=True)
    with tarfile.open(TARBALL) as tf:
        tf.extractall(EXTRACT, filter="data")


# ----------------------------------------------------------------------------------------------- images
def make_images(size: int) -> np.ndarray:
    """8 deterministic uint8 RGB images (N, size, size, 3): smooth random fields at several scales, edges, noise."""
    from PIL import Image
    rng = np.random.default_rng(20240607)
    imgs = []
    for i in range(N_IMAGES):
        grid = 2 + 3 * i
        low = rng.uniform(0, 255, size=(grid, grid, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(low).resize((size, size), Image.BILINEAR), dtype=np.float64)
        yy, xx = np.mgrid[0:size, 0:size]
        if i % 2:  # a hard-edged disc
            r = size * (0.15 + 0.05 * i)
            mask = (yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 < r * r
            img[mask] = rng.uniform(0, 255, size=3)
        img += rng.normal(0, 4.0 * (i % 4), size=img.shape)
        imgs.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return np.stack(imgs)


def images_path(size: int) -> Path:
    return REF_ROOT / f"images_{size}.npy"


def ensure_images(size: int) -> np.ndarray:
    p = images_path(size)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, make_images(size))
    return np.load(p)


# ----------------------------------------------------------------------------------------------- conversion
def _conv_torch(kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    if depthwise:  # [kh, kw, in, mult] -> [in*mult, 1, kh, kw]
        kh, kw, cin, mult = kernel.shape
        return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # [kh, kw, in, out] -> [out, in, kh, kw]


def _layers_convs(model_json: dict, W: dict, arch: str) -> list[dict]:
    """(conv kernel, BN params) per conv of a Keras layers model, in network (creation) order."""
    layers = model_json["modelTopology"]["model_config"]["config"]["layers"]
    convs = [lay for lay in layers if lay["class_name"] in ("Conv2D", "DepthwiseConv2D")]
    bn_of = {}
    for lay in layers:
        if lay["class_name"] == "BatchNormalization":
            src = lay["inbound_nodes"][0][0][0]
            bn_of[src] = lay
    if arch == "inception_v3":  # Keras 2.2 lists layers by depth; conv2d_N numbering is creation order
        convs.sort(key=lambda lay: int(lay["name"].rsplit("_", 1)[1]) if "_" in lay["name"] else 0)
    out = []
    for lay in convs:
        c, name = lay["config"], lay["name"]
        assert not c.get("use_bias", False), name
        dw = lay["class_name"] == "DepthwiseConv2D"
        kernel = W[f"{name}/depthwise_kernel" if dw else f"{name}/kernel"]
        bn = bn_of[name]
        bc, bname = bn["config"], bn["name"]
        ch = kernel.shape[2] * kernel.shape[3] if dw else kernel.shape[3]
        gamma = W[f"{bname}/gamma"] if bc.get("scale", True) else np.ones(ch, np.float32)
        beta = W[f"{bname}/beta"] if bc.get("center", True) else np.zeros(ch, np.float32)
        out.append(dict(name=name, weight=_conv_torch(kernel, dw), bn_weight=gamma, bn_bias=beta,
                        bn_mean=W[f"{bname}/moving_mean"], bn_var=W[f"{bname}/moving_variance"],
                        eps=float(bc["epsilon"])))
    return out


def _graph_convs(model_json: dict, W: dict) -> list[dict]:
    """(folded conv kernel, bias) per conv of the TF-Hub MobileNetV2 graph model, in graph order."""
    out = []
    for n in model_json["modelTopology"]["node"]:
        if n["op"] not in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            continue
        fused = [base64.b64decode(s).decode() for s in n["attr"]["fused_ops"]["list"]["s"]]
        assert fused[0] == "BiasAdd" and base64.b64decode(n["attr"]["padding"]["s"]).decode() == "SAME", n["name"]
        kernel, bias = W[n["input"][1]], W[n["input"][2]]
        out.append(dict(name=n["name"], weight=_conv_torch(kernel, n["op"] == "FusedDepthwiseConv2dNative"),
                        bias=bias, relu6=fused[1:] == ["Relu6"]))
    return out


def _timm_conv_bn_pairs(model) -> list[tuple[str, str]]:
    import torch.nn as nn
    pairs, pending = [], None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            assert pending is None, (pending, name)
            pending = name
        elif isinstance(mod, nn.BatchNorm2d):
            assert pending is not None, name
            pairs.append((pending, name))
            pending = None
    assert pending is None
    return pairs


def _mlp_head(W: dict, names: list[str]) -> dict[str, np.ndarray]:
    head = {}
    for i, n in enumerate(names, 1):
        head[f"fc{i}.weight"] = np.ascontiguousarray(W[f"{n}/kernel"].T)
        head[f"fc{i}.bias"] = W[f"{n}/bias"]
    return head


def convert(name: str) -> Path:
    import timm
    import torch
    from safetensors.torch import save_file

    spec = MODELS[name]
    extract_package()
    model_dir = PKG / "dist" / "models" / name
    mj = read_model_json(model_dir)
    W = read_weights(model_dir, mj)

    head = None
    if spec["kind"] == "layers":
        layers = mj["modelTopology"]["model_config"]["config"]["layers"]
        assert layers[0]["config"]["batch_input_shape"] == [None, spec["size"], spec["size"], 3]
        dense = {lay["name"]: lay["config"] for lay in layers if lay["class_name"] == "Dense"}
        assert [dense[n]["activation"] for n in spec["head_layers"]] == ["relu", "relu", "softmax"]
        convs = _layers_convs(mj, W, spec["arch"])
        head = _mlp_head(W, spec["head_layers"])
        num_classes = 0
    else:
        convs = _graph_convs(mj, W)
        num_classes = 5

    model = timm.create_model(spec["arch"], pretrained=False, num_classes=num_classes, **spec["model_args"])
    model.eval()
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    pairs = _timm_conv_bn_pairs(model)
    assert len(pairs) == len(convs), (len(pairs), len(convs))
    new: dict[str, np.ndarray] = {}
    for (tconv, tbn), src in zip(pairs, convs, strict=True):
        bn_mod = model.get_submodule(tbn)
        assert tuple(sd[f"{tconv}.weight"].shape) == src["weight"].shape, (tconv, src["name"], src["weight"].shape)
        new[f"{tconv}.weight"] = src["weight"]
        if "bias" in src:  # folded BN: y = conv(x) + offset
            ones = np.ones_like(src["bias"])
            new[f"{tbn}.weight"], new[f"{tbn}.bias"] = ones, src["bias"]
            new[f"{tbn}.running_mean"] = np.zeros_like(src["bias"])
            new[f"{tbn}.running_var"] = (ones - np.float32(bn_mod.eps)).astype(np.float32)
        else:
            assert abs(bn_mod.eps - src["eps"]) < 1e-12, (tbn, bn_mod.eps, src["eps"])
            new[f"{tbn}.weight"], new[f"{tbn}.bias"] = src["bn_weight"], src["bn_bias"]
            new[f"{tbn}.running_mean"], new[f"{tbn}.running_var"] = src["bn_mean"], src["bn_var"]
    if spec["kind"] == "graph":
        nodes = {n["name"]: n for n in mj["modelTopology"]["node"]}
        mm = nodes[GRAPH_LOGITS_NODE]
        new["classifier.weight"] = np.ascontiguousarray(W[mm["input"][1]].T)
        new["classifier.bias"] = W[mm["input"][2]]
        assert float(W[GRAPH_PREFIX + "hub_input/Mul/y"]) == 2.0 and float(W[GRAPH_PREFIX + "hub_input/Sub/y"]) == 1.0
    missing = set(sd) - set(new)
    extra = set(new) - set(sd)
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    for k, v in new.items():
        assert tuple(sd[k].shape) == v.shape, (k, sd[k].shape, v.shape)

    out = OUT_ROOT / f"nsfwjs-{name}"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in new.items()},
              str(tmp / "model.safetensors"), metadata={"format": "pt"})
    size = spec["size"]
    pretrained_cfg = {
        "input_size": [3, size, size],
        "mean": list(spec["mean"]), "std": list(spec["std"]),
        "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash",  # nsfwjs resizes to size x size
        "num_classes": num_classes,
        "first_conv": "Conv2d_1a_3x3.conv" if spec["arch"] == "inception_v3" else "conv_stem",
        "classifier": "fc" if spec["arch"] == "inception_v3" else "classifier",
        "license": "mit",
        "origin_url": "https://www.npmjs.com/package/nsfwjs/v/4.3.0",
    }
    model_args = dict(spec["model_args"])
    model_args["num_classes"] = num_classes
    config = {
        "architecture": spec["arch"],
        "num_classes": num_classes,
        "num_features": int(model.num_features),
        "model_args": model_args,
        "pretrained_cfg": pretrained_cfg,
        "source": {
            "package": "nsfwjs@4.3.0 (npm, MIT)", "path": f"dist/models/{name}",
            "format": "tf.js " + spec["kind"] + " model, uint8-quantised weights (dequantised q*scale+min)",
            "preprocessing": "nsfwjs: float(pixel)/255, RGB, NHWC, bilinear resize (alignCorners) to "
                             f"{size}x{size}" + ("; the graph then computes 2*x-1" if spec["kind"] == "graph" else ""),
        },
    }
    if head is None:
        pretrained_cfg["label_names"] = LABELS
        config["label_names"] = LABELS
    else:
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in head.items()},
                  str(tmp / "head.safetensors"), metadata={"format": "pt"})
        config["nsfw_head"] = {
            "file": "head.safetensors",
            "why": "the source classifier is an MLP; a timm classifier is one Linear, so the timm model is the "
                   "backbone (num_classes 0) and this head reproduces the 5 nsfwjs outputs from its features",
            "layers": [[int(head[f'fc{i}.weight'].shape[1]), int(head[f'fc{i}.weight'].shape[0]), act]
                       for i, act in zip((1, 2, 3), ("relu", "relu", "softmax"), strict=True)],
            "label_names": LABELS,
        }
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


# ----------------------------------------------------------------------------------------------- reference (tf.js)
NODE_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const [pkgDir, modelName, kind, size, n, imgFile, outDir, featureLayer] = process.argv.slice(2);
const tf = require('@tensorflow/tfjs');
const nsfwjs = require(path.join(pkgDir, 'dist', 'cjs', 'index.js'));
(async () => {
  await tf.setBackend('cpu');
  const S = parseInt(size), N = parseInt(n);
  const net = await nsfwjs.load(modelName);
  const raw = new Uint8Array(fs.readFileSync(imgFile));
  const u8 = tf.tensor4d(Int32Array.from(raw), [N, S, S, 3], 'int32');
  const x = u8.toFloat().div(tf.scalar(255));           // exactly nsfwjs's infer()
  let feats, logits, probs;
  if (kind === 'graph') {
    [feats, logits, probs] = net.model.execute(x, [process.env.FEAT_NODE, process.env.LOGITS_NODE, 'Identity']);
  } else {
    const m = net.model;
    const sub = tf.model({inputs: m.inputs, outputs: [m.getLayer(featureLayer).output,
                                                       m.getLayer('dense_2').output, m.output]});
    let h2;
    [feats, h2, probs] = sub.predict(x);
    const [w, b] = m.getLayer('dense_3').getWeights();
    logits = tf.add(tf.matMul(h2, w), b);
  }
  // nsfwjs's own pipeline (uint8 image -> infer) on every image must give the same probabilities
  let pipeDiff = 0;
  const imgs = tf.unstack(u8);
  for (let i = 0; i < N; i++) {
    const p = net.infer(imgs[i]);
    const d = tf.max(tf.abs(tf.sub(p, probs.slice([i, 0], [1, 5])))).dataSync()[0];
    pipeDiff = Math.max(pipeDiff, d);
  }
  const save = (t, f) => fs.writeFileSync(path.join(outDir, f), Buffer.from(new Float32Array(t.dataSync()).buffer));
  save(feats, 'features.f32'); save(logits, 'logits.f32'); save(probs, 'probs.f32');
  fs.writeFileSync(path.join(outDir, 'meta.json'), JSON.stringify({
    tfjs: tf.version.tfjs, backend: tf.getBackend(), features_shape: feats.shape, logits_shape: logits.shape,
    nsfwjs_infer_vs_predict_max_abs_diff: pipeDiff}));
})().catch(e => { console.error(e); process.exit(1); });
"""


def reference(name: str) -> Path:
    spec = MODELS[name]
    extract_package()
    size = spec["size"]
    imgs = ensure_images(size)
    if not (TFJS_DIR / "node_modules" / "@tensorflow" / "tfjs").is_dir():
        raise SystemExit(f"missing tf.js: (cd {TFJS_DIR} && npm install --no-audit --no-fund "
                         "@tensorflow/tfjs@4.22.0 buffer@6.0.3)")
    work = REF_ROOT / f"work-{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "images.u8").write_bytes(np.ascontiguousarray(imgs).tobytes())
    (work / "ref.js").write_text(NODE_SCRIPT)
    env = dict(os.environ, NODE_PATH=str(TFJS_DIR / "node_modules"), FEAT_NODE=GRAPH_FEATURE_NODE,
               LOGITS_NODE=GRAPH_LOGITS_NODE)
    cmd = ["node", str(work / "ref.js"), str(PKG), spec["nsfwjs_name"], spec["kind"], str(size), str(N_IMAGES),
           str(work / "images.u8"), str(work), spec.get("feature_layer", "")]
    subprocess.run(cmd, check=True, env=env)
    meta = json.loads((work / "meta.json").read_text())
    arrays = {k: np.fromfile(work / f"{k}.f32", dtype=np.float32) for k in ("features", "logits", "probs")}
    arrays["features"] = arrays["features"].reshape(N_IMAGES, -1)
    arrays["logits"] = arrays["logits"].reshape(N_IMAGES, 5)
    arrays["probs"] = arrays["probs"].reshape(N_IMAGES, 5)
    out = REF_ROOT / f"nsfwjs-{name}.npz"
    np.savez(out, images=imgs, meta=json.dumps(meta), **arrays)
    shutil.rmtree(work)
    return out


# ----------------------------------------------------------------------------------------------- check
def check(name: str) -> dict:
    import timm
    import torch
    from safetensors.torch import load_file

    spec = MODELS[name]
    folder = OUT_ROOT / f"nsfwjs-{name}"
    ref = np.load(REF_ROOT / f"nsfwjs-{name}.npz")
    meta = json.loads(str(ref["meta"]))
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    cfg = model.pretrained_cfg
    x = torch.from_numpy(ref["images"]).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = model.forward_head(model.forward_features((x - mean) / std), pre_logits=True)
        if (folder / "head.safetensors").exists():
            h = load_file(str(folder / "head.safetensors"))
            z = torch.relu(feats @ h["fc1.weight"].T + h["fc1.bias"])
            z = torch.relu(z @ h["fc2.weight"].T + h["fc2.bias"])
            logits = z @ h["fc3.weight"].T + h["fc3.bias"]
        else:
            logits = model.forward_head(model.forward_features((x - mean) / std))
        probs = torch.softmax(logits, dim=1)
    d_feat = float(np.abs(feats.numpy() - ref["features"]).max())
    d_log = float(np.abs(logits.numpy() - ref["logits"]).max())
    d_prob = float(np.abs(probs.numpy() - ref["probs"]).max())
    scale_feat = float(np.abs(ref["features"]).max())
    scale_log = float(np.abs(ref["logits"]).max())
    ok = (d_feat <= TOL_REL * scale_feat and d_log <= TOL_REL * scale_log
          and meta["nsfwjs_infer_vs_predict_max_abs_diff"] <= 1e-6)
    result = {
        "images": int(ref["images"].shape[0]),
        "input_size": list(ref["images"].shape[1:3]),
        "max_abs_diff_logits": d_log,
        "max_abs_diff_features": d_feat,
        "max_abs_diff_probs": d_prob,
        "max_abs_logits_ref": scale_log,
        "max_abs_features_ref": scale_feat,
        "tolerance_rel": TOL_REL,
        "top1_agree": int((logits.argmax(1).numpy() == ref["logits"].argmax(1)).sum()),
        "logits_from": "timm classifier" if not (folder / "head.safetensors").exists()
                       else "timm features -> head.safetensors MLP",
        "reference": f"tf.js {meta['tfjs']} ({meta['backend']} backend) in node running nsfwjs@4.3.0's own load() "
                     "of the shipped model; features = pooled backbone output, logits = pre-softmax",
        "nsfwjs_infer_vs_predict_max_abs_diff": meta["nsfwjs_infer_vs_predict_max_abs_diff"],
        "pass": bool(ok),
    }
    if spec["arch"] == "inception_v3":
        # Diagnostic only: the same weights with TF's border rule for the 3x3/1 'same' average pools
        # (count_include_pad=False), to show that the pooling rule is the whole difference.
        with tf_avg_pool_border_rule(), torch.no_grad():
            f2 = model.forward_head(model.forward_features((x - mean) / std), pre_logits=True)
            z = torch.relu(f2 @ h["fc1.weight"].T + h["fc1.bias"])
            z = torch.relu(z @ h["fc2.weight"].T + h["fc2.bias"])
            l2 = z @ h["fc3.weight"].T + h["fc3.bias"]
        result["diagnostic_with_tf_avgpool_border_rule"] = {
            "max_abs_diff_features": float(np.abs(f2.numpy() - ref["features"]).max()),
            "max_abs_diff_logits": float(np.abs(l2.numpy() - ref["logits"]).max()),
            "note": "timm's InceptionA/C/E pool branch uses F.avg_pool2d(padding=1) with count_include_pad=True; "
                    "Keras/TF 'same' average pooling excludes the padding; timm has no argument for it",
            "exact_form": str(ONNX_ROOT / f"nsfwjs-{name}"),
        }
    (folder / "check.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# ----------------------------------------------------------------------------------------------- ONNX (exact form)
@contextlib.contextmanager
def tf_avg_pool_border_rule():
    """Within the block, timm's inception_v3 module averages its padded pools over valid pixels only (TF's rule).

    timm's ``inception_v3.py`` calls ``F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)`` through its module
    global ``F``; that global alone is swapped for a proxy of ``torch.nn.functional`` whose ``avg_pool2d`` forces
    ``count_include_pad=False`` (no effect on unpadded pools), so nothing else in the process changes.
    """
    import timm.models.inception_v3  # noqa: F401  (the attribute is shadowed by the model function)
    import torch.nn.functional as F

    mod = sys.modules["timm.models.inception_v3"]
    assert mod.F is F, "timm's inception_v3 no longer calls torch.nn.functional as F"

    class _TFPoolFunctional(types.ModuleType):
        def __getattr__(self, key):
            return getattr(F, key)

        @staticmethod
        def avg_pool2d(inp, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                       divisor_override=None):
            return F.avg_pool2d(inp, kernel_size, stride, padding, ceil_mode, False, divisor_override)

    mod.F = _TFPoolFunctional("torch.nn.functional")
    try:
        yield
    finally:
        mod.F = F


def _exact_module(name: str):
    """timm backbone (TF pool border rule) + the MLP head: ``pixels -> (features [B, d], logits [B, 5])``."""
    import timm
    import torch
    from safetensors.torch import load_file

    folder = OUT_ROOT / f"nsfwjs-{name}"
    backbone = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    h = load_file(str(folder / "head.safetensors"))

    class NsfwjsExact(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            layers = []
            for i in (1, 2, 3):
                w = h[f"fc{i}.weight"]
                lin = torch.nn.Linear(w.shape[1], w.shape[0])
                lin.load_state_dict({"weight": w, "bias": h[f"fc{i}.bias"]})
                layers += [lin, torch.nn.ReLU()] if i < 3 else [lin]
            self.head = torch.nn.Sequential(*layers)

        def forward(self, pixels):
            with tf_avg_pool_border_rule():  # active while tracing: the exported AveragePools exclude padding
                feats = self.backbone.forward_head(self.backbone.forward_features(pixels), pre_logits=True)
            return feats, self.head(feats)

    return NsfwjsExact().eval(), backbone.pretrained_cfg


def onnx_build(name: str) -> Path:
    """Export the exact form as an hf_spider ONNX repo (``model.onnx`` + ``config.json``)."""
    import onnx
    import torch

    spec = MODELS[name]
    ref = np.load(REF_ROOT / f"nsfwjs-{name}.npz")
    module, cfg = _exact_module(name)
    size = spec["size"]
    assert list(cfg["input_size"]) == [3, size, size] and list(cfg["mean"]) == list(spec["mean"])
    out = ONNX_ROOT / f"nsfwjs-{name}"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dummy = torch.from_numpy(ref["images"][:2]).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        torch.onnx.export(module, (dummy,), str(tmp / "model.onnx"), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["pixels"], output_names=["features", "logits"],
                          dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True)
    graph = onnx.load(str(tmp / "model.onnx"))
    onnx.checker.check_model(graph)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer)
    pools = [n for n in graph.graph.node if n.op_type == "AveragePool"]
    include = [a.i for n in pools for a in n.attribute if a.name == "count_include_pad"]
    assert pools and not any(include), f"AveragePool count_include_pad attributes: {include}"
    config = {
        "onnx": {"file": "model.onnx", "input": "pixels", "features": "features", "logits": "logits",
                 "layout": "NCHW"},
        "preprocessing": {"input_size": [3, size, size], "mean": list(spec["mean"]), "std": list(spec["std"]),
                          "interpolation": "bilinear", "crop_pct": 1.0, "channel_order": "RGB"},
        "num_classes": 5,
        "label_names": LABELS,
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def onnx_check(name: str) -> dict:
    """Load the ONNX repo through hf_spider and compare its forward with the tf.js reference; write check.json."""
    import onnxruntime
    import torch

    from hf_spider.backbones import load_backbone

    spec = MODELS[name]
    folder = ONNX_ROOT / f"nsfwjs-{name}"
    ref = np.load(REF_ROOT / f"nsfwjs-{name}.npz")
    meta = json.loads(str(ref["meta"]))
    backbone = load_backbone(f"local-dir:{folder}", device="cpu")
    x = torch.from_numpy(ref["images"]).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(spec["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(spec["std"]).view(1, 3, 1, 1)
    feats, logits = backbone.forward((x - mean) / std)
    feats, logits = feats.numpy(), logits.numpy()
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    d_feat = float(np.abs(feats - ref["features"]).max())
    d_log = float(np.abs(logits - ref["logits"]).max())
    d_prob = float(np.abs(probs - ref["probs"]).max())
    scale_feat = float(np.abs(ref["features"]).max())
    scale_log = float(np.abs(ref["logits"]).max())
    ok = (feats.shape == ref["features"].shape and logits.shape == ref["logits"].shape
          and d_feat <= TOL_REL * scale_feat and d_log <= TOL_REL * scale_log
          and meta["nsfwjs_infer_vs_predict_max_abs_diff"] <= 1e-6)
    result = {
        "images": int(ref["images"].shape[0]),
        "input_size": list(ref["images"].shape[1:3]),
        "max_abs_diff_logits": d_log,
        "max_abs_diff_features": d_feat,
        "max_abs_diff_probs": d_prob,
        "max_abs_logits_ref": scale_log,
        "max_abs_features_ref": scale_feat,
        "tolerance_rel": TOL_REL,
        "top1_agree": int((logits.argmax(1) == ref["logits"].argmax(1)).sum()),
        "loaded_with": "hf_spider.backbones.load_backbone('local-dir:<folder>', device='cpu').forward(pixel / 255)",
        "onnx": {"opset": ONNX_OPSET, "exporter": f"torch {torch.__version__} torch.onnx.export(dynamo=False)",
                 "onnxruntime": onnxruntime.__version__,
                 "model_bytes": (folder / "model.onnx").stat().st_size,
                 "num_source_classes": backbone.num_source_classes, "feature_dim": backbone.feature_dim},
        "built_from": str(OUT_ROOT / f"nsfwjs-{name}") + " (model.safetensors + head.safetensors) with timm's "
                      "pool-branch avg_pool2d forced to count_include_pad=False (Keras/TF 'same' border rule)",
        "reference": f"tf.js {meta['tfjs']} ({meta['backend']} backend) in node running nsfwjs@4.3.0's own load() "
                     "of the shipped model; features = pooled backbone output, logits = pre-softmax",
        "nsfwjs_infer_vs_predict_max_abs_diff": meta["nsfwjs_infer_vs_predict_max_abs_diff"],
        "pass": bool(ok),
    }
    (folder / "check.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _onnx_done(name: str) -> bool:
    folder = ONNX_ROOT / f"nsfwjs-{name}"
    try:
        ok = json.loads((folder / "check.json").read_text())["pass"]
    except (OSError, ValueError, KeyError):
        return False
    return ok and (folder / "model.onnx").exists() and (folder / "config.json").exists()


def _done(name: str) -> bool:
    """The timm folder is built and checked (passed, or a known-inexact ``timm_exact=False`` model checked)."""
    folder = OUT_ROOT / f"nsfwjs-{name}"
    try:
        ok = json.loads((folder / "check.json").read_text())["pass"] or not MODELS[name].get("timm_exact", True)
    except (OSError, ValueError, KeyError):
        return False
    return ok and (folder / "model.safetensors").exists() and (folder / "config.json").exists()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", nargs="?", default="all", choices=["convert", "reference", "check", "onnx", "all"])
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--force", action="store_true", help="redo a model even if its check passed")
    args = ap.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass
    failed = []
    for name in args.models:
        t0 = time.time()
        spec = MODELS[name]
        timm_part = args.step != "onnx"
        onnx_part = args.step in ("onnx", "all") and spec.get("onnx", False)
        if args.step == "all" and not args.force:
            if _done(name):
                print(f"{name}: done already ({OUT_ROOT / f'nsfwjs-{name}'})")
                timm_part = False
            if onnx_part and _onnx_done(name):
                print(f"{name}: done already ({ONNX_ROOT / f'nsfwjs-{name}'})")
                onnx_part = False
            if not timm_part and not onnx_part:
                continue
        if timm_part and args.step in ("convert", "all"):
            print(f"{name}: converted -> {convert(name)}", flush=True)
        if (timm_part and args.step in ("reference", "all")
                and (args.step == "reference" or args.force or not (REF_ROOT / f"nsfwjs-{name}.npz").exists())):
            print(f"{name}: reference -> {reference(name)}", flush=True)
        if timm_part and args.step in ("check", "all"):
            r = check(name)
            print(f"{name}: {json.dumps(r)}", flush=True)
            if not r["pass"]:
                if spec.get("timm_exact", True):
                    failed.append(name)
                else:
                    print(f"{name}: timm form outside tolerance, as known (see check.json); "
                          f"the exact form is the ONNX repo", flush=True)
        if onnx_part:
            print(f"{name}: onnx -> {onnx_build(name)}", flush=True)
            r = onnx_check(name)
            print(f"{name}: onnx {json.dumps(r)}", flush=True)
            if not r["pass"]:
                failed.append(f"{name} (onnx)")
        elif args.step == "onnx":
            print(f"{name}: no ONNX form (its timm checkpoint is the exact form)", flush=True)
        print(f"{name}: {time.time() - t0:.1f} s", flush=True)
    if failed:
        print(f"outside tolerance: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
