"""A float32 matrix in a safetensors file, read in row blocks through a memory map.

The pages of each block are handed back to the kernel once the block is read (``madvise(MADV_DONTNEED)``), so a
sweep over a matrix larger than RAM keeps the process's resident memory at a few blocks; the file stays in the page
cache for the next sweep.

    with MappedMatrix("embeddings.safetensors", "dim512") as matrix:   # [R, 512]
        for start, block in matrix.blocks(4096):                         # block [<=4096, 512], a view
            ...
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
from collections.abc import Iterator

import numpy as np

from ..errors import InvalidArtifactError

__all__ = ["MappedMatrix"]

_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


class MappedMatrix:
    """Tensor ``name`` (F32, two dimensions) of the safetensors file ``path``, memory-mapped."""

    def __init__(self, path: str | os.PathLike[str], name: str) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            (length,) = struct.unpack("<Q", f.read(8).ljust(8, b"\0"))
            if not 0 < length <= min(_MAX_HEADER, size - 8):
                raise InvalidArtifactError(f"{path} is not a safetensors file")
            spec = json.loads(f.read(length)).get(name)
            if not isinstance(spec, dict) or spec.get("dtype") != "F32" or len(spec.get("shape", ())) != 2:
                raise InvalidArtifactError(f"{path} has no float32 matrix {name!r}")
            self.shape: tuple[int, int] = tuple(spec["shape"])
            begin, end = spec["data_offsets"]
            self._offset = 8 + length + begin
            if end - begin != 4 * self.shape[0] * self.shape[1] or self._offset + end - begin > size:
                raise InvalidArtifactError(f"{path}: matrix {name!r} does not match its offsets")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._array = np.frombuffer(self._map, np.float32, self.shape[0] * self.shape[1], self._offset).reshape(
            self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, block [<= rows, N])`` in order; each block's pages are released when the next is asked for."""
        row_bytes = 4 * self.shape[1]
        for start in range(0, self.shape[0], rows):
            yield start, self._array[start : start + rows]
            lo = (self._offset + start * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
            hi = self._offset + min(start + rows, self.shape[0]) * row_bytes
            self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        self._array = None
        with contextlib.suppress(BufferError):  # a block is still referenced: the map closes when it is collected
            self._map.close()

    def __enter__(self) -> MappedMatrix:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
