"""Images (PNG and JPEG) of avatars and datasets are checked before OpenCV decodes them (found by tests/test_fuzz.py)."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from hostile import peak_rss_growth

from instag.media.image import read_image

# A 64² PNG whose IDAT was mangled into a chunk claiming 1.7 GB: OpenCV allocated it (1.6 GB peak RSS).
CHUNK_BOMB = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlz5yiZ07RM6fomVP0zCl65pyiZ07RM6fomVP0zCl65hQ9c4qe"
                              "OUXPL8GWcw4GAAAAAElFTkSuQmCC")


def test_a_chunk_length_past_the_end_is_refused_without_allocating_it(tmp_path):
    path = tmp_path / "background.png"
    path.write_bytes(CHUNK_BOMB)
    result, growth = peak_rss_growth(lambda: read_image(path, 64, cv2.IMREAD_COLOR))
    assert result is None and growth < 200 * 2**20


def test_valid_pngs_decode_and_other_sizes_or_files_do_not(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), image)
    assert np.array_equal(read_image(path, 32, cv2.IMREAD_COLOR), image)
    assert read_image(path, 64, cv2.IMREAD_COLOR) is None
    assert read_image(tmp_path, 32, cv2.IMREAD_COLOR) is None
    path.write_bytes(path.read_bytes()[:-12])  # no IEND
    assert read_image(path, 32, cv2.IMREAD_COLOR) is None


def test_a_jpeg_is_checked_for_its_size_before_decoding(tmp_path):
    image = np.full((32, 32, 3), 90, np.uint8)
    ok, jpg = cv2.imencode(".jpg", image)
    data = bytearray(jpg.tobytes())
    path = tmp_path / "f.jpg"
    path.write_bytes(bytes(data))
    assert read_image(path, 32, cv2.IMREAD_COLOR).shape == (32, 32, 3)
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5 : sof + 9] = (60000).to_bytes(2, "big") * 2  # claims 60000² pixels
    path.write_bytes(bytes(data))
    assert read_image(path, 32, cv2.IMREAD_COLOR) is None
    path.write_bytes(bytes(data[:sof]))  # cut before its frame header
    assert read_image(path, 32, cv2.IMREAD_COLOR) is None


def test_a_tampered_dataset_image_is_one_line(tmp_path):
    from instag.data.dataset import load_dataset
    from instag.errors import InputError
    from instag.train.synthetic import write_dataset

    ds = load_dataset(write_dataset(tmp_path / "ds"))
    label = ds.path / "labels" / "000000.png"
    data = bytearray(label.read_bytes())
    data[33:37] = (1_700_000_000).to_bytes(4, "big")  # the chunk after IHDR claims 1.7 GB
    label.write_bytes(bytes(data))
    with pytest.raises(InputError, match="000000.png: missing, undecodable or not a 32x32 image"):
        ds.label(0)
