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


def assert_one_line(exc: Exception) -> None:
    """The promise for bad input: a non-empty message on one line."""
    text = str(exc).strip()
    if not text or "\n" in text:
        raise AssertionError(f"not one line: {text!r}")


def check_manifest(path: Path, out: Path) -> None:
    """Read a possibly hostile manifest: one `InputError` line, or distinct jobs whose outputs are .mp4 files
    inside `out`; AssertionError for anything else (another exception escapes as itself)."""
    from instag.avatar.dubbing import read_manifest
    from instag.errors import InputError

    try:
        jobs = read_manifest(path, out, paste_back=False)
    except InputError as exc:
        assert_one_line(exc)
        return
    outputs = [job.output for job in jobs]
    if not jobs or len(set(outputs)) != len(outputs):
        raise AssertionError(f"jobs {outputs}: none, or two to one output")
    for job in jobs:
        if not job.output.resolve().is_relative_to(out.resolve()) or job.output.suffix.lower() != ".mp4":
            raise AssertionError(f"output {job.output} escapes {out} or is no .mp4")
        if not isinstance(job.paste_back, bool) or not isinstance(job.voice_rest, bool):
            raise AssertionError(f"paste_back {job.paste_back!r} or voice_rest {job.voice_rest!r} is not a bool")
