"""Image and lip-sync metrics: PSNR, SSIM (full image, a face crop and a mouth crop), LMD and mouth-opening
correlation.

Images are [H, W, 3] uint8 RGB. Identical images give PSNR = `PSNR_CAP` (a finite stand-in for infinity, so
the JSON stays standard) and SSIM = 1.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from instag.stats import correlation  # noqa: F401  (one of the evaluation's metrics)

PSNR_CAP = 100.0  # dB, reported for identical images (MSE 0)
SSIM_WINDOW = 11  # the Gaussian window skimage uses for sigma 1.5 (truncate 3.5)
FACE_CROP_MARGIN = 0.1  # the face crop is the landmarks' box grown by this fraction of its size per side
# The mouth crop is the lips' box grown by this fraction of its width per side: the lips, the teeth and the skin
# the lips move into.
MOUTH_CROP_MARGIN = 0.25


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 images (peak 255), capped at PSNR_CAP."""
    mse = float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))
    if mse <= 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * np.log10(255.0**2 / mse))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM over RGB (Gaussian 11×11 window, σ 1.5, as Wang et al.); 1 for identical images."""
    side = min(pred.shape[:2])
    if side >= SSIM_WINDOW:
        return float(structural_similarity(pred, target, channel_axis=-1, data_range=255, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False))
    win = side if side % 2 else side - 1  # tiny crops: the largest odd uniform window that fits
    if win < 3:
        return 1.0 if np.array_equal(pred, target) else 0.0
    return float(structural_similarity(pred, target, channel_axis=-1, data_range=255, win_size=win,
                                       use_sample_covariance=False))


def face_box(landmarks: np.ndarray, size: int, margin: float = FACE_CROP_MARGIN) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box around landmarks [L, 2], grown by `margin` and clipped to a size² image."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    return _grown_box(lo, hi, (hi - lo) * margin, size)


def mouth_box(lips: np.ndarray, size: int, margin: float = MOUTH_CROP_MARGIN) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box around the lip landmarks [L, 2], grown by `margin` of the lips' width on every
    side and clipped to a size² image."""
    lo, hi = lips.min(0), lips.max(0)
    return _grown_box(lo, hi, (hi[0] - lo[0]) * margin, size)


def _grown_box(lo: np.ndarray, hi: np.ndarray, pad: np.ndarray | float, size: int) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)


def crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1]


def landmark_distance(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean Euclidean distance [px] between corresponding landmarks pred, target [L, 2]."""
    return float(np.linalg.norm(pred - target, axis=-1).mean())
