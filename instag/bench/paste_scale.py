"""At which scale to render the head for paste-back: the face crop of held-out frames, rendered at the avatar's
size and upscaled to the size its crop has in the source, against rendered at the source's scale directly (and any
sizes between), scored against the source's own full-resolution pixels.

Every arm draws the head over the same background (the avatar's plate with the frame's own torso, upscaled to
the source's scale), so the figures differ only by the head; the face crop is the tracked landmarks' box (as
`instag eval`), at the source's scale. Sharpness is the face crop's mean absolute Laplacian over the source's: 1
is as sharp as the video around it, below 1 softer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from instag.avatar.bundle import load_avatar
from instag.avatar.driving import to_uint8
from instag.data.crop import crop_square
from instag.data.dataset import load_dataset
from instag.data.video import iter_frames, probe
from instag.errors import InputError
from instag.eval import metrics as M
from instag.eval.runner import DatasetDrive
from instag.render.plate import paste_torso


def _sharpness(img: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey image [H, W, 3] uint8."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def compare_scales(avatar: str | Path, dataset: str | Path, n_frames: int = 24,
                   sizes: tuple[int, ...] | None = None, split: str = "test") -> dict[str, Any]:
    """PSNR / SSIM / sharpness of the face crop per render size (default: the avatar's and the crop's side in
    the source), means over `n_frames` frames spread evenly over the dataset's split (held-out: test)."""
    av = load_avatar(avatar)
    ds = load_dataset(dataset)
    box = ds.meta["crop_box"]
    x0, y0, side = int(box["x0"]), int(box["y0"]), int(box["side"])
    sizes = tuple(sizes or sorted({av.size, side}))
    test = np.asarray(ds.test_indices if split == "test" else ds.train_indices)
    if test.size == 0:
        raise InputError(f"{ds.path}: no {split} frames (preprocess with --test-from to hold frames out)")
    picks = sorted({int(v) for v in test[np.linspace(0, test.size - 1, min(n_frames, test.size)).round().astype(int)]})
    drive = DatasetDrive(av, ds)
    tracks = ds.tracks
    torso_id = int(ds.meta["labels"]["neck_torso"])
    clip = probe(ds.meta["source"]["path"], 0.0)
    sums = {s: {"psnr": 0.0, "ssim": 0.0, "sharpness": 0.0} for s in sizes}
    wanted = set(picks)
    for t, frame in enumerate(iter_frames(clip, ds.fps, picks[-1] + 1)):
        if t not in wanted:
            continue
        gt = crop_square(frame, x0, y0, side, side)  # edge-padded where a dataset's box leaves the frame
        face = M.face_box(tracks["landmarks"][t] * (side / ds.size), side)
        gt_face = M.crop(gt, face)
        plate = cv2.resize(paste_torso(av.plate, ds.frame(t), ds.label(t), torso_id), (side, side),
                           interpolation=cv2.INTER_CUBIC)
        for s in sizes:
            background = cv2.resize(plate, (s, s), interpolation=cv2.INTER_AREA) if s != side else plate
            img = to_uint8(av.render(drive.condition(t, torch.from_numpy(background).float() / 255.0, s)).image)
            if s != side:
                img = cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC)
            pred = M.crop(img, face)
            sums[s]["psnr"] += M.psnr(pred, gt_face)
            sums[s]["ssim"] += M.ssim(pred, gt_face)
            sums[s]["sharpness"] += _sharpness(pred) / max(_sharpness(gt_face), 1e-6)
    n = len(picks)
    return {"avatar": str(avatar), "dataset": str(dataset), "split": split, "crop_side_px": side,
            "avatar_size": av.size,
            "frames": picks, "per_render_size": {str(s): {k: v / n for k, v in m.items()} for s, m in sums.items()}}
