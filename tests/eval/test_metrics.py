"""Evaluation metrics: ground truth against itself is perfect, against noise poor; the JSON keys are all there."""

from __future__ import annotations

import numpy as np
import pytest

from instag.data import facemesh as fm
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


def _mesh() -> np.ndarray:
    """A 478-point landmark set: the face spans [16, 48]², the lips [26, 38] × [36, 42]."""
    lm = np.tile(np.array([[16.0, 16.0]]), (478, 1))
    lm[0] = (48.0, 48.0)
    lips = fm.LIP_INDICES
    lm[lips] = np.stack([np.linspace(26.0, 38.0, len(lips)), np.linspace(36.0, 42.0, len(lips))], 1)
    return lm


def test_ground_truth_against_itself_and_against_noise():
    gts = _frames(4)
    lm = _mesh()
    same = score_frames(((g, g, lm) for g in gts), track=False)
    assert set(EVAL_KEYS) <= same.keys() and same["n_frames"] == 4
    assert same["psnr_full"] == same["psnr_face"] == same["psnr_mouth"] == M.PSNR_CAP
    assert same["ssim_full"] == pytest.approx(1.0) and same["ssim_face"] == pytest.approx(1.0)
    assert same["ssim_mouth"] == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    noisy = score_frames(((rng.integers(0, 256, g.shape).astype(np.uint8), g, lm) for g in gts), track=False)
    assert noisy["psnr_full"] < 12 and noisy["ssim_full"] < 0.15 and noisy["ssim_face"] < 0.15
    assert noisy["psnr_mouth"] < 12


def test_the_mouth_crop_scores_only_around_the_lips():
    gt = _frames(1)[0]
    lm = _mesh()
    assert M.mouth_box(lm[fm.LIP_INDICES], 64) == (23, 33, 41, 45)  # grown by a quarter of the 12 px width
    off_mouth = gt.copy()
    off_mouth[:20] = 0  # wrong above the mouth box only
    scores = score_frames([(off_mouth, gt, lm)], track=False)
    assert scores["psnr_mouth"] == M.PSNR_CAP and scores["psnr_face"] < 30
    in_mouth = gt.copy()
    in_mouth[36:42, 26:38] = 255 - in_mouth[36:42, 26:38]
    assert score_frames([(in_mouth, gt, lm)], track=False)["psnr_mouth"] < 20


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
    lm = _mesh() * 4.0  # the face box [64, 192]², the lips in its lower middle
    same = score_frames((g, g, lm) for g in gts)
    assert same["n_tracked"] == 12 and same["lmd"] == 0.0
    assert same["mouth_open_corr"] == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    noisy = score_frames((rng.integers(0, 256, g.shape).astype(np.uint8), g, lm) for g in gts)
    assert noisy["psnr_full"] < 12 and noisy["n_tracked"] == 0 and noisy["lmd"] is None
