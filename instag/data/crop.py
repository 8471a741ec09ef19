"""First pass over a clip: face boxes at low resolution → one face-centred square crop box for the whole clip."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from instag.config.preprocess import PreprocessConfig
from instag.data.facemesh import FaceBox, FaceDetector
from instag.data.video import ClipInfo, iter_frames
from instag.errors import InputError

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CropPlan:
    x0: int  # top-left corner in displayed source pixels
    y0: int
    side: int
    face_px: float  # median face width in source pixels
    centres: np.ndarray  # [T, 2] float32 detected face centre per frame in source pixels (NaN where none)
    warnings: tuple[str, ...]


def frame_ranges(frames: np.ndarray) -> str:
    """'3–9, 12, 40–41' for sorted frame indices."""
    if len(frames) == 0:
        return ""
    parts, start, prev = [], frames[0], frames[0]
    for f in list(frames[1:]) + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        parts.append(f"{start}" if start == prev else f"{start}–{prev}")
        if f is not None:
            start = prev = f
    return ", ".join(parts)


def missing_face_error(info: ClipInfo, missing: np.ndarray, n_frames: int) -> InputError:
    return InputError(f"{info.path}: no face in frames {frame_ranges(missing)} "
                      f"({len(missing)} of {n_frames} frames, {100 * len(missing) / n_frames:.0f}%)")


def plan_crop(info: ClipInfo, cfg: PreprocessConfig, n_frames: int, progress: Progress | None = None) -> CropPlan:
    """Detect faces in every output frame (downscaled) and choose the clip's crop box; InputError for clips
    without a usable face (mostly no face, several faces none of which dominates, a face below min_face_px)."""
    detector = FaceDetector()
    primary: list[FaceBox | None] = []
    ratios: list[float] = []
    multi: list[int] = []
    try:
        for i, img in enumerate(iter_frames(info, cfg.fps, n_frames, max_side=cfg.detect_max_side)):
            boxes = detector.detect(img)
            sx, sy = info.width / img.shape[1], info.height / img.shape[0]
            boxes = [FaceBox(b.x0 * sx, b.y0 * sy, b.w * sx, b.h * sy, b.score) for b in boxes]
            primary.append(boxes[0] if boxes else None)
            if len(boxes) > 1:
                multi.append(i)
                ratios.append(boxes[0].area / max(boxes[1].area, 1e-6))
            if progress:
                progress("detect", i + 1, n_frames)
    finally:
        detector.close()
    found = np.array([b is not None for b in primary])
    missing = np.flatnonzero(~found)
    # The detector may miss a few frames the tracker finds later; refuse here only when most frames lack a face.
    if found.mean() < 0.5:
        raise missing_face_error(info, missing, n_frames)
    warnings = []
    if len(multi) > 0.1 * found.sum():
        if np.median(ratios) < cfg.dominance_ratio:
            raise InputError(f"{info.path}: several faces of similar size in frames {frame_ranges(np.array(multi))}; "
                             f"none dominates (crop the clip to one person)")
        warnings.append(f"{info.path}: several faces in frames {frame_ranges(np.array(multi))}; tracking the largest")
    boxes = [b for b in primary if b is not None]
    sizes = np.array([max(b.w, b.h) for b in boxes])
    face_px = float(np.median([b.w for b in boxes]))
    if face_px < cfg.min_face_px:
        raise InputError(f"{info.path}: the face is only {face_px:.0f} px wide, smaller than {cfg.min_face_px} px "
                         f"(use a closer or higher-resolution clip)")
    centres = np.array([b.centre for b in boxes])
    # Drop detections far from the clip's typical face position (false positives) before taking the union.
    med = np.median(centres, 0)
    keep = np.linalg.norm(centres - med, axis=1) < 3 * np.median(sizes)
    c, a = centres[keep], sizes[keep]
    half = cfg.crop_scale * a / 2
    cy = c[:, 1] + cfg.crop_drop * a
    lo_x, hi_x = (c[:, 0] - half).min(), (c[:, 0] + half).max()
    lo_y, hi_y = (cy - half).min(), (cy + half).max()
    # Never wider than the frame: padding is replicated frame edge, which the avatar would learn and draw as streaks
    # under the chin. The frame's edge is the border instead, as in the clip (benchmarks/crop_placement_cpu.md).
    side = int(np.ceil(min(hi_x - lo_x, hi_y - lo_y, info.width, info.height)))
    per_frame = np.full((n_frames, 2), np.nan, np.float32)
    per_frame[found] = np.array([b.centre for b in boxes], np.float32)
    return CropPlan(place_crop(lo_x, hi_x, side, info.width), place_crop(lo_y, hi_y, side, info.height), side,
                    face_px, per_frame, tuple(warnings))


def place_crop(lo: float, hi: float, side: int, extent: int) -> int:
    """Where a crop of `side` ≤ `extent` pixels starts along an axis of the frame's `extent` pixels: centred on
    [lo, hi] (the face's span with its margins), then moved to lie inside the frame."""
    start = int(round((lo + hi) / 2 - side / 2))
    return int(np.clip(start, 0, extent - side))


def crop_square(img: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """Cut the square [y0:y0+side, x0:x0+side] out of `img` [H, W, 3] (edge-replicated outside) and resize to `size`."""
    h, w = img.shape[:2]
    pads = (max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w))
    part = img[max(0, y0) : min(h, y0 + side), max(0, x0) : min(w, x0 + side)]
    if any(pads):
        part = cv2.copyMakeBorder(part, *pads, borderType=cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(part, (size, size), interpolation=interp)
