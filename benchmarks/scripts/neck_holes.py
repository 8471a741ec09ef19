"""Where a dub shows the empty background through the person: pixels inside the replayed frame's face, lips and
neck labels that neither the rendered head (face or mouth alpha ≥ 0.5) nor the replayed torso layer covers.
Drives AVATAR with the first FRAMES frames of AUDIO as `instag render` does.

    python benchmarks/scripts/neck_holes.py AVATAR DATASET AUDIO [--frames 125]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from instag.avatar.bundle import load_avatar
from instag.avatar.driving import Driver, audio_features
from instag.data.dataset import load_dataset
from instag.media.audio import decode_audio
from instag.render.plate import UNDER


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar"), ap.add_argument("dataset"), ap.add_argument("audio")
    ap.add_argument("--frames", type=int, default=125)
    args = ap.parse_args()
    av, ds = load_avatar(args.avatar), load_dataset(args.dataset)
    ids = ds.meta["labels"]
    driver = Driver(av, audio_features(av, decode_audio(args.audio).mono16k, args.frames))
    holes = []
    with torch.no_grad():
        for frame in driver:
            out = av.render(frame.cond)
            head = torch.maximum(out.face.alpha[..., 0], out.mouth.alpha[..., 0]).numpy() >= 0.5
            person = np.isin(ds.label(frame.clip_frame), [ids["face_skin"], ids["lips"], ids["neck_torso"]])
            torso = av.torso(driver.drive_index(frame.index))[..., 3] == UNDER
            holes.append(int((person & ~head & ~torso).sum()))
    h = np.array(holes)
    print(f"{args.avatar}: background pixels showing through the person, per frame: mean {h.mean():.1f}, "
          f"median {np.median(h):.0f}, max {h.max()}; frames with 20 or more: {(h >= 20).sum()}/{len(h)}")


if __name__ == "__main__":
    main()
