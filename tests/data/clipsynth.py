"""Clips made by the tests themselves (PyAV): noise, silence, faces pasted from a real frame."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np


def write_clip(path: Path, frame_fn: Callable[[int], np.ndarray], n_frames: int, fps: int = 25,
               audio: bool = True, rotation: int = 0) -> Path:
    """Encode frames `frame_fn(i)` [H, W, 3] uint8 as H.264 (+ a 220 Hz AAC tone when `audio`)."""
    first = frame_fn(0)
    h, w = first.shape[:2]
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if rotation:
            vs.set_display_rotation(rotation)
        aus = None
        if audio:
            aus = c.add_stream("aac", rate=16000)
            aus.layout = "mono"
        for i in range(n_frames):
            img = first if i == 0 else frame_fn(i)
            for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if aus is not None:
            n = int(16000 * n_frames / fps)
            t = np.arange(n) / 16000
            tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            for start in range(0, n, 1024):
                f = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="flt", layout="mono")
                f.sample_rate = 16000
                f.pts = start
                for p in aus.encode(f):
                    c.mux(p)
            for p in aus.encode():
                c.mux(p)
    return path


def noise_frame(h: int = 120, w: int = 160, seed: int = 0, smooth: bool = False) -> Callable[[int], np.ndarray]:
    """Random frames; `smooth` blurs them into blotches (pixel noise can fool a face detector now and then)."""
    import cv2

    rng = np.random.default_rng(seed)

    def frame(i: int) -> np.ndarray:
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        return cv2.GaussianBlur(img, (0, 0), 6) if smooth else img

    return frame


def first_frame(clip: Path) -> np.ndarray:
    """The first RGB frame of a real clip."""
    with av.open(str(clip)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")
