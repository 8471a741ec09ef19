"""Reading a project image (PNG or baseline/progressive JPEG) of a known square size, with its structure checked
before OpenCV decodes it: a tampered header can make a decoder allocate gigabytes (an 88-byte PNG claiming a
1.7 GB chunk, found by tests/test_fuzz.py; a JPEG claiming 60000² pixels)."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, and their arithmetic-coded kinds).
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _png_ok(data: bytes, size: int) -> bool:
    """A PNG whose chunks all lie inside the file, IHDR first and `size`², ending in IEND."""
    if data[:8] != PNG_SIGNATURE:
        return False
    pos, first = 8, True
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            return False
        if first and (kind != b"IHDR" or length != 13 or struct.unpack(">II", data[pos + 8:pos + 16]) != (size, size)):
            return False
        first = False
        pos += 12 + length
        if kind == b"IEND":
            return True
    return False


def _jpeg_ok(data: bytes, size: int) -> bool:
    """A JPEG whose segments up to its start-of-frame lie inside the file and whose frame is `size`²."""
    if data[:2] != b"\xff\xd8":
        return False
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if length < 2 or pos + 2 + length > len(data):
            return False
        if marker in JPEG_SOF:
            if length < 8:
                return False
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return (height, width) == (size, size)
        pos += 2 + length
    return False


def read_image(path: Path, size: int, flags: int) -> np.ndarray | None:
    """The `size`² PNG or JPEG at `path` decoded with OpenCV `flags`; None when it is missing, not a regular file,
    or not a well-formed image of that size."""
    if not path.is_file():  # a FIFO or a directory would hang or fail the read
        return None
    data = path.read_bytes()
    if not (_png_ok(data, size) or _jpeg_ok(data, size)):
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
