"""Held-out frames of avatars made from differently cropped datasets of one clip, scored in the clip's own pixels:
each test-frame render is mapped from its dataset's crop box onto the source frame (cubic), and PSNR is taken
against the decoded clip over the face and mouth boxes `instag eval` scores (`eval.metrics`, placed by REFERENCE's
landmarks) and over the whole ("frame"), each cut to the part of the frame that every compared crop covers. Crops
of different sizes put different pixel counts on the face, so the datasets' own PSNRs do not compare; these do.

    python benchmarks/scripts/source_pixels.py CLIP REFERENCE_DATASET AVATAR:DATASET [AVATAR:DATASET ...] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from instag.avatar.bundle import load_avatar
from instag.data.dataset import load_dataset
from instag.data.facemesh import LIP_INDICES
from instag.data.video import iter_frames, probe
from instag.eval import metrics as M
from instag.eval.runner import render_split


def to_source(render: np.ndarray, box: dict, width: int, height: int) -> np.ndarray:
    """A render [S, S, 3] of the crop box (x0, y0, side in source pixels) resampled onto the source frame (uint8;
    black outside the box)."""
    k = render.shape[0] / box["side"]
    shift = 0.5 / k - 0.5  # pixel centres: render pixel i's centre lies at x0 + (i + ½) / k in source pixels
    m = np.array([[1 / k, 0, box["x0"] + shift], [0, 1 / k, box["y0"] + shift]], np.float32)  # render → source
    return cv2.warpAffine(render, m, (width, height), flags=cv2.INTER_CUBIC)


def regions(ref, t: int, common: tuple[int, int, int, int]) -> dict[str, tuple[int, int, int, int]]:
    """Frame t's scored boxes (x0, y0, x1, y1) in source pixels, cut to `common`."""
    box = ref.meta["crop_box"]
    lm = ref.tracks["landmarks"][t] * box["side"] / ref.size + (box["x0"], box["y0"])
    side = max(common[2], common[3])
    boxes = {"frame": common, "face": M.face_box(lm, side), "mouth": M.mouth_box(lm[LIP_INDICES], side)}
    return {k: (max(b[0], common[0]), max(b[1], common[1]), min(b[2], common[2]), min(b[3], common[3]))
            for k, b in boxes.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip"), ap.add_argument("reference"), ap.add_argument("pairs", nargs="+")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ref = load_dataset(args.reference)
    info = probe(args.clip, 0.0)
    frames = list(iter_frames(info, ref.fps, ref.n_frames))
    pairs = [(avatar, load_dataset(dataset)) for avatar, dataset in (p.split(":") for p in args.pairs)]
    common = (0, 0, info.width, info.height)
    for _, ds in pairs:
        b = ds.meta["crop_box"]
        common = (max(common[0], b["x0"]), max(common[1], b["y0"]), min(common[2], b["x0"] + b["side"]),
                  min(common[3], b["y0"] + b["side"]))
    out = {}
    for avatar, ds in pairs:
        scores: dict[str, list[float]] = {"frame": [], "face": [], "mouth": []}
        for t, pred, _, _ in render_split(load_avatar(avatar), ds.path):
            mapped = to_source(pred, ds.meta["crop_box"], info.width, info.height)
            for name, box in regions(ref, t, common).items():
                scores[name].append(M.psnr(M.crop(mapped, box), M.crop(frames[t], box)))
        out[avatar] = {f"psnr_{k}": round(float(np.mean(v)), 3) for k, v in scores.items()}
        print(avatar, out[avatar], flush=True)
    if args.json:
        args.json.write_text(json.dumps({"clip": args.clip, "reference": args.reference, "scored_box": common,
                                         "scores": out}, indent=1))


if __name__ == "__main__":
    main()
