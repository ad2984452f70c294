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

import json
import re
import struct
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
MAX_HEADER_BYTES = 64 * 1024  # a valid header is well under 4 KiB
MAX_DIMENSION = 1 << 16
REQUIRED_METADATA = (
    "format_version", "baseline", "baseline_revision", "reference", "reference_split", "reference_fingerprint",
    "model", "model_revision", "model_weights", "steps", "seed", "fidelity_to", "fidelity_from", "tool_version",
    "created_at",
)
#: The metadata that must match for two embeddings to be comparable (SPEC §3.3).
COMPATIBILITY_KEYS = ("baseline", "baseline_revision", "reference", "reference_split", "reference_fingerprint")
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

    Checks, before and after parsing: header length bound, exactly one tensor ``embedding``, dtype
    F32, one dimension of size 1..65536, byte size, finite values in [0, 1], every required metadata
    key, the format version, and ``expected`` metadata values (e.g. baseline and reference).

    Raises:
        InvalidArtifactError: naming the first problem found.
    """
    if len(data) < 8:
        raise InvalidArtifactError("not a safetensors file: shorter than its 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(data):
        raise InvalidArtifactError(f"safetensors header of {header_len} bytes is too large or truncated")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidArtifactError(f"safetensors header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise InvalidArtifactError("safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if set(header) != {"embedding"}:
        raise InvalidArtifactError(f"expected exactly one tensor 'embedding', found {sorted(header)[:5]}")
    spec = header["embedding"]
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or spec.get("dtype") != "F32":
        raise InvalidArtifactError(f"embedding dtype must be F32, not {spec.get('dtype') if isinstance(spec, dict) else spec!r}")
    if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and 0 < shape[0] <= MAX_DIMENSION):
        raise InvalidArtifactError(f"embedding must be one-dimensional with 1..{MAX_DIMENSION} values, not shape {shape}")
    if len(data) - 8 - header_len != 4 * shape[0]:
        raise InvalidArtifactError("tensor data size does not match the header (truncated or padded file)")
    try:
        from safetensors.numpy import load

        vector = load(data)["embedding"]
    except Exception as e:  # safetensors raises its own error types for malformed offsets
        raise InvalidArtifactError(f"safetensors cannot read the file: {e}") from None
    if not np.isfinite(vector).all():
        raise InvalidArtifactError("embedding has NaN or infinite values")
    if vector.min() < 0 or vector.max() > 1:
        raise InvalidArtifactError(f"embedding values must lie in [0, 1] (found {vector.min():.3g}..{vector.max():.3g})")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidArtifactError("safetensors metadata must map strings to strings")
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise InvalidArtifactError(f"embedding metadata lacks {', '.join(missing)}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise InvalidArtifactError(f"embedding format version {metadata['format_version']!r} is not {FORMAT_VERSION!r}")
    for key, value in (expected or {}).items():
        if metadata.get(key) != value:
            raise InvalidArtifactError(f"embedding {key} is {metadata.get(key)!r}, expected {value!r}")
    return vector, metadata


def fetch_embedding(
    repo_id: str, baseline: str, *, revision: str | None = None, expected: dict[str, str] | None = None,
    token: str | bool | None = None,
) -> PublishedEmbedding:
    """Download and validate the embedding over ``baseline`` published in ``repo_id``.

    Raises:
        huggingface_hub's ``EntryNotFoundError`` (no embedding) / ``RepositoryNotFoundError``;
        InvalidArtifactError: the file fails :func:`parse_embedding`.
    """
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(token=token)
    sha = revision if revision and re.fullmatch(r"[0-9a-f]{40}", revision) else api.model_info(
        repo_id, revision=revision).sha
    path = hf_hub_download(repo_id, embedding_path(baseline), revision=sha, token=token)
    vector, metadata = parse_embedding(Path(path).read_bytes(), expected=expected)
    return PublishedEmbedding(repo_id, sha, vector, metadata)


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
    push makes it fail rather than overwrite the owner's card. Returns the ``CommitInfo``.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    api = HfApi(token=token)
    info = api.model_info(repo_id, revision=revision, token=token)
    meta = {k: str(v) for k, v in metadata.items()}
    payload = serialize_embedding(vector, meta)
    try:
        readme = Path(hf_hub_download(repo_id, "README.md", revision=info.sha, token=token)).read_text()
    except EntryNotFoundError:
        readme = None
    card = update_card(readme, render_card_section({**meta, "dim": str(len(vector))}))
    operations = [
        CommitOperationAdd(embedding_path(meta["baseline"]), payload),
        CommitOperationAdd("README.md", card.encode()),
    ]
    return api.create_commit(
        repo_id, operations=operations, revision=revision,
        commit_message=f"Add hf_spider embedding over {meta['baseline']}",
        commit_description=f"fidelity L_to={float(meta['fidelity_to']):.4f}, "
                           f"L_from={float(meta['fidelity_from']):.4f}; hf_spider {__version__}",
        create_pr=create_pr, parent_commit=None if create_pr else info.sha, token=token,
    )
