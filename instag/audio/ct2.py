"""Read the variables of a CTranslate2 `model.bin` (binary format version 6) without the CTranslate2 library.

The file is a header (format version, spec name, spec revision, variable count), then per variable: its name,
rank, dims, a dtype id, a byte count and the raw little-endian data; then aliases. Strings are a uint16 length
(counting a trailing NUL) followed by the bytes. Only the data of the variables asked for is copied.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from instag.errors import InputError

CT2_BINARY_VERSION = 6
# CTranslate2's DataType enum order.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class _Reader:
    """Bounds-checked little-endian reads over one bytes-like buffer."""

    def __init__(self, buf: memoryview, name: str) -> None:
        self.buf, self.pos, self.name = buf, 0, name

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise InputError(f"{self.name}: truncated CTranslate2 model (needs {n} bytes at offset {self.pos})")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = bytes(self.take(self.unpack("H")))
        if not raw or raw[-1] != 0:
            raise InputError(f"{self.name}: malformed string in the CTranslate2 model at offset {self.pos}")
        return raw[:-1].decode("utf-8", errors="strict")


def read_ct2_variables(parts: Sequence[Path], wanted: Callable[[str], bool]) -> tuple[str, dict[str, np.ndarray]]:
    """The spec name and the variables whose names `wanted` accepts, from a model.bin split over `parts` (read in
    order and concatenated). Arrays are copies in their stored dtype. InputError for anything malformed."""
    name = " + ".join(str(p) for p in parts)
    try:
        data = b"".join(Path(p).read_bytes() for p in parts)
    except OSError as exc:
        raise InputError(f"{name}: cannot read the model ({exc})") from exc
    r = _Reader(memoryview(data), name)
    version = r.unpack("I")
    if version != CT2_BINARY_VERSION:
        raise InputError(f"{name}: CTranslate2 binary version {version}, only {CT2_BINARY_VERSION} is understood")
    spec = r.string()
    r.unpack("I")  # spec revision
    out: dict[str, np.ndarray] = {}
    for _ in range(r.unpack("I")):
        var = r.string()
        shape = tuple(r.unpack("I") for _ in range(r.unpack("B")))
        dtype_id = r.unpack("B")
        n_bytes = r.unpack("I")
        raw = r.take(n_bytes)
        if not wanted(var):
            continue
        if dtype_id not in _DTYPES:
            raise InputError(f"{name}: variable {var} has unknown dtype id {dtype_id}")
        dtype = np.dtype(_DTYPES[dtype_id])
        if n_bytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise InputError(f"{name}: variable {var} holds {n_bytes} bytes, its shape {list(shape)} needs more or less")
        out[var] = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape).copy()
    return spec, out
