"""The embedding file (SPEC §5): one function per verb (name, serialise, parse and validate).

An embedding lives in the model's own repo as ``hf_spider/<baseline-slug>.safetensors``: one float32 tensor
``embedding`` [N] in [0, 1] and string metadata naming the baseline, the reference set and the model revision
it was computed from.

Anything downloaded is untrusted: :func:`parse_embedding` reads safetensors only, bounds the header and tensor
sizes before parsing, and checks dtype, shape, range, finiteness and metadata.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArtifactError

__all__ = [
    "COMPATIBILITY_KEYS",
    "EMBEDDING_DIR",
    "FORMAT_VERSION",
    "HF_SPIDER_TAG",
    "MAX_FILE_BYTES",
    "PublishedEmbedding",
    "baseline_slug",
    "embedding_path",
    "parse_embedding",
    "serialize_embedding",
    "validate_embedding",
]

EMBEDDING_DIR = "hf_spider"
HF_SPIDER_TAG = "hf-spider"
FORMAT_VERSION = "1"
MAX_HEADER_BYTES = 64 * 1024  # a valid header is under 2 KiB
MAX_DIMENSION = 1 << 16
MAX_FILE_BYTES = 8 + MAX_HEADER_BYTES + 4 * MAX_DIMENSION  # no valid embedding file is larger (~320 KiB)
REQUIRED_METADATA = (
    "format_version", "baseline", "baseline_revision", "reference", "reference_split", "reference_fingerprint",
    "model", "model_revision", "model_weights", "steps", "seed", "fidelity_to", "fidelity_from", "tool_version",
    "created_at",
)
#: The metadata that must match for two embeddings to be comparable (SPEC §3.3). The baseline is identified by
#: its weights hash rather than its commit, so a later commit to the baseline repo (a card edit, its own
#: embedding) keeps every embedding comparable; an embedding without ``baseline_weights`` is compared with none.
COMPATIBILITY_KEYS = ("baseline", "baseline_weights", "reference", "reference_split", "reference_fingerprint")
#: Metadata that names something and so cannot be empty (``model_revision`` is empty for a folder model).
_NON_EMPTY = ("baseline", "baseline_revision", "reference", "reference_fingerprint", "model", "model_weights")
_INT = re.compile(r"-?[0-9]{1,20}")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]{1,3})?")


def _number(text: str, low: float, high: float, *, integer: bool = False) -> bool:
    """Whether ``text`` is a plain decimal number (no ``nan``, ``inf``, ``1_0`` or spaces) in [low, high]."""
    if not (_INT if integer else _DECIMAL).fullmatch(text):
        return False
    value = int(text) if integer else float(text)
    return math.isfinite(value) and low <= value <= high


def _iso_datetime(text: str) -> bool:
    try:
        _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))  # Python 3.10 does not read "Z"
        return True
    except ValueError:
        return False


#: What each metadata value must look like: (description, test). Keys absent from a file are not tested.
_METADATA_FORMATS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "steps": ("a whole number >= 1", lambda s: _number(s, 1, 10**9, integer=True)),
    "seed": ("a 64-bit whole number", lambda s: _number(s, -(2**63), 2**64 - 1, integer=True)),
    "max_per_class": ("empty or a whole number >= 1", lambda s: s == "" or _number(s, 1, 10**12, integer=True)),
    "fidelity_to": ("a mean cosine in [-1, 1]", lambda s: _number(s, -1.0, 1.0 + 1e-6)),
    "fidelity_from": ("a mean cosine in [-1, 1]", lambda s: _number(s, -1.0, 1.0 + 1e-6)),
    "tau": ("a positive temperature", lambda s: _number(s, 1e-12, 1e6)),
    "created_at": ("an ISO 8601 date", _iso_datetime),
}


@dataclass(frozen=True)
class PublishedEmbedding:
    """A validated embedding read from a repo: its vector, metadata, the repo commit it came from and the sha256 of
    the file's bytes (empty when the file was not read, e.g. an index row that names none)."""

    repo_id: str
    repo_sha: str
    vector: np.ndarray
    metadata: dict[str, str]
    file_sha256: str = ""

    @property
    def settings(self) -> tuple[str | None, ...]:
        """What must match for two embeddings to be comparable (:data:`COMPATIBILITY_KEYS`)."""
        return tuple(self.metadata.get(k) for k in COMPATIBILITY_KEYS)

    @property
    def fidelity(self) -> tuple[float, float]:
        return float(self.metadata["fidelity_to"]), float(self.metadata["fidelity_from"])


def baseline_slug(baseline: str) -> str:
    """``timm/resnet18.a1_in1k`` -> ``timm--resnet18.a1_in1k`` (the Hub cache's convention)."""
    slug = baseline.removeprefix("hf-hub:").split("@", 1)[0].strip("/").replace("/", "--")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", slug):
        raise InvalidArtifactError(f"baseline id {baseline!r} cannot name an embedding file")
    return slug


def embedding_path(baseline: str) -> str:
    """Path of the embedding over ``baseline`` inside a model repo."""
    return f"{EMBEDDING_DIR}/{baseline_slug(baseline)}.safetensors"


def serialize_embedding(vector: np.ndarray, metadata: dict[str, Any]) -> bytes:
    """safetensors bytes of one float32 ``embedding`` tensor with string metadata (validated first)."""
    from safetensors.numpy import save

    meta = {k: str(v) for k, v in metadata.items()}
    data = save({"embedding": np.ascontiguousarray(vector, dtype=np.float32)}, metadata=meta)
    parse_embedding(data)  # never publish what a reader would reject
    return data


def parse_embedding(data: bytes, *, expected: dict[str, str] | None = None) -> tuple[np.ndarray, dict[str, str]]:
    """Validate untrusted embedding bytes; returns ``(vector [N] float32, metadata)``.

    Every bound is checked before the part it protects is parsed: the file size, then the 8-byte
    header length (at most 64 KiB), then the header's JSON (one tensor ``embedding``, dtype F32,
    one dimension of 1..65536, offsets spanning exactly the bytes that follow), and only then the
    metadata (every required key, well-formed numbers and dates, printable text, the format version,
    the ``expected`` values such as the baseline) and the tensor (finite values in [0, 1]).

    Raises:
        InvalidArtifactError: naming the first problem found; nothing else, whatever the bytes.
    """
    header, data_start = _read_header(data)
    size = _check_tensor_spec(header, len(data) - data_start)
    metadata = _check_metadata(header.get("__metadata__"), expected)
    return _read_vector(data, size), metadata


def _read_header(data: bytes) -> tuple[dict[str, Any], int]:
    """The safetensors header as a dict and where the tensor data starts, bounds checked first."""
    if not data:
        raise InvalidArtifactError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidArtifactError(f"file of {len(data)} bytes is larger than any valid embedding ({MAX_FILE_BYTES})")
    if len(data) < 8:
        raise InvalidArtifactError(f"not a safetensors file: {len(data)} bytes, shorter than the 8-byte header length"
                                   + _foreign_format(data))
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES:
        raise InvalidArtifactError(f"safetensors header of {header_len} bytes exceeds the {MAX_HEADER_BYTES}-byte "
                                   f"limit" + _foreign_format(data))
    if 8 + header_len > len(data):
        raise InvalidArtifactError(f"safetensors header of {header_len} bytes is truncated: the file has "
                                   f"{len(data) - 8} after the length" + _foreign_format(data))
    raw = data[8 : 8 + header_len]
    if not raw.startswith(b"{"):
        raise InvalidArtifactError("safetensors header is not a JSON object" + _foreign_format(data))
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InvalidArtifactError(f"safetensors header is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(header, dict):
        raise InvalidArtifactError("safetensors header is not a JSON object")
    return header, 8 + header_len


def _foreign_format(data: bytes) -> str:
    """A hint naming what the bytes are when they are not safetensors (a pickle is never unpickled)."""
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return " (the bytes are a Python pickle, which is never loaded: publish safetensors)"
    if data[:4] == b"PK\x03\x04":
        return " (the bytes are a zip archive, e.g. torch.save output, which is never loaded: publish safetensors)"
    return ""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: a repeated key is an error (readers could disagree on which value wins)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("repeated key in a JSON object")
    return out


def _check_tensor_spec(header: dict[str, Any], data_bytes: int) -> int:
    """The number of values N declared for the one tensor ``embedding``, checked against the bytes present."""
    tensors = sorted(k for k in header if k != "__metadata__")
    if tensors != ["embedding"]:
        raise InvalidArtifactError(f"expected exactly one tensor 'embedding', found {tensors[:5]}")
    spec = header["embedding"]
    if not isinstance(spec, dict):
        raise InvalidArtifactError(f"tensor 'embedding' is described by {type(spec).__name__}, not an object")
    if spec.get("dtype") != "F32":
        raise InvalidArtifactError(f"embedding dtype must be F32, not {str(spec.get('dtype'))[:20]!r}")
    shape = spec.get("shape")
    if not (isinstance(shape, list) and len(shape) == 1 and type(shape[0]) is int and 0 < shape[0] <= MAX_DIMENSION):
        raise InvalidArtifactError(f"embedding must be one-dimensional with 1..{MAX_DIMENSION} values, "
                                   f"not shape {str(shape)[:40]}")
    size = shape[0]
    offsets = spec.get("data_offsets")
    if not (isinstance(offsets, list) and [type(o) for o in offsets] == [int, int] and offsets == [0, 4 * size]):
        raise InvalidArtifactError(f"embedding data_offsets {str(offsets)[:40]} do not span its {4 * size} bytes")
    if data_bytes != 4 * size:
        raise InvalidArtifactError(f"tensor data is {data_bytes} bytes but the header declares {4 * size} "
                                   "(truncated or padded file)")
    return size


def validate_embedding(vector: np.ndarray, metadata: Any, *, expected: dict[str, str] | None = None,
                       ) -> tuple[np.ndarray, dict[str, str]]:
    """The checks of :func:`parse_embedding` on an embedding already read (an index row): the metadata, then the
    vector (float32 [N] with 1 <= N <= 65536, finite, in [0, 1]).

    Raises:
        InvalidArtifactError: naming the first problem found.
    """
    metadata = _check_metadata(metadata, expected)
    size = vector.shape[0] if isinstance(vector, np.ndarray) and vector.ndim == 1 else -1
    if not 0 < size <= MAX_DIMENSION:
        raise InvalidArtifactError(f"embedding must be one-dimensional with 1..{MAX_DIMENSION} values")
    return _check_vector(vector, size), metadata


def _read_vector(data: bytes, size: int) -> np.ndarray:
    """The embedding through the safetensors reader, re-checked: float32 [size], finite, in [0, 1]."""
    from safetensors.numpy import load

    try:
        vector = load(data)["embedding"]
    except Exception as e:  # safetensors raises its own error types for whatever it cannot read
        raise InvalidArtifactError(f"safetensors cannot read the file: {str(e)[:200]}") from None
    return _check_vector(vector, size)


def _check_vector(vector: np.ndarray, size: int) -> np.ndarray:
    if vector.dtype != np.float32 or vector.shape != (size,):
        raise InvalidArtifactError(f"embedding is {vector.dtype} {vector.shape}, not float32 ({size},)")
    if not np.isfinite(vector).all():
        raise InvalidArtifactError(f"embedding has {int((~np.isfinite(vector)).sum())} NaN or infinite values")
    if vector.min() < 0 or vector.max() > 1:
        raise InvalidArtifactError(f"embedding values must lie in [0, 1] "
                                   f"(found {vector.min():.3g}..{vector.max():.3g})")
    return vector


def _check_metadata(metadata: Any, expected: dict[str, str] | None) -> dict[str, str]:
    """The string metadata, every required key present and well formed, and equal to ``expected``."""
    if metadata is None:
        raise InvalidArtifactError("embedding has no metadata (__metadata__)")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidArtifactError("safetensors metadata must map strings to strings")
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise InvalidArtifactError(f"embedding metadata lacks {', '.join(missing)}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise InvalidArtifactError(f"embedding format version {metadata['format_version'][:20]!r} is not "
                                   f"{FORMAT_VERSION!r} (written by another hf_spider version)")
    for key, value in metadata.items():
        if not value.isprintable() or (not value and key in _NON_EMPTY):
            raise InvalidArtifactError(f"embedding metadata {key[:40]!r} is empty or holds control characters")
        description, test = _METADATA_FORMATS.get(key, ("", None))
        if test is not None and not test(value):
            raise InvalidArtifactError(f"embedding metadata {key} = {value[:40]!r} is not {description}")
    baseline_slug(metadata["baseline"])  # a baseline id that names a file
    for key, value in (expected or {}).items():
        if metadata.get(key) != value:
            raise InvalidArtifactError(f"embedding {key} is {str(metadata.get(key))[:80]!r}, expected {value!r}")
    return metadata
