"""The step a dub shows where the labels cut long hair into head (rendered) and torso (the clip's own): the mean
colour difference across the cut, against the same in the replayed clip frame (1: as smooth as the real hair).
Copies AVATAR to WORK twice, with its torso layers rebuilt from DATASET without and with the hair band
(`render.plate.torso_layer`), and drives both with the first FRAMES frames of AUDIO as `instag render` does.

    python benchmarks/scripts/hair_seam.py AVATAR DATASET AUDIO WORK [--frames 100]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from instag.avatar.bundle import load_avatar
from instag.avatar.driving import audio_driver, to_uint8
from instag.data.dataset import load_dataset
from instag.media.audio import decode_audio
from instag.render.plate import torso_layer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar"), ap.add_argument("dataset"), ap.add_argument("audio"), ap.add_argument("work")
    ap.add_argument("--frames", type=int, default=100)
    args = ap.parse_args()
    ds = load_dataset(args.dataset)
    ids = ds.meta["labels"]
    audio = decode_audio(args.audio).mono16k
    for band in (False, True):
        dst = Path(args.work) / ("band" if band else "plain")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(args.avatar, dst)
        for idx in load_avatar(dst).drive["frame_index"]:
            layer = torso_layer(ds.frame(int(idx)), ds.label(int(idx)), ids["neck_torso"],
                                (ids["face_skin"], ids["lips"]), ids["hair"] if band else None)
            cv2.imwrite(str(dst / "torso" / f"{int(idx):06d}.png"), layer[..., [2, 1, 0, 3]])
        av = load_avatar(dst)
        dub, clip = [], []
        with torch.no_grad():
            for frame in audio_driver(av, audio, args.frames):
                img = to_uint8(av.render(frame.cond).image).astype(np.float32)
                label, gt = ds.label(frame.clip_frame), ds.frame(frame.clip_frame).astype(np.float32)
                torso = label == ids["neck_torso"]
                cols = np.nonzero(torso.any(axis=0))[0]
                top = torso[:, cols].argmax(axis=0)
                cut = (top > 0) & (label[np.maximum(top - 1, 0), cols] == ids["hair"])
                c, t = cols[cut], top[cut]
                if len(c):
                    dub.append(np.abs(img[t, c] - img[t - 1, c]).mean())
                    clip.append(np.abs(gt[t, c] - gt[t - 1, c]).mean())
        name = "with the hair band" if band else "without it"
        if not dub:
            print(f"{name}: no frame has hair reaching the torso")
            continue
        print(f"{name}: step across the cut {np.mean(dub):.1f} (the clip's own {np.mean(clip):.1f}), ratio "
              f"{np.mean(dub) / np.mean(clip):.2f} over {len(dub)} of {args.frames} frames")


if __name__ == "__main__":
    main()
