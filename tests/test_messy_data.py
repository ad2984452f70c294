"""Messy datasets (issue 9): missing labels, image modes stored in files, decompression bombs.

Complements tests/test_tasks.py (corrupt and truncated images, one class, empty split, string labels,
in-memory image modes): every case here is either handled (the image arrives as RGB) or a
:class:`DatasetError` that names the row and the problem.
"""

from __future__ import annotations

import io
import struct
import zlib

import datasets
import numpy as np
import PIL.Image
import pytest
from test_tasks import image_dataset, pixels, png

from hf_spider.errors import DatasetError
from hf_spider.tasks import load_task

GOOD = [png((i * 30, 0, 0)) for i in range(6)]


def encoded(image: PIL.Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height`` RGB pixels (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("feature, labels", [
    (datasets.Value("int64"), [0, 1, None, 1, 0, None]),
    (datasets.ClassLabel(names=["a", "b"]), [0, 1, None, 1, 0, None]),
    (datasets.Value("string"), ["a", "b", None, "b", "a", None]),
    (datasets.Value("float32"), [0.5, 1.0, None, 1.5, 0.2, None]),
])
def test_missing_labels_are_named_not_taken_for_nan_targets(feature, labels):
    with pytest.raises(DatasetError, match=r"column 'label' has 2 missing labels \(None\), the first at row 2"):
        load_task(image_dataset(GOOD, labels, feature))


def test_image_modes_stored_in_files_arrive_as_rgb():
    sixteen = encoded(PIL.Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)))  # mode I;16
    transparent_gray = encoded(PIL.Image.new("LA", (4, 4), (0, 0)))
    cmyk = encoded(PIL.Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG")
    bilevel = encoded(PIL.Image.new("1", (4, 4), 1))
    palette = PIL.Image.new("P", (4, 4), 0)
    palette.info["transparency"] = 0
    task = load_task(image_dataset([sixteen, transparent_gray, cmyk, bilevel, encoded(palette), GOOD[0]],
                                   [0, 1, 0, 1, 0, 1]))
    assert all(task.image(i).mode == "RGB" for i in range(len(task)))
    assert pixels(task, 0)[0, 0].tolist() == [156] * 3  # 40000 / 257: rescaled from 16 bits, not clipped
    assert pixels(task, 1)[0, 0].tolist() == [255] * 3  # transparent: composited on white
    r, g, b = pixels(task, 2)[0, 0].tolist()
    assert r > 200 and g < 60 and b < 60  # CMYK (0, 255, 255, 0) is red
    assert pixels(task, 3)[0, 0].tolist() == [255] * 3


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused_before_decoding(monkeypatch):
    bomb = png_header(100_000, 100_000)  # 10^10 pixels declared in 100 bytes
    with pytest.raises(DatasetError, match=r"image at row 3 has more pixels than PIL.Image.MAX_IMAGE_PIXELS"):
        load_task(image_dataset([*GOOD[:3], bomb, *GOOD[3:5]], [0, 1, 0, 1, 0, 1]))
    lazy = load_task(image_dataset([*GOOD[:3], bomb, *GOOD[3:5]], [0, 1, 0, 1, 0, 1]), check_images=False)
    with pytest.raises(DatasetError, match=r"image 3 cannot be decoded .*DecompressionBomb"):
        lazy.image(3)

    # between PIL's limit and twice it, PIL only warns: the task refuses it all the same
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    big = png((1, 2, 3), size=40)  # 1,600 pixels
    with pytest.raises(DatasetError, match=r"row 0 has more pixels than .* = 1,000 \(40x40 pixels\)"):
        load_task(image_dataset([big, *GOOD[1:]], [0, 1, 0, 1, 0, 1]))
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", None)  # the user lifted the limit: accepted
    assert pixels(load_task(image_dataset([big, *GOOD[1:]], [0, 1, 0, 1, 0, 1])), 0)[0, 0].tolist() == [1, 2, 3]
