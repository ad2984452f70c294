"""load_task: Hub datasets, folders, Dataset objects and arrays; sampling; fingerprints; clear errors."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
from conftest import FIXTURES
from huggingface_hub import HfApi

import hf_spider.tasks as tasks_module
from hf_spider.errors import DatasetError
from hf_spider.tasks import load_task, sample_per_class, task_from_arrays, to_rgb


def push_digits(api: HfApi) -> str:
    """digits-mini (120 train / 40 test, 10 classes, 32x32) as a fresh dataset repo."""
    repo = f"tests/digits-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo, repo_type="dataset")
    api.upload_folder(folder_path=FIXTURES / "digits-mini", repo_id=repo, repo_type="dataset")
    return repo


@pytest.fixture(scope="module")
def digits(api: HfApi) -> str:
    return push_digits(api)


def png(value: int | tuple, *, mode: str = "RGB", size: int = 8) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new(mode, (size, size), value).save(buffer, format="PNG")
    return buffer.getvalue()


def image_dataset(images: list[bytes], labels: list, label_feature=None) -> datasets.Dataset:
    features = datasets.Features(image=datasets.Image(), label=label_feature or datasets.Value("int64"))
    return datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in images], "label": labels},
                                      features=features)


def pixels(task, index: int) -> np.ndarray:
    return np.asarray(task.image(index))


# ---------------------------------------------------------------------------------------------- the Hub


def test_hub_dataset_columns_classes_and_fingerprint(api: HfApi, digits: str):
    task = load_task(digits, split="test")
    assert (len(task), task.num_classes, task.regression) == (40, 10, False)
    assert task.class_names == [str(i) for i in range(10)]
    assert task.labels.dtype == np.int64 and np.bincount(task.labels).tolist() == [4] * 10
    image = task.image(0)
    assert image.mode == "RGB" and image.size == (32, 32)
    assert task.name == f"{digits}:test"
    assert type(task.images).__name__ == "Column"  # lazily decoded, memory-mapped

    again = load_task(digits, split="test")
    assert again.fingerprint == task.fingerprint
    assert load_task(digits, split="train").fingerprint != task.fingerprint
    # the fingerprint follows the commit: a new commit changes it, the old sha gives the old one back
    old_sha = api.dataset_info(digits).sha
    api.upload_file(path_or_fileobj=b"notes", path_in_repo="NOTES.txt", repo_id=digits, repo_type="dataset")
    assert load_task(digits, split="test").fingerprint != task.fingerprint
    assert load_task(digits, split="test", revision=old_sha).fingerprint == task.fingerprint
    assert load_task(f"{digits}@{old_sha}", split="test").fingerprint == task.fingerprint


def test_balanced_sampling_is_seeded(digits: str):
    capped = load_task(digits, split="train", max_per_class=3, seed=1)
    assert len(capped) == 30 and np.bincount(capped.labels).tolist() == [3] * 10
    same = load_task(digits, split="train", max_per_class=3, seed=1)
    other = load_task(digits, split="train", max_per_class=3, seed=2)
    assert same.fingerprint == capped.fingerprint != other.fingerprint
    stack = lambda t: np.stack([pixels(t, i) for i in range(len(t))])
    assert np.array_equal(stack(same), stack(capped))
    assert not np.array_equal(stack(other), stack(capped))

    few = load_task(digits, split="train", shots=5, seed=0)
    assert np.bincount(few.labels).tolist() == [5] * 10
    uncapped = load_task(digits, split="train").fingerprint
    assert load_task(digits, split="train", max_per_class=100).fingerprint != uncapped
    with pytest.raises(DatasetError, match="fewer than shots=13"):
        load_task(digits, split="train", shots=13)
    with pytest.raises(DatasetError, match="not both"):
        load_task(digits, split="train", shots=2, max_per_class=2)


def test_sample_per_class_keeps_small_classes_whole():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 5)
    rows = sample_per_class(labels, max_per_class=4, seed=0)
    assert np.bincount(labels[rows]).tolist() == [4, 2, 4] and np.all(np.diff(rows) > 0)


def test_hub_errors_name_what_exists(digits: str):
    with pytest.raises(DatasetError, match=r"split 'validation' not found.*\['train', 'test'\]"):
        load_task(digits, split="validation")
    with pytest.raises(DatasetError, match=r"image column 'pixels' not found; columns: \['image', 'label'\]"):
        load_task(digits, split="test", image_column="pixels")
    with pytest.raises(DatasetError, match="label column 'y' not found"):
        load_task(digits, split="test", label_column="y")
    with pytest.raises(DatasetError, match="neither a local folder nor a dataset"):
        load_task("tests/no-such-dataset")


def test_aliases_module_level_and_per_call(digits: str, monkeypatch):
    assert tasks_module.DATASET_ALIASES["cifar100"].label_column == "fine_label"
    assert tasks_module.DATASET_ALIASES["imagenet-val"].split == "validation"
    assert len(load_task("mini", aliases={"mini": (digits, "test")})) == 40
    monkeypatch.setitem(tasks_module.DATASET_ALIASES, "digits-mini", {"path": digits, "split": "test"})
    assert load_task("digits-mini").fingerprint == load_task(digits, split="test").fingerprint


# -------------------------------------------------------------------------------- local data and arrays


def test_local_parquet_folder_and_imagefolder(tmp_path: Path):
    parquet = load_task(FIXTURES / "digits-mini", split="test")
    assert (len(parquet), parquet.num_classes) == (40, 10)

    for root in (tmp_path / "a", tmp_path / "b"):
        for name, value in (("cat", 10), ("dog", 200)):
            (root / name).mkdir(parents=True)
            for i in range(3):
                (root / name / f"{i}.png").write_bytes(png((value + i, 0, 0)))
    task_a, task_b = load_task(tmp_path / "a"), load_task(tmp_path / "b")
    assert task_a.class_names == ["cat", "dog"] and np.bincount(task_a.labels).tolist() == [3, 3]
    assert task_a.fingerprint == task_b.fingerprint  # content, not location
    (tmp_path / "b" / "dog" / "0.png").write_bytes(png((1, 2, 3)))
    assert load_task(tmp_path / "b").fingerprint != task_a.fingerprint


def test_dataset_object_string_labels_and_content_fingerprint():
    images = [png((i * 20, 0, 0)) for i in range(6)]
    ds = image_dataset(images, ["dog", "cat", "bird", "dog", "cat", "bird"], datasets.Value("string"))
    task = load_task(ds)
    assert task.class_names == ["bird", "cat", "dog"]
    assert task.labels.tolist() == [2, 1, 0, 2, 1, 0]
    assert pixels(task, 3)[0, 0].tolist() == [60, 0, 0]
    assert load_task(ds).fingerprint == task.fingerprint
    relabelled = image_dataset(images, ["dog", "cat", "bird", "cat", "cat", "bird"], datasets.Value("string"))
    assert load_task(relabelled).fingerprint != task.fingerprint


def test_regression_targets_and_arrays():
    images = [png((i, i, i)) for i in range(5)]
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in images],
                                     "target": [0.5, 1.5, 2.0, 3.25, 4.0]},
                                    features=datasets.Features(image=datasets.Image(),
                                                               target=datasets.Value("float32")))
    task = load_task(ds)
    assert task.regression and task.labels.dtype == np.float32 and task.class_names is None
    assert task.labels.tolist() == [0.5, 1.5, 2.0, 3.25, 4.0]
    with pytest.raises(DatasetError, match="need class labels"):
        load_task(ds, max_per_class=2)

    array = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    arrays = load_task((array, [0, 1, 0, 1, 2, 2]))
    assert (len(arrays), arrays.num_classes) == (6, 3) and np.array_equal(pixels(arrays, 4), array[4])
    multi = task_from_arrays(array, np.ones((6, 2)) * np.arange(6)[:, None], regression=True)
    assert multi.labels.shape == (6, 2) and multi.num_classes == 2
    assert task_from_arrays(array, [0, 1, 0, 1, 2, 2]).fingerprint == arrays.fingerprint
    assert task_from_arrays(array[::-1].copy(), [0, 1, 0, 1, 2, 2]).fingerprint != arrays.fingerprint


def test_image_modes_are_converted_to_rgb():
    transparent = PIL.Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(to_rgb(transparent)).tolist()[0][0] == [255, 255, 255]  # composited on white
    half = PIL.Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert np.asarray(to_rgb(half))[0, 0].tolist() == [127, 127, 127]
    assert np.asarray(to_rgb(PIL.Image.new("L", (4, 4), 77)))[0, 0].tolist() == [77, 77, 77]
    sixteen = PIL.Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert sixteen.mode.startswith("I;16") and np.asarray(to_rgb(sixteen))[0, 0].tolist() == [255] * 3
    mid = PIL.Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))
    assert np.asarray(to_rgb(mid))[0, 0].tolist() == [128] * 3  # rescaled, not clipped to 255
    palette = PIL.Image.new("P", (4, 4), 3)
    assert to_rgb(palette).mode == "RGB"

    grey16 = np.full((3, 4, 4), 65535, dtype=np.uint16)
    task = task_from_arrays(grey16, [0, 1, 1])
    assert task.image(0).mode == "RGB" and pixels(task, 0)[0, 0].tolist() == [255] * 3
    rgba_png = png((10, 20, 30, 255), mode="RGBA")
    gray_png = png(99, mode="L")
    task = load_task(image_dataset([rgba_png, gray_png], [0, 1]))
    assert pixels(task, 0)[0, 0].tolist() == [10, 20, 30] and pixels(task, 1)[0, 0].tolist() == [99] * 3


def test_bad_data_errors():
    good = [png((i, 0, 0)) for i in range(6)]
    with pytest.raises(DatasetError, match="at least 2 classes, found 1"):
        load_task(image_dataset(good, [3] * 6))
    corrupt = [*good[:3], b"definitely not a png", *good[4:]]
    with pytest.raises(DatasetError, match="image at row 3 is not a readable image"):
        load_task(image_dataset(corrupt, [0, 1, 0, 1, 0, 1]))
    truncated = [*good[:2], good[2][:40], *good[3:]]
    with pytest.raises(DatasetError, match="row 2"):
        load_task(image_dataset(truncated, [0, 1, 0, 1, 0, 1]))
    lazy = load_task(image_dataset(corrupt, [0, 1, 0, 1, 0, 1]), check_images=False)
    with pytest.raises(DatasetError, match="image 3 cannot be decoded"):
        lazy.image(3)
    with pytest.raises(DatasetError, match="empty"):
        load_task(image_dataset([], []))
    with pytest.raises(DatasetError, match="no label"):
        load_task(image_dataset(good[:2], [-1, 0], datasets.ClassLabel(names=["a", "b"])))
    with pytest.raises(DatasetError, match="no image column"):
        load_task(datasets.Dataset.from_dict({"x": [1, 2], "label": [0, 1]}))
    with pytest.raises(DatasetError, match="3 images but 2 labels"):
        task_from_arrays(np.zeros((3, 4, 4), np.uint8), [0, 1])
