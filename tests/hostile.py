"""Generators of hostile-but-ordinary inputs shared by the adversarial tests, and a memory probe.

A plain module with a unique name (not `conftest`), as instag_testing.py, so any test module can import it.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path


def silent_flac(path: Path, seconds: float, rate: int = 8000, header: bool = True) -> Path:
    """FLAC of silence in the largest blocks (an hour at 8 kHz is ~14 kB): a decompression bomb. header=False
    writes it through a pipe, so the stream header states no length and only decoding can find it."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"anullsrc=r={rate}:cl=mono", "-t", str(seconds),
           "-c:a", "flac", "-frame_size", "65535", "-f", "flac"]
    if header:
        subprocess.run([*cmd, str(path)], check=True)
    else:
        with path.open("wb") as f:
            subprocess.run([*cmd, "pipe:1"], check=True, stdout=f)
    return path


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_growth(fn: Callable[[], object]) -> tuple[object, int]:
    """(what `fn()` returned, or the exception it raised; the peak growth in bytes of this process's resident
    memory while it ran, sampled every 2 ms from a thread, so servers run in-process count too)."""
    base, peak, done = _rss(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss() - base)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001  (handed to the caller, who checks it)
        out = exc
    finally:
        done.set()
        watcher.join()
    return out, max(peak[0], _rss() - base)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of: flip bytes, truncate, insert junk (NUL, markup, quotes, non-UTF-8), duplicate a slice."""
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0 and b:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:
        del b[rng.randrange(len(b) + 1):]
    elif kind == 2:
        junk = rng.choice([b"\x00", b"[/y]", b'"', b"\xff\xfe", b"..", b"\n,,,\n", b"/", b"1e400"])
        at = rng.randrange(len(b) + 1)
        b[at:at] = junk
    else:
        i = rng.randrange(len(b) + 1)
        b[i:i] = b[i:i + rng.randint(1, 64)] * rng.randint(1, 50)
    return bytes(b)
