"""The zoo's model tree: real ImageNet bases fine-tuned on one source domain each, as community fine-tunes are.

One recipe for every (base, domain): the whole network and a new head, AdamW (lr 1e-3, weight decay 0.05),
cosine schedule with a 5-step warm-up, label smoothing 0.1, batch 64, a fixed budget of training images
drawn from the domain's train split (seeded), random crops of 70-100 % of each 64 px image resized to the
fine-tune's input size. The result is a timm repo whose ``pretrained_cfg`` has that input size and the
base's normalisation; its source test accuracy goes on the card.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hf_spider.tasks import load_task

SIZE = 112
BATCH = 64
LR = 1e-3
WEIGHT_DECAY = 0.05
WARMUP = 5


def pixels(task) -> torch.Tensor:
    """``[n, 3, 64, 64]`` float32 in [0, 1] (normalised later, after cropping and resizing)."""
    return torch.stack([torch.from_numpy(np.asarray(task.image(i).convert("RGB"), np.float32) / 255).permute(2, 0, 1)
                        for i in range(len(task))])


def random_crops(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """One random square crop of 70-100 % of the side per image, resized to ``size`` (bilinear)."""
    n, _, h, w = x.shape
    sides = (torch.empty(n).uniform_(0.7, 1.0, generator=gen) * min(h, w)).long().clamp(min=8)
    out = []
    for image, side in zip(x, sides.tolist(), strict=True):
        top = int(torch.randint(0, h - side + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - side + 1, (1,), generator=gen))
        crop = image[:, top:top + side, left:left + side][None]
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def fine_tune(base: Path, data: Path, out: Path, *, images: int, seed: int = 0) -> dict[str, Any]:
    """Fine-tune the timm repo ``base`` on the parquet dataset folder ``data``; write the repo to ``out``."""
    import timm
    from timm.models import save_for_hf

    start = time.perf_counter()
    train, test = load_task(str(data), split="train"), load_task(str(data), split="test")
    torch.manual_seed(seed)
    model = timm.create_model(f"local-dir:{base}", pretrained=True, num_classes=train.num_classes)
    cfg = model.pretrained_cfg
    mean, std = torch.tensor(cfg["mean"]).view(1, 3, 1, 1), torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    x, y = pixels(train), torch.from_numpy(train.labels).long()
    gen = torch.Generator().manual_seed(seed)
    steps = math.ceil(images / BATCH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / WARMUP) * 0.5 * (
        1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(y), (BATCH,), generator=gen)
        batch = (random_crops(x[rows], SIZE, gen) - mean) / std
        loss = F.cross_entropy(model(batch), y[rows], label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    x_test, y_test = pixels(test), torch.from_numpy(test.labels).long()
    with torch.inference_mode():
        predictions = torch.cat([model((resize(x_test[i:i + 256], SIZE) - mean) / std).argmax(1)
                                 for i in range(0, len(y_test), 256)])
    accuracy = float((predictions == y_test).float().mean())
    model.pretrained_cfg = {**cfg, "input_size": (3, SIZE, SIZE), "crop_pct": 1.0, "interpolation": "bilinear",
                            "num_classes": train.num_classes}
    out.mkdir(parents=True, exist_ok=True)
    save_for_hf(model, str(out), model_config={"label_names": list(train.class_names)}, safe_serialization=True)
    return {"source_test_accuracy": round(accuracy, 4), "train_images": len(y), "steps": steps, "batch": BATCH,
            "input_size": SIZE, "seconds": round(time.perf_counter() - start, 1)}
