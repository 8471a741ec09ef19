"""Small line plots drawn with OpenCV (RGB uint8 images), for contact sheets and model cards: no plotting
library is needed at run time."""

from __future__ import annotations

import cv2
import numpy as np

WHITE, GREY, BLACK = (255, 255, 255), (150, 150, 150), (0, 0, 0)
Series = tuple[str, np.ndarray, tuple[int, int, int]]  # name, values [N], RGB colour


def put_text(img: np.ndarray, s: str, x: int, y: int, colour=WHITE, scale: float = 0.5) -> None:
    """Text with a dark outline, legible on any background."""
    cv2.putText(img, s, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, BLACK, 3, cv2.LINE_AA)
    cv2.putText(img, s, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def line_plot(width: int, height: int, series: list[Series], title: str, tick_every: float) -> np.ndarray:
    """One panel [height, width, 3] with every series on a shared y range (printed beside the title) and an
    x tick every `tick_every` samples (a second of frames, a thousand steps of logged rows)."""
    img = np.full((height, width, 3), 24, np.uint8)
    pad_l, pad_r, pad_t, pad_b = 8, 8, 22, 8
    put_text(img, title, pad_l, 16)
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    cv2.rectangle(img, (pad_l, pad_t), (pad_l + w, pad_t + h), (70, 70, 70), 1)
    n = max(len(s[1]) for s in series)
    for k in range(1, int((n - 1) / tick_every) + 1):
        x = pad_l + int(w * k * tick_every / max(n - 1, 1))
        cv2.line(img, (x, pad_t + h - 4), (x, pad_t + h), GREY, 1)
    allv = np.concatenate([s[1] for s in series])
    lo, hi = float(np.nanmin(allv)), float(np.nanmax(allv))
    hi = hi if hi > lo else lo + 1.0
    x_text = width - 8
    for name, v, colour in reversed(series):
        xs = pad_l + np.arange(len(v)) * w / max(len(v) - 1, 1)
        ys = pad_t + h - (v - lo) / (hi - lo) * h
        cv2.polylines(img, [np.stack([xs, ys], 1).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
        (tw, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        x_text -= tw + 10
        put_text(img, name, x_text, 16, colour, 0.45)
    (tw, _), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    put_text(img, f"{lo:.3g}..{hi:.3g}", pad_l + tw + 12, 16, GREY, 0.4)
    return img
