"""Evaluation metrics: ground truth against itself is perfect, against noise poor; the JSON keys are all there."""

from __future__ import annotations

import numpy as np
import pytest

from instag.eval import EVAL_KEYS, score_frames
from instag.eval import metrics as M


def _frames(n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:size, :size]
    out = []
    for i in range(n):
        img = np.zeros((size, size, 3), np.uint8)
        img[..., 0] = (xs * 4 + i * 3) % 256
        img[..., 1] = (ys * 4) % 256
        img[..., 2] = 128 + 60 * np.sin((xs + ys + i) / 6.0)
        out.append(np.clip(img.astype(int) + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8))
    return out


def test_metrics_of_identical_and_noisy_images():
    a = _frames(1)[0]
    noise = np.random.default_rng(1).integers(0, 256, a.shape).astype(np.uint8)
    assert M.psnr(a, a) == M.PSNR_CAP and M.ssim(a, a) == pytest.approx(1.0)
    assert M.psnr(a, noise) < 12 and M.ssim(a, noise) < 0.15
    assert M.ssim(a[:5, :5], a[:5, :5]) == pytest.approx(1.0)  # tiny crops still work
    assert M.correlation(np.arange(5), np.arange(5) * 2.0) == pytest.approx(1.0)
    assert M.correlation(np.ones(5), np.arange(5)) is None


def test_ground_truth_against_itself_and_against_noise():
    gts = _frames(4)
    lm = np.array([[16.0, 16.0], [48.0, 48.0]])
    same = score_frames(((g, g, lm) for g in gts), track=False)
    assert set(EVAL_KEYS) <= same.keys() and same["n_frames"] == 4
    assert same["psnr_full"] == M.PSNR_CAP and same["psnr_face"] == M.PSNR_CAP
    assert same["ssim_full"] == pytest.approx(1.0) and same["ssim_face"] == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    noisy = score_frames(((rng.integers(0, 256, g.shape).astype(np.uint8), g, lm) for g in gts), track=False)
    assert noisy["psnr_full"] < 12 and noisy["ssim_full"] < 0.15 and noisy["ssim_face"] < 0.15


@pytest.mark.real_data
def test_lip_metrics_on_real_frames(real_data):
    import cv2

    cap = cv2.VideoCapture(str(real_data / "OpenTalker_SadTalker_WDA_KatieHill_000.mp4"))
    gts = []
    while len(gts) < 12:
        ok, bgr = cap.read()
        assert ok
        gts.append(np.ascontiguousarray(cv2.resize(bgr, (256, 256), interpolation=cv2.INTER_AREA)[..., ::-1]))
    cap.release()
    lm = np.array([[70.0, 40.0], [190.0, 220.0]])
    same = score_frames((g, g, lm) for g in gts)
    assert same["n_tracked"] == 12 and same["lmd"] == 0.0
    assert same["mouth_open_corr"] == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    noisy = score_frames((rng.integers(0, 256, g.shape).astype(np.uint8), g, lm) for g in gts)
    assert noisy["psnr_full"] < 12 and noisy["n_tracked"] == 0 and noisy["lmd"] is None
