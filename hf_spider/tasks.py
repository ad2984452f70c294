"""Labelled image tasks: a Hub dataset, a local folder, a ``datasets.Dataset`` or arrays in; a :class:`Task` out.

A :class:`Task` is what every score, embedder and ranker consumes: lazily decoded images (memory stays
flat, whatever the split size), labels as a NumPy array, class names, and a ``fingerprint`` that names
the exact data (Hub commit or content hash, split, sub-sampling) so extracted features can be cached.

    >>> task = load_task("cifar10", split="test", max_per_class=50)      # doctest: +SKIP
    >>> len(task), task.num_classes, task.image(0).size                  # doctest: +SKIP
    (500, 10, (32, 32))

Validation happens here, once (see ``sklearn.utils.check_array``): columns, splits, labels and image
headers are checked when the task is built, and :meth:`Task.image` always returns an RGB image.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from .errors import DatasetError
from .hub.client import endpoint, hub_api

__all__ = [
    "DATASET_ALIASES",
    "DatasetAlias",
    "Task",
    "load_task",
    "parse_dataset_spec",
    "sample_per_class",
    "task_from_arrays",
    "to_rgb",
]

IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels", "fine_label")
REGRESSION_COLUMNS = ("target", "targets")

_BATCH = 512  # rows read at once when scanning a column


@dataclass(frozen=True)
class DatasetAlias:
    """What a short dataset name stands for: a Hub repo and, optionally, its default split and columns."""

    path: str
    split: str | None = None
    config: str | None = None
    image_column: str | None = None
    label_column: str | None = None


AliasLike = str | tuple | Mapping | DatasetAlias

#: Friendly names accepted by :func:`load_task`. Users may add their own (``DATASET_ALIASES["x"] = "org/x"``);
#: values are a repo id, ``(repo_id, split)``, a mapping of :class:`DatasetAlias` fields, or a ``DatasetAlias``.
DATASET_ALIASES: dict[str, AliasLike] = {
    "cifar10": DatasetAlias("uoft-cs/cifar10", image_column="img", label_column="label"),
    "cifar100": DatasetAlias("uoft-cs/cifar100", image_column="img", label_column="fine_label"),
    "imagenet-val": DatasetAlias("ILSVRC/imagenet-1k", split="validation"),
    "mnist": DatasetAlias("ylecun/mnist"),
    "fashion-mnist": DatasetAlias("zalando-datasets/fashion_mnist"),
}


# ---------------------------------------------------------------------------------------------- the Task


@dataclass(frozen=True, eq=False)
class Task:
    """A labelled image task, ready for feature extraction.

    Attributes:
        images: lazily decoded storage: a ``datasets`` image column (memory-mapped, decoded on access),
            a list of PIL images, or a uint8 array ``[n, H, W(, C)]``. Read it with :meth:`image`, which
            also converts to RGB.
        labels: ``int64 [n]`` class ids in ``0..C-1`` (classification) or ``float32 [n]`` / ``[n, k]``
            targets (regression).
        class_names: one name per class id (``None`` for regression).
        regression: whether ``labels`` are real-valued targets.
        name: a human-readable origin, e.g. ``"uoft-cs/cifar10:test"``.
        fingerprint: sha256 naming the exact data: the Hub commit, config and split plus the sampling
            arguments for Hub datasets, a hash of the selected content otherwise. Equal fingerprints mean
            equal tasks, which is what the feature cache relies on.
    """

    images: Any
    labels: np.ndarray
    class_names: list[str] | None
    regression: bool
    name: str
    fingerprint: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes C (``len(class_names)``); for regression, the number of targets k."""
        if self.regression:
            return 1 if self.labels.ndim == 1 else int(self.labels.shape[1])
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self) else 0

    def image(self, index: int) -> PIL.Image.Image:
        """The ``index``-th image as RGB; :class:`DatasetError` naming the index if it cannot be decoded."""
        try:
            image = self.images[int(index)]
            if isinstance(image, np.ndarray):
                image = _array_to_pil(image)
            elif isinstance(image, (str, os.PathLike)):
                image = PIL.Image.open(image)
            return to_rgb(image)
        except DatasetError:
            raise
        except Exception as exc:  # PIL raises many unrelated types on bad data
            raise DatasetError(f"{self.name}: image {index} cannot be decoded ({type(exc).__name__}: {exc})") from exc

    def select(self, indices: Sequence[int] | np.ndarray, *, name: str | None = None) -> Task:
        """A sub-task with the rows ``indices`` (in that order); its fingerprint derives from this one's."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise DatasetError(f"indices out of range for a task of {len(self)} images")
        fingerprint = _sha256(self.fingerprint.encode(), b"select", idx.tobytes())
        return Task(_take(self.images, idx), self.labels[idx], self.class_names, self.regression,
                    name or self.name, fingerprint)


# ----------------------------------------------------------------------------------------- entry points


def load_task(
    source: str | os.PathLike | Any,
    *,
    split: str | None = None,
    config: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    regression: bool | None = None,
    max_per_class: int | None = None,
    shots: int | None = None,
    seed: int = 0,
    revision: str | None = None,
    aliases: Mapping[str, AliasLike] | None = None,
    check_images: bool = True,
    name: str | None = None,
) -> Task:
    """Load a labelled image task from the Hub, a local folder, a ``datasets.Dataset`` or arrays.

    Args:
        source: a Hub dataset id (``"org/name"``, optionally ``"org/name@revision"``), an alias from
            :data:`DATASET_ALIASES` (or ``aliases``), a local folder (``class/xxx.png`` image-folder
            layout, or parquet files / a README ``configs:`` section), a ``datasets.Dataset`` /
            ``DatasetDict``, or an ``(images, labels)`` pair (see :func:`task_from_arrays`).
        split: split to load; defaults to the alias's split, else ``"train"``. Slices such as
            ``"train[:100]"`` are passed through to ``datasets``.
        config: dataset configuration (subset) name, for repos with several.
        image_column, label_column: column names; auto-detected when ``None`` (``image``/``img``/first
            ``Image`` feature; ``label``/``labels``/``fine_label``/first ``ClassLabel``/``target``).
        regression: treat labels as real-valued targets; auto (float labels) when ``None``.
        max_per_class: keep at most this many examples per class (seeded random choice).
        shots: keep exactly this many examples per class (few-shot); a class with fewer is an error.
        seed: seed of the sub-sampling; it changes the fingerprint only when sub-sampling is used.
        revision: Hub branch, tag or commit; resolved to a commit sha for the fingerprint.
        aliases: extra or overriding aliases for this call (same value formats as ``DATASET_ALIASES``).
        check_images: open every selected image's header (and check PNG integrity) now, so a corrupt
            file fails here with its row rather than in the middle of an extraction.
        name: the task's name (defaults to its origin).

    Raises:
        DatasetError: unknown dataset, missing split (lists the available ones), missing column (lists
            the columns), empty split, fewer than 2 classes, unreadable image (names the row), or
            sub-sampling that cannot be satisfied.
    """
    if isinstance(source, tuple) and len(source) == 2:
        return task_from_arrays(source[0], source[1], regression=regression, max_per_class=max_per_class,
                                shots=shots, seed=seed, name=name or "arrays")

    import datasets

    origin: dict[str, Any] | None = None  # None: fingerprint the content instead
    if isinstance(source, datasets.DatasetDict):
        split = split or "train"
        if _base_split(split) not in source:
            raise DatasetError(f"split {split!r} not found; available splits: {sorted(source)}")
        dataset = source[_base_split(split)]
        default_name = f"dataset:{split}"
    elif isinstance(source, datasets.Dataset):
        dataset = source
        default_name = f"{source.info.dataset_name or 'dataset'}:{source.split or split or 'train'}"
    elif isinstance(source, (str, os.PathLike)):
        text = str(source)
        alias = _resolve_alias(text, aliases)
        if alias is not None:
            text = alias.path
            split = split or alias.split
            config = config or alias.config
            image_column = image_column or alias.image_column
            label_column = label_column or alias.label_column
        split = split or "train"
        folder = Path(text).expanduser()
        if folder.is_dir():
            dataset = _load_split(str(folder), split=split, config=config, revision=None, where=str(folder))
            default_name = f"{folder.name}:{split}"
        elif text.startswith(("/", "./", "../", "~", ".\\")) or folder.exists():  # a path, not a Hub id
            raise DatasetError(f"no such folder {text!r}; pass a folder of images or parquet files, or a Hub "
                               "dataset id (org/name)")
        else:
            repo_id, at_revision = _split_revision(text)
            revision = revision or at_revision
            sha = _resolve_dataset_revision(repo_id, revision, alias=str(source) if alias is not None else None)
            dataset = _load_split(repo_id, split=split, config=config, revision=sha, where=f"{repo_id}@{sha[:8]}")
            origin = {"hub": repo_id, "sha": sha, "config": config, "split": split}
            default_name = f"{repo_id}:{split}"
    else:
        raise DatasetError(
            f"cannot build a task from {type(source).__name__}: pass a Hub dataset id, a folder, "
            "a datasets.Dataset or an (images, labels) pair"
        )
    return _task_from_dataset(
        dataset, name=name or default_name, image_column=image_column, label_column=label_column,
        regression=regression, max_per_class=max_per_class, shots=shots, seed=seed, origin=origin,
        check_images=check_images,
    )


def task_from_arrays(
    images: np.ndarray | Sequence[PIL.Image.Image] | Sequence[np.ndarray],
    labels: Sequence[Any] | np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
    regression: bool | None = None,
    max_per_class: int | None = None,
    shots: int | None = None,
    seed: int = 0,
    name: str = "arrays",
) -> Task:
    """A task from in-memory images and labels; the fingerprint hashes the (selected) content.

    Args:
        images: uint8 (or float in [0, 1], or uint16) array ``[n, H, W]`` / ``[n, H, W, C]`` with C in
            1, 3, 4, or a sequence of PIL images / per-image arrays.
        labels: ``[n]`` class ids, strings (mapped to ids in sorted order) or floats (regression), or
            ``[n, k]`` regression targets.
        class_names: names of the class ids ``0..C-1`` when ``labels`` are ids.
        regression, max_per_class, shots, seed: as in :func:`load_task`.
    """
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
            raise DatasetError(f"image array must be [n, H, W] or [n, H, W, C] with C in 1, 3, 4; got {images.shape}")
    elif not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
        raise DatasetError(f"images must be an array or a sequence of images, got {type(images).__name__}")
    values = np.asarray(labels)
    if len(images) != len(values):
        raise DatasetError(f"{len(images)} images but {len(values)} labels")
    encoded, names, is_regression = _encode_labels(values, regression=regression,
                                                   class_names=list(class_names) if class_names else None)
    _check_task_labels(encoded, is_regression, where=name)
    rows = np.arange(len(encoded))
    if max_per_class is not None or shots is not None:
        rows = _sampled_rows(encoded, is_regression, max_per_class=max_per_class, shots=shots, seed=seed, where=name)
        images = _take(images, rows)
        encoded = encoded[rows]
        _check_task_labels(encoded, is_regression, where=name)
    digest = hashlib.sha256(b"arrays")
    _hash_labels(digest, encoded, names, is_regression)
    if isinstance(images, np.ndarray):
        digest.update(f"{images.dtype}{images.shape}".encode())
        digest.update(np.ascontiguousarray(images).tobytes())
    else:
        for i, image in enumerate(images):
            _hash_in_memory_image(digest, image, where=f"{name}: image {int(rows[i])}")
    return Task(images, encoded, names, is_regression, name, digest.hexdigest())


def sample_per_class(
    labels: np.ndarray, *, max_per_class: int | None = None, shots: int | None = None, seed: int = 0
) -> np.ndarray:
    """Sorted row indices of a balanced, seeded sub-sample of classification ``labels``.

    ``max_per_class`` caps each class (smaller classes are kept whole); ``shots`` takes exactly that many
    of each class present and raises :class:`DatasetError` naming a class that has fewer.
    """
    if max_per_class is not None and shots is not None:
        raise DatasetError("pass max_per_class or shots, not both")
    k = shots if shots is not None else max_per_class
    if k is None:
        return np.arange(len(labels))
    if int(k) < 1:
        raise DatasetError(f"{'shots' if shots is not None else 'max_per_class'} must be >= 1, got {k}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if shots is not None and rows.size < shots:
            raise DatasetError(f"class {c} has {rows.size} examples, fewer than shots={shots}")
        keep.append(rng.permutation(rows)[: int(k)])
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Convert any PIL image to 8-bit RGB.

    Transparent images (RGBA, LA, palette with transparency) are composited on white rather than having
    their alpha dropped (which exposes arbitrary colours under transparent pixels); 16-bit and 32-bit
    grayscale are rescaled to 8 bits rather than clipped.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or array.max(initial=0) > 255:
            array = array / 257.0
        elif image.mode == "F" and array.max(initial=0) <= 1.0:
            array = array * 255.0
        return PIL.Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


# ---------------------------------------------------------------------------------------- Hub / folders


def _resolve_alias(text: str, aliases: Mapping[str, AliasLike] | None) -> DatasetAlias | None:
    table = {**DATASET_ALIASES, **(aliases or {})}
    if text not in table:
        return None
    value = table[text]
    if isinstance(value, DatasetAlias):
        return value
    if isinstance(value, str):
        return DatasetAlias(value)
    if isinstance(value, tuple):
        return DatasetAlias(*value)
    if isinstance(value, Mapping):
        return DatasetAlias(**value)
    raise DatasetError(f"alias {text!r} has an unsupported value {value!r}")


def parse_dataset_spec(text: str) -> tuple[str, str | None]:
    """``DATASET[:split]`` as the command line takes it: ``org/name:split`` -> (``org/name``, ``split``); no
    suffix -> (``text``, None)."""
    name, sep, split = text.rpartition(":")
    return (name, split) if sep and name and "/" not in split else (text, None)


def _split_revision(text: str) -> tuple[str, str | None]:
    repo_id, _, revision = text.partition("@")
    return repo_id, revision or None


def _resolve_dataset_revision(repo_id: str, revision: str | None, *, alias: str | None = None) -> str:
    """Commit sha of ``repo_id`` at ``revision`` (a moving branch becomes a fixed cache key); ``alias`` is the
    name the user gave, when ``repo_id`` is what it stands for."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    from .hub.retry import with_retries

    try:
        return with_retries(lambda: hub_api().dataset_info(repo_id, revision=revision).sha,
                            what=f"reading dataset {repo_id}")
    except RevisionNotFoundError as exc:
        raise DatasetError(f"revision {revision!r} not found in dataset {repo_id!r}") from exc
    except RepositoryNotFoundError as exc:
        if alias is not None:
            raise DatasetError(f"{alias!r} stands for the Hub dataset {repo_id!r}, which is not on the Hub at "
                               f"{endpoint()} (or it is gated: log in with `hf auth login`)") from exc
        known = difflib.get_close_matches(repo_id, list(DATASET_ALIASES), n=3)
        hint = f"; did you mean {', '.join(map(repr, known))}?" if known else ""
        raise DatasetError(
            f"{repo_id!r} is neither a local folder nor a dataset on the Hub at {endpoint()} "
            f"(or it is gated: log in with `hf auth login`){hint}"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise DatasetError(f"cannot read the dataset {repo_id!r} from the Hub: {exc}") from exc


def _base_split(split: str) -> str:
    return re.split(r"[\[+]", split, maxsplit=1)[0].strip()


def _load_split(path: str, *, split: str, config: str | None, revision: str | None, where: str):
    """One split of a Hub repo or local folder, downloading and preparing only that split's files."""
    import datasets

    try:
        builder = datasets.load_dataset_builder(path, name=config, revision=revision)
    except (ValueError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise DatasetError(f"cannot read dataset {where}: {exc}") from exc
    data_files = builder.config.data_files
    available = list(data_files) if data_files else list(builder.info.splits or [])
    wanted = [_base_split(part) for part in split.split("+")]
    missing = [s for s in wanted if available and s not in available]
    if missing:
        raise DatasetError(f"split {missing[0]!r} not found in {where}; available splits: {available}")
    kwargs: dict[str, Any] = {}
    if data_files and len(data_files) > len(wanted):  # prepare only the requested split(s)
        kwargs["data_files"] = {s: data_files[s] for s in wanted}
    try:
        return datasets.load_dataset(path, name=config, revision=revision, split=split, **kwargs)
    except ValueError as exc:
        raise DatasetError(f"cannot load split {split!r} of {where}: {exc}") from exc


# ------------------------------------------------------------------------------------- Dataset -> Task


def _task_from_dataset(
    dataset: Any, *, name: str, image_column: str | None, label_column: str | None, regression: bool | None,
    max_per_class: int | None, shots: int | None, seed: int, origin: dict[str, Any] | None, check_images: bool,
) -> Task:
    import datasets

    if dataset.format["type"] is not None:
        dataset = dataset.with_format(None)
    if len(dataset) == 0:
        raise DatasetError(f"{name}: the split is empty")
    features = dataset.features
    image_col = _find_image_column(features, image_column, where=name)
    label_col = _find_label_column(features, label_column, exclude=image_col, where=name)

    label_feature = features[label_col]
    class_names = list(label_feature.names) if isinstance(label_feature, datasets.ClassLabel) else None
    values = _read_column(dataset, label_col, where=name)
    labels, class_names, is_regression = _encode_labels(values, regression=regression, class_names=class_names,
                                                        where=f"{name}: column {label_col!r}")
    _check_task_labels(labels, is_regression, where=name)

    rows = np.arange(len(labels))
    sampling = None
    if max_per_class is not None or shots is not None:
        rows = _sampled_rows(labels, is_regression, max_per_class=max_per_class, shots=shots, seed=seed, where=name)
        dataset = dataset.select(rows)
        labels = labels[rows]
        _check_task_labels(labels, is_regression, where=name)
        sampling = {"max_per_class": max_per_class, "shots": shots, "seed": seed}

    image_data = dataset.select_columns([image_col])
    feature = image_data.features[image_col]
    if not isinstance(feature, datasets.Image) or not feature.decode:
        image_data = image_data.cast_column(image_col, datasets.Image())

    if origin is not None:
        spec = {**origin, "image_column": image_col, "label_column": label_col, "regression": is_regression,
                "sampling": sampling}
        fingerprint = _sha256(json.dumps(spec, sort_keys=True).encode())
        if check_images:
            _scan_images(image_data, image_col, rows, digest=None, where=name)
    else:
        digest = hashlib.sha256(b"dataset")
        _hash_labels(digest, labels, class_names, is_regression)
        _scan_images(image_data, image_col, rows, digest=digest, where=name, verify=check_images)
        fingerprint = digest.hexdigest()
    return Task(image_data[image_col], labels, class_names, is_regression, name, fingerprint)


def _find_image_column(features: Mapping[str, Any], requested: str | None, *, where: str) -> str:
    import datasets

    columns = list(features)
    if requested is not None:
        if requested not in features:
            raise DatasetError(f"{where}: image column {requested!r} not found; columns: {columns}")
        feature = features[requested]
        if not (isinstance(feature, datasets.Image) or getattr(feature, "dtype", None) in ("string", "large_string")):
            raise DatasetError(f"{where}: column {requested!r} holds {feature}, not images or image paths")
        return requested
    for column in IMAGE_COLUMNS:
        if column in features and isinstance(features[column], datasets.Image):
            return column
    for column, feature in features.items():
        if isinstance(feature, datasets.Image):
            return column
    raise DatasetError(f"{where}: no image column found (pass --image-column, or image_column= in Python); "
                       f"columns: {columns}")


def _find_label_column(features: Mapping[str, Any], requested: str | None, *, exclude: str, where: str) -> str:
    import datasets

    columns = list(features)
    if requested is not None:
        if requested not in features:
            raise DatasetError(f"{where}: label column {requested!r} not found; columns: {columns}")
        return requested
    for column in LABEL_COLUMNS:
        if column in features and column != exclude:
            return column
    for column, feature in features.items():
        if isinstance(feature, datasets.ClassLabel):
            return column
    for column in REGRESSION_COLUMNS:
        if column in features:
            return column
    raise DatasetError(f"{where}: no label column found (pass --label-column, or label_column= in Python); "
                       f"columns: {columns}")


def _read_column(dataset: Any, column: str, *, where: str) -> np.ndarray:
    """A column as a NumPy array without decoding other columns (Arrow, honouring ``select`` indices).

    Missing values (nulls) are an error naming the first row: Arrow would turn them into NaN (a
    float column, taken for regression targets) or ``None``.
    """
    table = dataset.select_columns([column]).with_format("arrow")[:]
    array = table.column(column)
    if array.null_count:
        first = int(np.argmax(array.is_null().to_numpy(zero_copy_only=False)))
        raise DatasetError(f"{where}: column {column!r} has {array.null_count} missing labels (None), the first "
                           f"at row {first}; drop or label those rows")
    try:
        return array.to_numpy()
    except Exception:  # nested lists (multi-target regression)
        return np.asarray(array.to_pylist())


def _encode_labels(
    values: np.ndarray, *, regression: bool | None, class_names: list[str] | None, where: str = "labels"
) -> tuple[np.ndarray, list[str] | None, bool]:
    """(labels, class_names, regression) from raw label values; strings become sorted class ids."""
    if values.dtype == object and values.ndim == 1 and len(values) and isinstance(values[0], (list, np.ndarray)):
        values = np.asarray(values.tolist())
    kind = values.dtype.kind
    if kind in "OUS":
        if regression:
            raise DatasetError(f"{where}: string labels cannot be regression targets")
        if any(v is None for v in values.tolist()):
            raise DatasetError(f"{where}: missing labels (None)")
        names, ids = np.unique(values.astype(str), return_inverse=True)
        return ids.astype(np.int64).reshape(-1), [str(n) for n in names], False
    if kind not in "biuf":
        raise DatasetError(f"{where}: labels of dtype {values.dtype} are not supported")
    if values.ndim == 2 or (regression is None and kind == "f") or regression:
        if regression is False:
            raise DatasetError(f"{where}: {values.ndim}-D float targets need regression=True")
        targets = values.astype(np.float32)
        if not np.isfinite(targets).all():
            raise DatasetError(f"{where}: regression targets contain NaN or inf")
        return targets, None, True
    if class_names is not None:  # ClassLabel / explicit names: keep the ids, they are shared across splits
        ids = values.astype(np.int64)
        if (ids < 0).any():
            raise DatasetError(f"{where}: {int((ids < 0).sum())} rows have no label (-1); use a labelled split")
        if ids.max(initial=0) >= len(class_names):
            raise DatasetError(f"{where}: label {int(ids.max())} out of range for {len(class_names)} class names")
        return ids, class_names, False
    if kind == "f" and not np.all(values == np.round(values)):
        raise DatasetError(f"{where}: non-integer float labels; pass regression=True for real-valued targets")
    uniques, ids = np.unique(values, return_inverse=True)
    names = [str(int(u)) if kind in "biuf" and float(u).is_integer() else str(u) for u in uniques]
    return ids.astype(np.int64).reshape(-1), names, False


def _check_task_labels(labels: np.ndarray, regression: bool, *, where: str) -> None:
    if len(labels) == 0:
        raise DatasetError(f"{where}: the task is empty")
    if regression:
        if len(labels) < 2:
            raise DatasetError(f"{where}: a regression task needs at least 2 examples")
        return
    present = np.unique(labels)
    if present.size < 2:
        raise DatasetError(f"{where}: a classification task needs at least 2 classes, found {present.size}")


def _sampled_rows(labels: np.ndarray, regression: bool, *, max_per_class: int | None, shots: int | None,
                  seed: int, where: str) -> np.ndarray:
    if regression:
        raise DatasetError(f"{where}: max_per_class/shots need class labels, not regression targets")
    try:
        return sample_per_class(labels, max_per_class=max_per_class, shots=shots, seed=seed)
    except DatasetError as exc:
        raise DatasetError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------- images and hashing


def _scan_images(image_data: Any, column: str, rows: np.ndarray, *, digest: Any, where: str,
                 verify: bool = True) -> None:
    """Hash (when ``digest``) and header-check (when ``verify``) every encoded image, without decoding."""
    raw = image_data.with_format("arrow")
    position = 0
    for batch in raw.iter(batch_size=_BATCH):
        for item in batch.column(column).to_pylist():
            row = int(rows[position])
            data = item.get("bytes") if isinstance(item, dict) else None
            path = item.get("path") if isinstance(item, dict) else item
            if data is None and path:
                try:
                    data = Path(path).read_bytes()
                except OSError as exc:
                    raise DatasetError(f"{where}: image at row {row} cannot be read ({exc})") from exc
            if data is None:
                raise DatasetError(f"{where}: image at row {row} is missing")
            if digest is not None:
                digest.update(len(data).to_bytes(8, "little"))
                digest.update(data)
            if verify:
                _verify_image_bytes(data, where=f"{where}: image at row {row}")
            position += 1


def _verify_image_bytes(data: bytes, *, where: str) -> None:
    """Header and integrity check of one encoded image, without decoding its pixels.

    An image declaring more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (PIL's decompression-bomb limit,
    89 million by default) is refused here rather than decoded into gigabytes during extraction.
    """
    limit = PIL.Image.MAX_IMAGE_PIXELS
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            if limit and image.size[0] * image.size[1] > limit:
                raise PIL.Image.DecompressionBombError(f"{image.size[0]}x{image.size[1]} pixels")
            image.verify()
    except PIL.Image.DecompressionBombError as exc:
        raise DatasetError(f"{where} has more pixels than PIL.Image.MAX_IMAGE_PIXELS = {limit:,} ({exc}): a "
                           "decompression bomb, or a huge image to downscale first (or raise that limit)") from exc
    except Exception as exc:
        raise DatasetError(f"{where} is not a readable image ({type(exc).__name__}: {exc})") from exc


def _hash_labels(digest: Any, labels: np.ndarray, class_names: list[str] | None, regression: bool) -> None:
    digest.update(json.dumps({"names": class_names, "regression": regression, "dtype": str(labels.dtype),
                              "shape": list(labels.shape)}).encode())
    digest.update(np.ascontiguousarray(labels).tobytes())


def _hash_in_memory_image(digest: Any, image: Any, *, where: str) -> None:
    if isinstance(image, np.ndarray):
        digest.update(f"{image.dtype}{image.shape}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    elif isinstance(image, PIL.Image.Image):
        try:
            digest.update(f"{image.mode}{image.size}".encode())
            digest.update(image.tobytes())
        except Exception as exc:
            raise DatasetError(f"{where} cannot be decoded ({type(exc).__name__}: {exc})") from exc
    else:
        raise DatasetError(f"{where} is a {type(image).__name__}, not a PIL image or an array")


def _array_to_pil(array: np.ndarray) -> PIL.Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint16:
        if array.ndim == 2:
            return PIL.Image.fromarray(array)  # mode I;16, rescaled by to_rgb
        return PIL.Image.fromarray(np.rint(array / 257.0).astype(np.uint8))
    if array.dtype.kind == "f":
        array = np.clip(np.rint(array * 255.0 if array.max(initial=0) <= 1.0 else array), 0, 255)
    return PIL.Image.fromarray(array.astype(np.uint8, copy=False))


def _take(images: Any, rows: np.ndarray) -> Any:
    if isinstance(images, np.ndarray):
        return images[rows]
    source = getattr(images, "source", None)
    column = getattr(images, "column_name", None)
    if source is not None and column is not None and hasattr(source, "select"):  # datasets.Column
        return source.select(rows)[column]
    return [images[int(i)] for i in rows]


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()
