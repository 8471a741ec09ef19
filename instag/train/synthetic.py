"""Synthetic dataset dirs in the documented format (instag.data.dataset), for tests and `instag bench train`:
a coloured disc of a face with lips and a mouth that opens with the audio, hair above, torso below; no footage,
no tracker. Labels, tracks, priors and audio features are consistent with each other, not realistic."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from instag.data.dataset import FORMAT, FORMAT_VERSION
from instag.data.labels import LABELS

FOCAL_FRACTION = 1.25  # focal length in image widths
DEPTH = 0.5  # camera distance to the head centre (metres)
MEL_DIM = 8
STEPS = 4  # feature steps per frame


def _mesh() -> tuple[np.ndarray, np.ndarray]:
    """A 478-vertex cap of a sphere (radius 6 cm) facing the camera, and a triangulation of its grid."""
    n = 22  # 22 × 22 = 484 ≥ 478
    u, v = np.meshgrid(np.linspace(-0.9, 0.9, n), np.linspace(-0.9, 0.9, n))
    r = 0.06
    x, y = u * r * 0.8, v * r
    z = -np.sqrt(np.clip(r**2 - x**2 - y**2 * 0.5, 1e-6, None)) * 0.5
    verts = np.stack([x, y, z], -1).reshape(-1, 3)[:478].astype(np.float32)
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            if max(a, b, c, d) < 478:
                tris += [(a, c, b), (b, c, d)]
    return verts, np.array(tris, np.int64)


def write_dataset(path: Path, size: int = 32, frames: int = 8, colour=(200, 150, 120), seed: int = 0,
                  test_from: int | None = None, mel_dim: int = MEL_DIM, kind: str = "mel") -> Path:
    """A dataset dir of `frames` frames at size² with mel-like features of mel_dim × STEPS per frame, stored
    as features of `kind` (random numbers that follow the opening: they stand in for any front end's)."""
    rng = np.random.default_rng(seed)
    for sub in ("frames", "labels", "audio", "geometry/depth", "geometry/normal"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    c = size / 2
    focal = FOCAL_FRACTION * size
    ys, xs = np.mgrid[:size, :size] + 0.5
    plate = np.zeros((size, size, 3), np.uint8)
    plate[:] = (40, 90, 60)
    cv2.imwrite(str(path / "background.png"), plate[..., ::-1])
    opening = 0.5 + 0.5 * np.sin(np.arange(frames) * 1.3)
    verts, tris = _mesh()
    for t in range(frames):
        label = np.zeros((size, size), np.uint8)
        face = ((xs - c) / (0.3 * size)) ** 2 + ((ys - c) / (0.38 * size)) ** 2 < 1
        hair = (((xs - c) / (0.38 * size)) ** 2 + ((ys - c + 0.12 * size) / (0.38 * size)) ** 2 < 1) & ~face & (ys < c)
        torso = (ys > c + 0.32 * size) & ~face
        lips = ((xs - c) / (0.12 * size)) ** 2 + ((ys - c - 0.18 * size) / (0.05 * size)) ** 2 < 1
        mouth = lips & (np.abs(ys - c - 0.18 * size) < 0.04 * size * opening[t])
        label[hair], label[torso], label[face] = LABELS["hair"], LABELS["neck_torso"], LABELS["face_skin"]
        label[lips], label[mouth] = LABELS["lips"], LABELS["mouth_interior"]
        img = plate.copy()
        img[face] = colour
        img[hair] = (90, 60, 30)
        img[torso] = (30, 30, 150)
        img[lips] = (200, 40, 60)
        img[mouth] = (60, 10, 20)
        img = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(path / "frames" / f"{t:06d}.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
        cv2.imwrite(str(path / "labels" / f"{t:06d}.png"), label)
        depth = np.where(face | lips, (DEPTH - 0.05) * 10000, 0).astype(np.uint16)
        cv2.imwrite(str(path / "geometry" / "depth" / f"{t:06d}.png"), depth)
        normal = np.zeros((size, size, 3), np.uint8)
        normal[face | lips] = (128, 128, 0)  # (0, 0, -1): facing the camera
        cv2.imwrite(str(path / "geometry" / "normal" / f"{t:06d}.png"), normal[..., ::-1])
    viewmats = np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1))
    viewmats[:, 2, 3] = DEPTH
    viewmats[:, 0, 3] = 0.002 * np.sin(np.arange(frames))
    landmarks = np.tile((verts[:, :2] / DEPTH * focal + c)[None], (frames, 1, 1)).astype(np.float32)
    np.savez(path / "tracks.npz", viewmats=viewmats, landmarks=landmarks,
             blink=(np.arange(frames) % 5 == 0).astype(np.float32),
             expression=np.stack([opening] * 8, 1).astype(np.float32), mouth_open=opening.astype(np.float32))
    mel = (rng.normal(-50, 10, (frames, STEPS, mel_dim)) + 30 * opening[:, None, None]).astype(np.float32)
    np.save(path / "audio" / f"{kind}.npy", mel)
    np.savez(path / "geometry" / "face_mesh.npz", vertices=verts, triangles=tris)
    n_train = frames if test_from is None else test_from
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fps": 25.0, "frame_count": frames,
        "image_size": [size, size],
        "intrinsics": {"fx": focal, "fy": focal, "cx": c, "cy": c, "width": size, "height": size},
        "split": {"train": [0, n_train], "test": [n_train, frames]},
        "audio": {"sample_rate": 16000, "features": {kind: {"shape": list(mel.shape)}}},
        "labels": LABELS,
        "geometry": {"depth_scale": 10000.0},
        "source": {"path": "synthetic", "sha256": f"synthetic-{seed}"},
    }
    (path / "meta.json").write_text(json.dumps(meta, indent=2))
    return path


# Tiny, and pinned where the tests' expectations depend on it: mel-like features (these datasets' kind), one
# lip coefficient, no articulation head, colour without view dependence.
TINY_MODEL = {
    "gaussians": {"init_opacity": 0.5, "max_gaussians": 2000, "sh_degree": 0},
    "audio": {"feature_dim": MEL_DIM, "window": 4, "hidden_dim": 16, "code_dim": 8, "smooth_window": 4,
              "attention_hidden": 8, "feature_shift": -50.0, "feature_scale": 25.0},
    "articulation": False,
    "lip_coeffs": ["mouth_open"],
    "umf": {"triplane": {"n_levels": 4, "log2_table_size": 10, "base_resolution": 4, "max_resolution": 32},
            "hidden_dim": 16, "n_layers": 2},
    "personalized": {"triplane": {"n_levels": 2, "log2_table_size": 8, "base_resolution": 4, "max_resolution": 16},
                     "hidden_dim": 8, "n_layers": 1},
    "aligner": {"grid": {"n_levels": 4, "log2_table_size": 10, "max_resolution": 32}, "hidden_dim": 8},
    "hook": {"code_dim": 4, "hidden_dim": 8},
}
TINY_INIT = {"face_points": 150, "hair_points": 40, "mouth_points": 20}
TINY_RECIPE = {"audio_feature": "mel", "model": TINY_MODEL, "init": TINY_INIT}  # what every tiny recipe shares


def tiny_adapt_recipe(warmup: int, align: int, fuse: int, lips: bool = False) -> dict:
    """An adaptation recipe (as a dict) of TINY_MODEL for tests: no densification, checkpoints or previews; with
    `lips`, a lip condition (articulation on the opening and width) as every shipped recipe has, so the lips can
    rest."""
    model = {**TINY_MODEL, "articulation": True, "lip_coeffs": ["mouth_open", "mouth_width"]} if lips else TINY_MODEL
    return {**TINY_RECIPE, "model": model, "stages": {"warmup": warmup, "align": align, "fuse": fuse},
            "densify": {"every": 0}, "run": {"checkpoint_every": 0, "log_every": 1, "previews": 0, "threads": 1}}
