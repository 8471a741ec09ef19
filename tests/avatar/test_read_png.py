"""PNG layers of an avatar are checked before OpenCV decodes them (found by tests/test_fuzz.py)."""

from __future__ import annotations

import base64

import cv2
import numpy as np
from hostile import peak_rss_growth

from instag.avatar.bundle import read_png

# A 64² PNG whose IDAT was mangled into a chunk claiming 1.7 GB: OpenCV allocated it (1.6 GB peak RSS).
CHUNK_BOMB = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlz5yiZ07RM6fomVP0zCl65pyiZ07RM6fomVP0zCl65hQ9c4qe"
                              "OUXPL8GWcw4GAAAAAElFTkSuQmCC")


def test_a_chunk_length_past_the_end_is_refused_without_allocating_it(tmp_path):
    path = tmp_path / "background.png"
    path.write_bytes(CHUNK_BOMB)
    result, growth = peak_rss_growth(lambda: read_png(path, 64, cv2.IMREAD_COLOR))
    assert result is None and growth < 200 * 2**20


def test_valid_pngs_decode_and_other_sizes_or_files_do_not(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), image)
    assert np.array_equal(read_png(path, 32, cv2.IMREAD_COLOR), image)
    assert read_png(path, 64, cv2.IMREAD_COLOR) is None
    assert read_png(tmp_path, 32, cv2.IMREAD_COLOR) is None
    path.write_bytes(path.read_bytes()[:-12])  # no IEND
    assert read_png(path, 32, cv2.IMREAD_COLOR) is None
