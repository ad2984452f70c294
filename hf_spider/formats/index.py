"""The index of published embeddings (``hf_spider index build``): sharded parquet, one row per embedding.

A Hub dataset repo holds ``data/train-<i>-of-<k>.parquet`` (the ``datasets`` naming, so ``load_dataset`` reads it
too) and a card. Each row is one repo's embedding over the index's baseline, as a scan validated it:

=====================  ==================  ==========================================================
column                 type                content
=====================  ==================  ==========================================================
repo_id                string              the model repo
commit                 string              the repo commit the embedding file was read at
last_modified          string              the repo's ``lastModified`` then (ISO 8601)
file_sha256            string              sha256 of the embedding file's bytes
baseline               string              metadata ``baseline`` (also in ``metadata``)
baseline_weights       string              metadata ``baseline_weights``: the baseline's fingerprint
reference_fingerprint  string              metadata ``reference_fingerprint``
metadata               string              the file's metadata, a JSON object of strings
parameters             int64 (nullable)    the Hub listing's safetensors parameter count
downloads              int64               the Hub listing's download count
vector                 list<float32>       the embedding [N]
=====================  ==================  ==========================================================

A shard is untrusted like any download: :func:`read_index_shard` checks its size and schema before reading the
rows; the caller validates each row as it would a downloaded file (:func:`validate_embedding`). hf_spider reads the
metadata; the ``baseline``, ``baseline_weights`` and ``reference_fingerprint`` columns repeat it for queries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArtifactError
from .embedding import MAX_DIMENSION

__all__ = ["INDEX_COLUMNS", "MAX_SHARD_BYTES", "IndexRow", "read_index_shard", "shard_name", "write_index_shards"]

ROWS_PER_SHARD = 50_000  # about 100 MB of float32 at N = 512
MAX_SHARD_BYTES = 1 << 30  # a shard of 50,000 rows of 1,024 values is about 210 MB
MAX_METADATA_CHARS = 16 * 1024  # a valid embedding's metadata is under 2 KiB
_STRINGS = ("repo_id", "commit", "last_modified", "file_sha256", "baseline", "baseline_weights",
            "reference_fingerprint", "metadata")
INDEX_COLUMNS = (*_STRINGS, "parameters", "downloads", "vector")


@dataclass(frozen=True)
class IndexRow:
    """One row of the index, as written; read back, its fields are unvalidated until the caller validates them."""

    repo_id: str
    commit: str
    last_modified: str
    file_sha256: str
    metadata: dict[str, str]
    vector: np.ndarray  # [N] float32
    parameters: int | None = None
    downloads: int = 0


def _schema():
    import pyarrow as pa

    return pa.schema([*((name, pa.string()) for name in _STRINGS), ("parameters", pa.int64()),
                      ("downloads", pa.int64()), ("vector", pa.list_(pa.float32()))])


def shard_name(i: int, k: int) -> str:
    return f"data/train-{i:05d}-of-{k:05d}.parquet"


def write_index_shards(rows: Sequence[IndexRow], folder: str | os.PathLike[str], *,
                       rows_per_shard: int = ROWS_PER_SHARD) -> list[str]:
    """Write ``rows`` (sorted by repo id here) as parquet shards under ``folder``; returns their relative paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(rows, key=lambda r: r.repo_id)
    k = max(1, -(-len(rows) // rows_per_shard))
    names = []
    for i in range(k):
        chunk = rows[i * rows_per_shard : (i + 1) * rows_per_shard]
        columns: dict[str, Any] = {
            "repo_id": [r.repo_id for r in chunk], "commit": [r.commit for r in chunk],
            "last_modified": [r.last_modified for r in chunk], "file_sha256": [r.file_sha256 for r in chunk],
            **{key: [r.metadata.get(key, "") for r in chunk]
               for key in ("baseline", "baseline_weights", "reference_fingerprint")},
            "metadata": [json.dumps(r.metadata, sort_keys=True) for r in chunk],
            "parameters": [r.parameters for r in chunk], "downloads": [r.downloads for r in chunk],
            "vector": _list_array([r.vector for r in chunk]),
        }
        (Path(folder) / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns, schema=_schema()), Path(folder) / shard_name(i, k))
        names.append(shard_name(i, k))
    return names


def _list_array(vectors: list[np.ndarray]):
    """A pyarrow list<float32> array from the vectors, built from one flat buffer (no per-value Python objects)."""
    import pyarrow as pa

    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum([v.size for v in vectors], out=offsets[1:])
    flat = np.concatenate(vectors).astype(np.float32) if vectors else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def read_index_shard(path: str | os.PathLike[str]) -> Iterator[IndexRow | tuple[str, str]]:
    """The rows of one downloaded shard; a row that cannot be read yields ``(repo_id, reason)`` instead.

    Raises:
        InvalidArtifactError: the file is larger than :data:`MAX_SHARD_BYTES`, not parquet, or not this schema.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    size = os.path.getsize(path)
    if size > MAX_SHARD_BYTES:
        raise InvalidArtifactError(f"index shard {Path(path).name} has {size} bytes, more than {MAX_SHARD_BYTES}")
    try:
        schema = pq.read_schema(path)
        if not schema.equals(_schema(), check_metadata=False):
            raise InvalidArtifactError(f"index shard {Path(path).name} is not an hf_spider index (columns "
                                       f"{', '.join(schema.names)[:200]})")
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise InvalidArtifactError(f"index shard {Path(path).name} is not readable parquet: {str(e)[:200]}") from None
    vectors = table.column("vector").combine_chunks()
    offsets, flat = vectors.offsets.to_numpy(), vectors.values.to_numpy(zero_copy_only=False)  # [R + 1], [Σ N]
    nulls = vectors.is_null().to_numpy(zero_copy_only=False)
    columns = {name: table.column(name).to_pylist() for name in INDEX_COLUMNS if name != "vector"}
    for i, repo in enumerate(columns["repo_id"]):
        n = int(offsets[i + 1] - offsets[i])
        text = columns["metadata"][i] or ""
        if nulls[i] or not 0 < n <= MAX_DIMENSION or len(text) > MAX_METADATA_CHARS or any(
                columns[c][i] is None for c in _STRINGS):
            yield str(repo), f"index row is malformed ({n} values, {len(text)} characters of metadata)"
            continue
        try:
            metadata = json.loads(text)
        except ValueError:
            yield repo, "index row's metadata is not JSON"
            continue
        yield IndexRow(repo, columns["commit"][i], columns["last_modified"][i], columns["file_sha256"][i], metadata,
                       flat[offsets[i] : offsets[i + 1]], columns["parameters"][i], columns["downloads"][i] or 0)
