"""Model embeddings on the Hub: one function per verb (serialise, validate, fetch, publish).

An embedding lives in the model's own repo as ``hf_spider/<baseline-slug>.safetensors`` (SPEC §5):
one float32 tensor ``embedding`` [N] in [0, 1] and string metadata naming the baseline, the
reference set and the model revision it was computed from. The model card gains the tag
``hf-spider`` (discovery through ``list_models(filter="hf-spider")``) and a section rendered from
``hub_cards/embedding_section.md``; the rest of the owner's card is kept as it was.

Anything downloaded is untrusted: :func:`parse_embedding` reads safetensors only, bounds the header
and tensor sizes before parsing, and checks dtype, shape, range, finiteness and metadata.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InvalidArtifactError

__all__ = [
    "EMBEDDING_DIR",
    "FORMAT_VERSION",
    "HF_SPIDER_TAG",
    "PublishedEmbedding",
    "baseline_slug",
    "download_embedding",
    "embedding_path",
    "fetch_embedding",
    "parse_embedding",
    "publish_embedding",
    "render_card_section",
    "serialize_embedding",
    "update_card",
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
_SECTION_START, _SECTION_END = "<!-- hf_spider:embedding:start -->", "<!-- hf_spider:embedding:end -->"
_TEMPLATES = (Path(__file__).resolve().parents[2] / "hub_cards", Path(__file__).resolve().parents[1] / "_hub_cards")


@dataclass(frozen=True)
class PublishedEmbedding:
    """A validated embedding read from a repo: its vector, metadata and the repo commit it came from."""

    repo_id: str
    repo_sha: str
    vector: np.ndarray
    metadata: dict[str, str]

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


def _read_vector(data: bytes, size: int) -> np.ndarray:
    """The embedding through the safetensors reader, re-checked: float32 [size], finite, in [0, 1]."""
    from safetensors.numpy import load

    try:
        vector = load(data)["embedding"]
    except Exception as e:  # safetensors raises its own error types for whatever it cannot read
        raise InvalidArtifactError(f"safetensors cannot read the file: {str(e)[:200]}") from None
    if vector.dtype != np.float32 or vector.shape != (size,):
        raise InvalidArtifactError(f"safetensors read {vector.dtype} {vector.shape}, not float32 ({size},)")
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


def fetch_embedding(
    repo_id: str, baseline: str, *, revision: str | None = None, expected: dict[str, str] | None = None,
    token: str | bool | None = None,
) -> PublishedEmbedding:
    """Download and validate the embedding over ``baseline`` published in ``repo_id``.

    Raises:
        huggingface_hub's ``EntryNotFoundError`` (no embedding) / ``RepositoryNotFoundError``;
        InvalidArtifactError: the file fails :func:`parse_embedding`.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    sha = revision if revision and re.fullmatch(r"[0-9a-f]{40}", revision) else api.model_info(
        repo_id, revision=revision).sha
    vector, metadata = parse_embedding(download_embedding(repo_id, embedding_path(baseline), sha, token=token),
                                       expected=expected)
    return PublishedEmbedding(repo_id, sha, vector, metadata)


def download_embedding(repo_id: str, filename: str, sha: str, *, token: str | bool | None = None) -> bytes:
    """The bytes of an embedding file, refusing one larger than any valid embedding BEFORE downloading it.

    The size announced by the Hub (a HEAD request) is checked first, so a hostile multi-gigabyte file
    costs nothing; the bytes read from disk are bounded again in case the announced size was wrong.

    Raises:
        InvalidArtifactError: the file is larger than :data:`MAX_FILE_BYTES`;
        huggingface_hub's errors for a missing file or repo.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    announced = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=sha), token=token,
                                     retry_on_errors=True).size  # huggingface_hub's backoff on 429/5xx/network
    if announced is not None and announced > MAX_FILE_BYTES:
        raise InvalidArtifactError(f"file of {announced} bytes is larger than any valid embedding "
                                   f"({MAX_FILE_BYTES}); not downloaded")
    with open(hf_hub_download(repo_id, filename, revision=sha, token=token), "rb") as f:
        return f.read(MAX_FILE_BYTES + 1)  # parse_embedding rejects a longer read


def render_card_section(metadata: dict[str, str]) -> str:
    """The model-card section describing an embedding, from ``hub_cards/embedding_section.md``."""
    template = next((d / "embedding_section.md" for d in _TEMPLATES if (d / "embedding_section.md").exists()), None)
    if template is None:
        raise FileNotFoundError("hub_cards/embedding_section.md is missing from this installation")
    values = {
        **metadata,
        "filename": embedding_path(metadata["baseline"]),
        "dim": metadata.get("dim", "?"),
        "baseline_url": f"https://huggingface.co/{metadata['baseline'].removeprefix('hf-hub:')}",
        "reference": f"{metadata['reference']} ({metadata['reference_split']})",
        "fidelity_to": f"{float(metadata['fidelity_to']):.4f}",
        "fidelity_from": f"{float(metadata['fidelity_from']):.4f}",
    }
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values.get(m.group(1), m.group(0))), template.read_text())
    return f"{_SECTION_START}\n{text.strip()}\n{_SECTION_END}"


def update_card(readme: str | None, section: str) -> str:
    """The README with the ``hf-spider`` tag in its YAML and ``section`` in place of any previous one.

    Everything else the owner wrote (metadata and text) is kept.
    """
    from huggingface_hub import ModelCard

    card = ModelCard(readme or f"---\ntags:\n- {HF_SPIDER_TAG}\n---\n", ignore_metadata_errors=True)
    tags = list(card.data.tags or [])
    if HF_SPIDER_TAG not in tags:
        card.data.tags = [*tags, HF_SPIDER_TAG]
    text = card.text
    pattern = re.compile(re.escape(_SECTION_START) + r".*?" + re.escape(_SECTION_END), re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else f"{text.rstrip()}\n\n{section}\n"
    card.text = text.lstrip("\n")
    return str(card)


def publish_embedding(
    repo_id: str,
    vector: np.ndarray,
    metadata: dict[str, Any],
    *,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | bool | None = None,
):
    """Publish an embedding and its card section in ONE commit on top of the revision it read.

    The commit is made with ``parent_commit`` set to the sha whose README was read, so a concurrent
    push makes it fail rather than overwrite the owner's card. Every call is retried on network faults
    (:func:`~hf_spider.hub.retry.with_retries`); before a commit is sent again, the Hub is searched for the
    one whose answer was lost, so the embedding lands once and whole (file, tag and card section) or not at
    all. Returns the ``CommitInfo``.

    Raises:
        HubUnavailableError: the Hub kept failing and nothing was published ("checking whether publishing ...
            went through failed": the Hub failed even the search for a lost commit, so the outcome is unknown).
    """
    from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi

    from .retry import with_retries

    api = HfApi(token=token)
    info = with_retries(lambda: api.model_info(repo_id, revision=revision, token=token), what=f"reading {repo_id}")
    meta = {k: str(v) for k, v in metadata.items()}
    payload = serialize_embedding(vector, meta)
    readme = with_retries(lambda: _read_file(repo_id, "README.md", info.sha, token),
                          what=f"downloading the card of {repo_id}")
    card = update_card(None if readme is None else readme.decode(),
                       render_card_section({**meta, "dim": str(len(vector))}))
    files = {embedding_path(meta["baseline"]): payload, "README.md": card.encode()}
    message = f"Add hf_spider embedding over {meta['baseline']}"
    description = (f"fidelity L_to={float(meta['fidelity_to']):.4f}, L_from={float(meta['fidelity_from']):.4f}; "
                   f"hf_spider {__version__}")
    prs_before = with_retries(lambda: _pull_requests(api, repo_id, token),
                              what=f"listing the pull requests of {repo_id}") if create_pr else {}

    def commit():
        return api.create_commit(
            repo_id, operations=[CommitOperationAdd(path, data) for path, data in files.items()], revision=revision,
            commit_message=message, commit_description=description, create_pr=create_pr,
            parent_commit=None if create_pr else info.sha, token=token,
        )

    def landed():
        """The commit of an attempt whose answer was lost: a new head (or pull request) holding exactly ``files``."""
        if create_pr:
            prs = _pull_requests(api, repo_id, token)
            candidates = [(ref, sha) for ref, sha in prs.items() if ref not in prs_before]
        else:
            head = api.model_info(repo_id, revision=revision, token=token).sha
            candidates = [] if head == info.sha else [(None, head)]
        for ref, sha in candidates:
            if all(_read_file(repo_id, path, sha, token) == data for path, data in files.items()):
                pr_url = f"{api.endpoint}/{repo_id}/discussions/{ref.rsplit('/', 1)[-1]}" if ref else None
                return CommitInfo(commit_url=f"{api.endpoint}/{repo_id}/commit/{sha}", commit_message=message,
                                  commit_description=description, oid=sha, pr_url=pr_url)
        return None

    return with_retries(commit, what=f"publishing to {repo_id}", landed=landed)


def _read_file(repo_id: str, filename: str, sha: str, token: str | bool | None) -> bytes | None:
    """A (small) file of a model repo at ``sha``, or ``None`` if the repo has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=sha, token=token)).read_bytes()
    except RemoteEntryNotFoundError:  # not LocalEntryNotFoundError: a network failure is not an absent file
        return None


def _pull_requests(api: Any, repo_id: str, token: str | bool | None) -> dict[str, str]:
    """``refs/pr/N`` -> head sha of every pull request of a model repo."""
    return {r.ref: r.target_commit for r in api.list_repo_refs(repo_id, include_pull_requests=True,
                                                                 token=token).pull_requests or []}
