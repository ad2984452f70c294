"""Feature-extraction throughput: ``extract_features`` (DataLoader + workers) vs a plain single-process loop;
and, with ``--realzoo``, each real network's forward pass at its own input size, torch eager vs onnxruntime.

    uv run python benchmarks/features.py --n 512 --batch-size 64 --device cpu --repeats 3
    uv run python benchmarks/features.py --realzoo ~/.cache/hf_spider_realzoo/repos --batch-size 32 --repeats 3

Images are synthesised (random 256x256 JPEGs in a ``datasets.Dataset``, so decoding is part of the data
loading, as with a real Hub dataset) and models are timm builtins with random weights (speed does not
depend on the weights). Every model sees 224 px inputs through its own timm preprocessing.

Reported per model and method: images/s, and the split of the wall time into *waiting for data*
(decode + preprocess, or the wait for the next DataLoader batch) and *forward*. Medians of ``--repeats``
runs after one warm-up batch; caching is off.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from hf_spider.backbones import Backbone, load_backbone
from hf_spider.features import default_num_workers, extract_features
from hf_spider.tasks import Task, load_task

MODELS = {"resnet18": "ResNet-18", "vit_small_patch16_224": "ViT-S/16"}


def synthetic_task(n: int, *, size: int = 256, seed: int = 0) -> Task:
    """``n`` random JPEG images (``size`` px) with 10 balanced labels."""
    import datasets

    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(n):
        # smooth noise compresses like a photo rather than like white noise
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = PIL.Image.fromarray(small).resize((size, size), PIL.Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        blobs.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features(image=datasets.Image(), label=datasets.ClassLabel(num_classes=10))
    ds = datasets.Dataset.from_dict({"image": blobs, "label": [i % 10 for i in range(n)]}, features=features)
    return load_task(ds, name=f"synthetic-{n}")


def plain_loop(backbone: Backbone, task: Task, batch_size: int) -> dict[str, float]:
    """Preprocess a batch, then forward it, in one thread: the baseline without a DataLoader."""
    waiting = forward = 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for lo in range(0, len(task), batch_size):
            t0 = time.perf_counter()
            x = torch.stack([backbone.transform(task.image(i)) for i in range(lo, min(len(task), lo + batch_size))])
            x = x.to(backbone.device).contiguous(memory_format=backbone.memory_format)
            t1 = time.perf_counter()
            features, _ = backbone.forward(x)
            features.float().cpu()
            waiting += t1 - t0
            forward += time.perf_counter() - t1
    return {"waiting": waiting, "forward": forward, "total": time.perf_counter() - start}


def realzoo_throughput(folder: Path, *, batch_size: int, device: str, repeats: int) -> dict[str, object]:
    """Forward-only img/s of one built repo: its own runtime, plus onnxruntime on a torch export of timm repos."""
    backbone = load_backbone(f"local-dir:{folder}", device=device)
    x = torch.stack([backbone.transform(PIL.Image.new("RGB", (64, 64), (i, 2 * i, 3 * i))) for i in range(batch_size)])
    row: dict[str, object] = {"network": folder.name, "format": backbone.library,
                              "input": "x".join(map(str, x.shape[2:])), "d": backbone.feature_dim}
    as_used = x.to(backbone.device).contiguous(memory_format=backbone.memory_format)  # as the feature loop does
    row["torch"] = _images_per_second(lambda: backbone.forward(as_used), batch_size, repeats) \
        if backbone.library != "onnx" else None
    onnx_backbone = backbone if backbone.library == "onnx" else _exported(backbone, x, folder.name)
    onnx_backbone.to(device)
    row["onnxruntime"] = _images_per_second(lambda: onnx_backbone.forward(x), batch_size, repeats)
    return row


class _PreLogits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(pixels), pre_logits=True)


def _exported(backbone: Backbone, x: torch.Tensor, name: str) -> Backbone:
    """The timm model exported to ONNX (features output), loaded back as an hf_spider ONNX backbone."""
    import json
    import tempfile
    import warnings

    folder = Path(tempfile.mkdtemp(prefix=f"{name}-onnx-"))
    model = backbone.model.cpu().eval()
    pooled = _PreLogits(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(pooled, x[:1].cpu(), str(folder / "model.onnx"), input_names=["pixels"],
                          output_names=["features"], dynamic_axes={"pixels": {0: "b"}, "features": {0: "b"}},
                          dynamo=False)
    cfg = model.pretrained_cfg
    (folder / "config.json").write_text(json.dumps({
        "onnx": {"file": "model.onnx", "input": "pixels", "features": "features", "layout": "NCHW"},
        "preprocessing": {"input_size": list(x.shape[1:]), "mean": list(cfg["mean"]), "std": list(cfg["std"])}}))
    return load_backbone(f"local-dir:{folder}", device="cpu")


def _images_per_second(run, batch_size: int, repeats: int) -> float:
    with torch.inference_mode():
        run()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def realzoo_table(root: Path, *, batch_size: int, device: str, repeats: int) -> None:
    print(f"forward only, batch {batch_size}, device {device}, torch threads {torch.get_num_threads()}, "
          f"median of {repeats} runs after one warm-up")
    print("| network | format | input | d | torch img/s | onnxruntime img/s | ratio |")
    print("|---|---|---|---:|---:|---:|---:|")
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
        row = realzoo_throughput(folder, batch_size=batch_size, device=device, repeats=repeats)
        torch_ips, ort_ips = row["torch"], row["onnxruntime"]
        ratio = f"{ort_ips / torch_ips:.2f}" if torch_ips else "–"
        print(f"| {row['network']} | {row['format']} | {row['input']} | {row['d']} | "
              f"{f'{torch_ips:.1f}' if torch_ips else '–'} | {ort_ips:.1f} | {ratio} |", flush=True)


def median_stats(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), action="append",
                        help="timm builtin (repeatable); default: both")
    parser.add_argument("--n", type=int, default=512, help="images per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=None,
                        help="DataLoader workers for extract_features (default: hf_spider's default)")
    parser.add_argument("--realzoo", type=Path, help="a folder of built real-zoo repos (benchmarks/realzoo/build.py)")
    args = parser.parse_args()
    if args.realzoo is not None:
        realzoo_table(args.realzoo.expanduser(), batch_size=args.batch_size, device=args.device, repeats=args.repeats)
        return

    workers = args.num_workers if args.num_workers is not None else default_num_workers(1)
    task = synthetic_task(args.n)
    print(f"n={args.n} images (256 px JPEG -> 224 px), batch {args.batch_size}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats} runs")
    header = (f"| {'model':<10} | {'params':>6} | {'method':<28} | {'img/s':>7} | {'data wait s':>11} "
              f"| {'forward s':>9} |")
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name in args.model or list(MODELS):
        backbone = load_backbone(name, device=args.device)
        params = sum(p.numel() for p in backbone.model.parameters()) / 1e6
        warm = task.select(range(min(len(task), args.batch_size)))
        plain_loop(backbone, warm, args.batch_size)  # warm-up (allocator, kernels)

        loader_runs, plain_runs = [], []
        for _ in range(args.repeats):
            result = extract_features(backbone, task, batch_size=args.batch_size, num_workers=workers,
                                      use_cache=False, progress=False, device=args.device)
            loader_runs.append(result.stats)
            plain_runs.append(plain_loop(backbone, task, args.batch_size))
        for method, stats in ((f"extract_features ({workers} workers)", median_stats(loader_runs)),
                              ("plain loop (no workers)", median_stats(plain_runs))):
            print(f"| {MODELS[name]:<10} | {params:>5.1f}M | {method:<28} | {args.n / stats['total']:>7.1f} | "
                  f"{stats['waiting']:>11.2f} | {stats['forward']:>9.2f} |")


if __name__ == "__main__":
    main()
