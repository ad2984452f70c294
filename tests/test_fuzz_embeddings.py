"""Hostile embedding files: a seeded corpus of malformed files through ``parse_embedding`` and a real ``scan``.

Every malformed file must be rejected with :class:`InvalidArtifactError` and a reason (never another
exception), and in ``scan`` become a skipped repo while every valid repo of the same scan stays in the index.
The corpus is generated from a fixed seed, one malformation kind after another, so a failure names its kind
and is replayed exactly; a hypothesis test adds arbitrary bytes and arbitrary JSON headers on top.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from huggingface_hub import CommitOperationAdd, HfApi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_embed_publish import _valid_metadata

from hf_spider.errors import InvalidArtifactError
from hf_spider.formats.embedding import (
    MAX_FILE_BYTES,
    REQUIRED_METADATA,
    embedding_path,
    parse_embedding,
    serialize_embedding,
)
from hf_spider.hub.scan import scan

N = 16  # values per fuzzed embedding


def _file(header: dict | bytes, data: bytes = b"", *, header_len: int | None = None) -> bytes:
    """Raw safetensors bytes: 8-byte little-endian header length, header, data (no validation)."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data


def _header(size: int = N, *, dtype: str = "F32", shape=None, offsets=None, metadata=None) -> dict:
    spec = {"dtype": dtype, "shape": [size] if shape is None else shape,
            "data_offsets": [0, 4 * size] if offsets is None else offsets}
    return {"__metadata__": _valid_metadata() if metadata is None else metadata, "embedding": spec}


def _vector(rng: np.random.Generator, size: int = N) -> np.ndarray:
    return rng.random(size, dtype=np.float32)


def _valid(rng: np.random.Generator) -> bytes:
    return serialize_embedding(_vector(rng), _valid_metadata())


def _with_values(values: np.ndarray) -> bytes:
    return _file(_header(values.size), values.astype("<f4").tobytes())


def _bad_values(rng: np.random.Generator) -> bytes:
    v = _vector(rng)
    v[rng.integers(N, size=rng.integers(1, N + 1))] = rng.choice([np.nan, np.inf, -np.inf])
    return _with_values(v)


def _out_of_range(rng: np.random.Generator) -> bytes:
    v = _vector(rng)
    v[rng.integers(N)] = rng.choice([-1e-3, -1.0, 1.0 + 1e-3, 3.0, 1e30])
    return _with_values(v)


def _wrong_dtype(rng: np.random.Generator) -> bytes:
    dtype, np_dtype = [("F64", "<f8"), ("F16", "<f2"), ("BF16", "<u2"), ("I32", "<i4"), ("U8", "u1"),
                       ("BOOL", "?"), ("f32", "<f4")][rng.integers(7)]
    data = np.zeros(N, np_dtype).tobytes()
    return _file(_header(dtype=dtype, offsets=[0, len(data)]), data)


def _wrong_shape(rng: np.random.Generator) -> bytes:
    shape = [[], [0], [N // 2, 2], [N, 1], [1, N], [2**40], [-N], [float(N)], [str(N)], [True], [[N]], "16",
             "missing", [N, None]][rng.integers(14)]
    header = _header(shape=shape)
    if shape == "missing":
        del header["embedding"]["shape"]
    return _file(header, _vector(rng).tobytes())


def _size_mismatch(rng: np.random.Generator) -> bytes:
    delta = int(rng.choice([-N, -3, -1, 1, 2, 4, 100]))
    return _file(_header(N), _vector(rng, N).tobytes()[: max(0, 4 * N + delta)] + b"\0" * max(0, delta))


def _bad_offsets(rng: np.random.Generator) -> bytes:
    offsets = [[0, 4 * N - 4], [4, 4 * N + 4], [0, 2**62], [-4, 4 * N], [0.0, 4.0 * N], [4 * N, 0], [0],
               "missing", "0,64", [0, 4 * N, 0]][rng.integers(10)]
    header = _header(offsets=offsets)
    if offsets == "missing":
        del header["embedding"]["data_offsets"]
    return _file(header, _vector(rng).tobytes())


def _wrong_tensors(rng: np.random.Generator) -> bytes:
    header = _header()
    choice = rng.integers(4)
    if choice == 0:  # an extra tensor
        header["extra"] = {"dtype": "F32", "shape": [1], "data_offsets": [4 * N, 4 * N + 4]}
        return _file(header, _vector(rng, N + 1).tobytes())
    if choice == 1:  # the tensor under another name
        header["weights"] = header.pop("embedding")
    elif choice == 2:  # no tensor at all
        del header["embedding"]
    else:  # the tensor described by a non-object
        header["embedding"] = [N]
    return _file(header, _vector(rng).tobytes())


def _missing_metadata(rng: np.random.Generator) -> bytes:
    metadata = _valid_metadata()
    for key in rng.choice(REQUIRED_METADATA, size=rng.integers(1, 4), replace=False):
        del metadata[key]
    return _file(_header(metadata=metadata), _vector(rng).tobytes())


GARBLED = [("steps", "many"), ("steps", "0"), ("steps", "1.5"), ("steps", "1_000"), ("steps", " 10"),
           ("seed", "nan"), ("seed", "9" * 30), ("seed", ""), ("fidelity_to", "nan"), ("fidelity_to", "inf"),
           ("fidelity_to", "1.5"), ("fidelity_from", "-2"), ("fidelity_from", "high"), ("created_at", "yesterday"),
           ("created_at", "2026-13-01"), ("created_at", ""), ("format_version", "2"), ("format_version", ""),
           ("baseline", "../../etc/passwd"), ("baseline", ""), ("model", ""), ("reference", "ref\x1b[31m"),
           ("model", "org/m\nfake: line"), ("tau", "0"), ("tau", "-1"), ("max_per_class", "0"),
           ("max_per_class", "lots")]


def _garbled_metadata(rng: np.random.Generator) -> bytes:
    key, value = GARBLED[rng.integers(len(GARBLED))]
    return _file(_header(metadata={**_valid_metadata(), key: value}), _vector(rng).tobytes())


def _non_string_metadata(rng: np.random.Generator) -> bytes:
    metadata = [None, [], "text", 3, {**_valid_metadata(), "steps": 100}, {**_valid_metadata(), "seed": None},
                {**_valid_metadata(), "model": {"nested": "x"}}][rng.integers(7)]
    header = _header(metadata=metadata)
    if metadata is None:
        del header["__metadata__"]
    return _file(header, _vector(rng).tobytes())


def _garbage_header(rng: np.random.Generator) -> bytes:
    kind = rng.integers(6)
    if kind == 0:  # random bytes where the JSON should be
        raw = rng.bytes(int(rng.integers(1, 300)))
    elif kind == 1:  # JSON that is not an object
        raw = json.dumps([["embedding"], 1, "x", None][rng.integers(4)]).encode()
    elif kind == 2:  # deeply nested JSON (a recursion bomb for naive parsers)
        raw = b"{\"a\":" + b"[" * 50_000 + b"]" * 50_000 + b"}"
    elif kind == 3:  # repeated keys: readers could disagree on which one wins
        raw = (b'{"embedding": {"dtype": "F32", "shape": [16], "data_offsets": [0, 64]}, '
               b'"embedding": {"dtype": "F64", "shape": [8], "data_offsets": [0, 64]}}')
    elif kind == 4:  # invalid UTF-8 inside a JSON string
        raw = b'{"embedding": "\xff\xfe"}'
    else:  # valid JSON cut short
        full = json.dumps(_header()).encode()
        raw = full[: int(rng.integers(1, len(full)))]
    return _file(raw, _vector(rng).tobytes())


def _huge_header_length(rng: np.random.Generator) -> bytes:
    length = [2**16 + 1, 2**31, 2**63, 2**64 - 1][rng.integers(4)]
    return _file(json.dumps(_header()).encode(), _vector(rng).tobytes(), header_len=length)


def _header_length_past_end(rng: np.random.Generator) -> bytes:
    raw = json.dumps(_header()).encode()
    return _file(raw, b"", header_len=len(raw) + int(rng.integers(1, 1000)))


def _truncated(rng: np.random.Generator) -> bytes:
    good = _valid(rng)
    return good[: int(rng.integers(0, len(good)))]


def _padded(rng: np.random.Generator) -> bytes:
    return _valid(rng) + rng.bytes(int(rng.integers(1, 64)))


def _pickle(rng: np.random.Generator) -> bytes:
    payload = [_vector(rng), {"embedding": _vector(rng).tolist()}, ("os.system", "echo pwned")][rng.integers(3)]
    return pickle.dumps(payload, protocol=int(rng.integers(2, 6)))


def _zip(rng: np.random.Generator) -> bytes:  # what torch.save writes
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(_vector(rng)))
    return buffer.getvalue()


def _random_bytes(rng: np.random.Generator) -> bytes:
    return rng.bytes(int(rng.integers(1, 2048)))


def _empty(rng: np.random.Generator) -> bytes:
    return b""


def _oversized(rng: np.random.Generator) -> bytes:
    return _valid(rng) + b" " * (MAX_FILE_BYTES + int(rng.integers(1, 4096)))


def _wrong_expected(rng: np.random.Generator) -> bytes:  # valid file, but over another baseline
    return serialize_embedding(_vector(rng), {**_valid_metadata(), "baseline": "other/baseline"})


#: Malformation kinds; each must be rejected. ``_wrong_expected`` is valid on its own and rejected
#: because callers expect the baseline ``org/base`` (as ``scan`` passes its baseline).
KINDS: dict[str, Callable[[np.random.Generator], bytes]] = {
    "empty file": _empty, "random bytes": _random_bytes, "truncated": _truncated, "padded": _padded,
    "garbage header": _garbage_header, "huge declared header length": _huge_header_length,
    "header length past the end": _header_length_past_end, "wrong dtype": _wrong_dtype,
    "NaN/inf values": _bad_values, "values out of [0, 1]": _out_of_range, "wrong shape": _wrong_shape,
    "data size mismatch": _size_mismatch, "bad data offsets": _bad_offsets, "wrong tensors": _wrong_tensors,
    "missing metadata keys": _missing_metadata, "garbled metadata values": _garbled_metadata,
    "non-string metadata": _non_string_metadata, "pickle": _pickle, "zip (torch.save)": _zip,
    "oversized file": _oversized, "another baseline": _wrong_expected,
}
EXPECTED = {"baseline": "org/base"}


def corpus(count: int, *, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` malformed files, cycling through :data:`KINDS`, from one seeded generator."""
    rng = np.random.default_rng(seed)
    names = list(KINDS)
    return [(names[i % len(names)], KINDS[names[i % len(names)]](rng)) for i in range(count)]


def _rejection(data: bytes) -> str | None:
    """The reason ``parse_embedding`` rejects ``data``; None if it accepts; any other exception propagates."""
    try:
        parse_embedding(data, expected=EXPECTED)
    except InvalidArtifactError as e:
        return str(e)
    return None


def test_parse_embedding_rejects_every_malformed_file_with_a_reason():
    reasons: dict[str, list[str]] = {}
    for kind, data in corpus(2100):
        reason = _rejection(data)
        assert reason, f"{kind}: accepted or rejected without a reason ({data[:60]!r})"
        reasons.setdefault(kind, []).append(reason)
    assert set(reasons) == set(KINDS) and sum(map(len, reasons.values())) == 2100
    # reasons name the problem
    foreign = reasons["pickle"] + reasons["zip (torch.save)"]
    assert all(r.endswith("never loaded: publish safetensors)") for r in foreign)
    assert any("not valid JSON" in r for r in reasons["garbage header"])
    assert any("exceeds the 65536-byte limit" in r for r in reasons["huge declared header length"])
    assert any("larger than any valid embedding" in r for r in reasons["oversized file"])
    assert any("NaN or infinite" in r for r in reasons["NaN/inf values"])
    assert any("expected 'org/base'" in r for r in reasons["another baseline"])


def test_random_byte_flips_are_rejected_or_yield_a_valid_embedding():
    rng = np.random.default_rng(1)
    accepted = 0
    for _ in range(500):
        data = bytearray(_valid(rng))
        for i in rng.integers(len(data), size=rng.integers(1, 4)):
            data[i] = int(rng.integers(256))
        reason = _rejection(bytes(data))
        if reason is None:  # a flip inside a value or a metadata string can leave a valid file
            vector, metadata = parse_embedding(bytes(data))
            assert vector.shape == (N,) and np.isfinite(vector).all() and 0 <= vector.min() <= vector.max() <= 1
            assert set(REQUIRED_METADATA) <= set(metadata)
            accepted += 1
    assert accepted < 500  # most flips break the file


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_parser(data):
    try:
        parse_embedding(data)
    except InvalidArtifactError as e:
        assert str(e)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                  max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(spec=st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "x"]), _json, max_size=4),
       metadata=st.dictionaries(st.sampled_from([*REQUIRED_METADATA, "tau", "max_per_class"]), _json, max_size=20),
       data=st.binary(max_size=256))
def test_arbitrary_json_headers_never_crash_the_parser(spec, metadata, data):
    try:
        parse_embedding(_file({"__metadata__": metadata, "embedding": spec}, data))
    except InvalidArtifactError as e:
        assert str(e)


# ------------------------------------------------------------------------------------ through a real scan

ORG, BASELINE, VALID = "fuzz-scan", "org/base", 24


def _publish(api: HfApi, repo: str, content: bytes) -> None:
    api.create_repo(repo, exist_ok=True)
    api.create_commit(repo, operations=[
        CommitOperationAdd(embedding_path(BASELINE), content),
        CommitOperationAdd("README.md", b"---\ntags:\n- hf-spider\n---\n")], commit_message="embedding")


def _valid_for(repo: str, seed: int, size: int = N) -> bytes:
    vector = np.random.default_rng(seed).random(size, dtype=np.float32)
    return serialize_embedding(vector, {**_valid_metadata(), "model": repo})


def test_scan_skips_hundreds_of_malformed_repos_and_keeps_every_valid_one(api: HfApi, tmp_path):
    valid = {f"{ORG}/valid-{i:02d}": _valid_for(f"{ORG}/valid-{i:02d}", i) for i in range(VALID)}
    valid[f"{ORG}/valid-wide"] = _valid_for(f"{ORG}/valid-wide", 99, size=4 * N)  # another size: its own matrix
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: _publish(api, *item), valid.items()))
    first = scan(BASELINE, author=ORG, index_dir=tmp_path, progress=False)
    assert sorted(first.vectors) == sorted(valid) and not first.skipped

    malformed = {f"{ORG}/bad-{i:03d}": (kind, data) for i, (kind, data) in enumerate(corpus(252, seed=2))}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: _publish(api, item[0], item[1][1]), malformed.items()))
    second = scan(BASELINE, author=ORG, index_dir=tmp_path, progress=False)

    assert second.downloaded == len(malformed)  # the valid repos are unchanged: not downloaded again
    assert sorted(second.vectors) == sorted(valid)  # no valid entry lost
    for repo, vector in first.vectors.items():
        assert np.array_equal(second.vectors[repo], vector)
    assert set(second.skipped) == set(malformed)
    for repo, reason in second.skipped.items():
        assert reason.startswith("invalid embedding file: "), f"{malformed[repo][0]}: {reason}"
    oversized = [r for r, (kind, _) in malformed.items() if kind == "oversized file"]
    assert oversized and all("not downloaded" in second.skipped[r] for r in oversized)

    third = scan(BASELINE, author=ORG, index_dir=tmp_path, progress=False)  # from the index alone
    assert third.downloaded == 0 and sorted(third.vectors) == sorted(valid) and third.skipped == second.skipped
