"""Held-out frames of avatars made from differently cropped datasets of one clip, scored in the clip's own pixels:
each test-frame render is mapped from its dataset's crop box onto the source frame (cubic), and PSNR is taken
against the decoded clip over the whole frame, the face (the landmarks' box in REFERENCE) and the mouth (the outer
lip corners and midpoints, 10 source pixels round). Crops of different sizes put different pixel counts on the face,
so the datasets' own PSNRs do not compare; these do.

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
from instag.data.video import iter_frames, probe
from instag.eval.runner import render_split

MOUTH = [61, 291, 0, 17]  # face-mesh indices: lip corners, upper and lower lip midpoints


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(float(((a - b) ** 2).mean()), 1e-9)))


def to_source(render: np.ndarray, box: dict, width: int, height: int) -> np.ndarray:
    """A render [S, S, 3] of the crop box (x0, y0, side in source pixels) resampled onto the source frame."""
    k = render.shape[0] / box["side"]
    shift = 0.5 / k - 0.5  # pixel centres: render pixel i's centre lies at x0 + (i + ½) / k in source pixels
    m = np.array([[1 / k, 0, box["x0"] + shift], [0, 1 / k, box["y0"] + shift]], np.float32)  # render → source
    return cv2.warpAffine(render.astype(np.float32), m, (width, height), flags=cv2.INTER_CUBIC)


def regions(ref, t: int) -> dict[str, tuple[slice, slice]]:
    box = ref.meta["crop_box"]
    lm = ref.tracks["landmarks"][t] * box["side"] / ref.size + (box["x0"], box["y0"])
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    (mx0, my0), (mx1, my1) = lm[MOUTH].min(0) - 10, lm[MOUTH].max(0) + 10
    return {"face": (slice(int(y0), int(y1)), slice(int(x0), int(x1))),
            "mouth": (slice(int(my0), int(my1)), slice(int(mx0), int(mx1)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip"), ap.add_argument("reference"), ap.add_argument("pairs", nargs="+")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ref = load_dataset(args.reference)
    info = probe(args.clip, 0.0)
    frames = list(iter_frames(info, ref.fps, ref.n_frames))
    out = {}
    for pair in args.pairs:
        avatar, dataset = pair.split(":")
        ds = load_dataset(dataset)
        scores: dict[str, list[float]] = {"frame": [], "face": [], "mouth": []}
        for t, pred, _, _ in render_split(load_avatar(avatar), dataset):
            mapped = to_source(pred, ds.meta["crop_box"], info.width, info.height)
            gt = frames[t].astype(np.float32)
            scores["frame"].append(psnr(mapped, gt))
            for name, (ys, xs) in regions(ref, t).items():
                scores[name].append(psnr(mapped[ys, xs], gt[ys, xs]))
        out[avatar] = {f"psnr_{k}": round(float(np.mean(v)), 3) for k, v in scores.items()}
        print(avatar, out[avatar], flush=True)
    if args.json:
        args.json.write_text(json.dumps({"clip": args.clip, "reference": args.reference, "scores": out}, indent=1))


if __name__ == "__main__":
    main()
