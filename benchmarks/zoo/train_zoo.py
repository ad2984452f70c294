"""Pre-train the micro model zoo: small timm models at 32x32 on the offline `src-*` data sets.

    uv run python benchmarks/zoo/train_zoo.py --offline-data ../shared/offline_data [--only NAME ...]

Every model is saved in timm's Hub format (``config.json`` with architecture, model_args and
pretrained_cfg + fp16 ``model.safetensors``) under ``hf_spider/micro_zoo/models/<name>/`` so that
``timm.create_model("hf-hub:<org>/<name>")`` loads it once pushed to a Hub. ``zoo.json`` records,
per model, its recipe, source accuracy (on the source's test split) and training time.
Seeds are fixed; the zoo is deliberately diverse: families, widths, sources and lengths differ.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.models import save_for_hf

from hf_spider.constants import MICRO_ZOO

HERE = Path(__file__).parent
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Recipe:
    name: str
    architecture: str
    sources: tuple[str, ...]
    epochs: int
    model_args: dict = field(default_factory=dict)
    lr: float = 2e-3


def R(w: int) -> dict:
    """ResNet stage widths w, 2w, 4w, 8w."""
    return {"channels": (w, 2 * w, 4 * w, 8 * w), "stem_width": w}


def VIT(d: int, depth: int) -> dict:
    """ViT at 32 px with 4x4 patches, width d, heads of 32 channels."""
    return {"img_size": 32, "patch_size": 4, "embed_dim": d, "depth": depth, "num_heads": d // 32}


def CNX(w: int) -> dict:
    """ConvNeXt stage widths w..8w, depths 1-1-3-1."""
    return {"dims": (w, 2 * w, 4 * w, 8 * w), "depths": (1, 1, 3, 1)}

RECIPES: list[Recipe] = [
    # ResNets of several widths and depths, one per source, plus mixes
    Recipe("resnet10-glyphs", "resnet10t", ("src-glyphs-a",), 8, R(16)),
    Recipe("resnet10-animals", "resnet10t", ("src-animal-mnist",), 8, R(16)),
    Recipe("resnet10-wesnoth", "resnet10t", ("src-wesnoth-a",), 8, R(16)),
    Recipe("resnet18-papirus", "resnet18", ("src-icons-papirus",), 10, R(12)),
    Recipe("resnet18-breeze", "resnet18", ("src-icons-breeze-oxygen",), 10, R(12)),
    Recipe("resnet18-emoji-google", "resnet18", ("src-emoji-google",), 10, R(12)),
    Recipe("resnet18-icons-mix", "resnet18", ("src-icons-papirus", "src-icons-breeze-oxygen"), 8, R(16)),
    Recipe("resnet18-all-mix", "resnet18", ("src-glyphs-a", "src-animal-mnist", "src-wesnoth-a",
                                            "src-icons-papirus", "src-emoji-google"), 6, R(16)),
    Recipe("resnet10-wide-clipart", "resnet10t", ("src-clipart-symbols",), 12, R(24)),
    Recipe("resnet10-short-emoji-apple", "resnet10t", ("src-emoji-apple",), 2, R(8)),
    # MobileNetV3 (small, width 0.5 / 0.75): slow on CPU and weak at 32 px (1x1 final map), so few of them
    Recipe("mnv3-glyphs", "mobilenetv3_small_050", ("src-glyphs-a",), 8),
    Recipe("mnv3-emoji-mix", "mobilenetv3_small_075", ("src-emoji-apple", "src-emoji-google"), 10),
    # ConvNeXt-style
    Recipe("convnext-glyphs", "convnext_atto", ("src-glyphs-a",), 5, CNX(16)),
    Recipe("convnext-papirus", "convnext_atto", ("src-icons-papirus",), 10, CNX(16)),
    Recipe("convnext-clipart", "convnext_atto", ("src-clipart-symbols",), 12, CNX(16)),
    Recipe("convnext-icons-mix", "convnext_atto", ("src-icons-papirus", "src-icons-breeze-oxygen",
                                                   "src-clipart-symbols"), 8, CNX(24)),
    # ViTs with 4x4 patches
    Recipe("vit-glyphs", "vit_tiny_patch16_224", ("src-glyphs-a",), 6, VIT(64, 4)),
    Recipe("vit-animals", "vit_tiny_patch16_224", ("src-animal-mnist",), 6, VIT(64, 4)),
    Recipe("vit-wesnoth", "vit_tiny_patch16_224", ("src-wesnoth-a",), 10, VIT(96, 3)),
    Recipe("vit-emoji-google", "vit_tiny_patch16_224", ("src-emoji-google",), 12, VIT(64, 4)),
    Recipe("vit-all-mix", "vit_tiny_patch16_224", ("src-glyphs-a", "src-animal-mnist", "src-icons-breeze-oxygen",
                                                   "src-emoji-apple"), 4, VIT(96, 4)),
    Recipe("vit-short-breeze", "vit_tiny_patch16_224", ("src-icons-breeze-oxygen",), 2, VIT(64, 2)),
    # Tiny / under-trained models widen the spread of transfer quality
    Recipe("resnet10-tiny-animals", "resnet10t", ("src-animal-mnist",), 3, R(4)),
    Recipe("mnv3-short-clipart", "mobilenetv3_small_050", ("src-clipart-symbols",), 3),
    Recipe("convnext-short-wesnoth", "convnext_atto", ("src-wesnoth-a",), 2, CNX(8)),
    Recipe("resnet18-emoji-apple", "resnet18", ("src-emoji-apple",), 12, R(12)),
    Recipe("vit-papirus", "vit_tiny_patch16_224", ("src-icons-papirus",), 12, VIT(64, 3)),
]


def load_sources(root: Path, sources: tuple[str, ...], split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images as a uint8 tensor [n, 3, 32, 32] and labels, classes of several sources stacked."""
    images, labels, names = [], [], []
    for source in sources:
        ds = datasets.load_dataset(str(root / source), split=split)
        images.append(np.stack([np.asarray(im.convert("RGB").resize((32, 32))) for im in ds["image"]]))
        labels.append(np.asarray(ds["label"]) + len(names))
        names += [f"{source}:{n}" for n in ds.features["label"].names]
    x = torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.concatenate(labels)).long(), names


def normalise(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with 4 px padding and horizontal flip, batched."""
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx, dy = torch.randint(0, 9, (2,), generator=generator).tolist()
    x = padded[:, :, dy : dy + 32, dx : dx + 32]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)


def train(recipe: Recipe, root: Path, out: Path, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train, names = load_sources(root, recipe.sources, "train")
    x_test, y_test, _ = load_sources(root, recipe.sources, "test")
    model = timm.create_model(recipe.architecture, num_classes=len(names), **recipe.model_args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(x_train) / 128)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=recipe.epochs * steps_per_epoch)
    start = time.perf_counter()
    for _ in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(steps_per_epoch):
            idx = order[i * 128 : (i + 1) * 128]
            loss = F.cross_entropy(model(normalise(augment(x_train[idx], generator))), y_train[idx],
                                   label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    train_seconds = time.perf_counter() - start
    model.eval()
    with torch.inference_mode():
        preds = torch.cat([model(normalise(x_test[i : i + 512])).argmax(1) for i in range(0, len(x_test), 512)])
    accuracy = (preds == y_test).float().mean().item()

    model = model.half()
    save_for_hf(model, out / recipe.name, safe_serialization=True,
                model_config={"label_names": names, "pretrained_cfg": {"tag": "hf_spider_zoo"}},
                data_config={"input_size": (3, 32, 32), "mean": MEAN, "std": STD, "crop_pct": 1.0,
                             "interpolation": "bilinear"})
    return {**asdict(recipe), "num_classes": len(names), "source_test_accuracy": round(accuracy, 4),
            "train_seconds": round(train_seconds, 1), "train_images": len(x_train),
            "params": sum(p.numel() for p in model.parameters()), "seed": seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline-data", type=Path, default=HERE.parents[2] / "shared" / "offline_data")
    parser.add_argument("--out", type=Path, default=MICRO_ZOO / "models")
    parser.add_argument("--only", nargs="*", help="train only these recipes (by name)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record_path = HERE / "zoo.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"models": {}}
    for recipe in RECIPES:
        if args.only and recipe.name not in args.only:
            continue
        result = train(recipe, args.offline_data, args.out)
        record["models"][recipe.name] = result
        record_path.write_text(json.dumps(record, indent=1, sort_keys=True))
        print(f"{recipe.name:28s} acc={result['source_test_accuracy']:.3f} "
              f"{result['train_seconds']:6.1f}s {result['params'] / 1e6:.2f}M params", flush=True)


if __name__ == "__main__":
    main()
