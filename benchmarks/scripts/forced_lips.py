"""Can an avatar shut its mouth, and how low does the audio drive its predicted opening? Drives AVATAR with the
first SECONDS of AUDIO as `instag render` does and, every 4th frame, tracks the rendered mouth opening when driven
(the calibrated predicted lip shape) and when the predicted opening is replaced by fixed values (standard
deviations of the person's tracked opening over their training frames; the width stays predicted).

    python benchmarks/scripts/forced_lips.py AVATAR DATASET AUDIO [--seconds 8]

Openness is on the person's scale, as `instag bench dub` reports it: 0 at the 10th percentile of their tracked
opening over the whole clip, 1 at the 90th.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from instag.audio.features import FEATURE_RATE
from instag.avatar.bundle import load_avatar
from instag.avatar.driving import Driver, audio_features, frame_count, to_uint8
from instag.data import facemesh as fm
from instag.data.dataset import load_dataset
from instag.eval.runner import mouth_opening
from instag.media.audio import decode_audio

FORCED = (-2.0, -1.0, 0.0, 1.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar"), ap.add_argument("dataset"), ap.add_argument("audio")
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    av, ds = load_avatar(args.avatar), load_dataset(args.dataset)
    closed, wide = np.percentile(ds.tracks["mouth_open"], [10, 90])
    audio = decode_audio(args.audio).mono16k[: int(args.seconds * FEATURE_RATE)]
    n = frame_count(len(audio) / FEATURE_RATE, float(av.meta["fps"]))
    tracker = fm.FaceTracker()
    rows = []
    try:
        with torch.no_grad():
            for frame in Driver(av, audio_features(av, audio, n)):
                if frame.index % 4:
                    continue
                windows = frame.cond.audio_windows[None]
                predicted = av.motion.predicted_lips(av.motion.umf.audio_codes(windows), windows)[0]
                row = [float(predicted[0])]
                for value in (None, *FORCED):
                    cond = frame.cond if value is None else dataclasses.replace(
                        frame.cond, lip_shape=torch.cat([torch.tensor([value]), predicted[1:]]))
                    img = to_uint8(av.render(cond).image)
                    lm = tracker.track(img, (img.shape[1] / 2, img.shape[0] / 2))
                    row.append(np.nan if lm is None else (mouth_opening(lm[:, :2]) - closed) / (wide - closed))
                rows.append(row)
    finally:
        tracker.close()
    r = np.array(rows)
    print(f"{len(r)} frames; predicted opening (σ of the person's): median {np.nanmedian(r[:, 0]):.2f}, "
          f"10th–90th percentile {np.nanpercentile(r[:, 0], 10):.2f} … {np.nanpercentile(r[:, 0], 90):.2f}")
    for j, label in enumerate(["driven", *(f"opening fixed at {v:+.1f} σ" for v in FORCED)]):
        v = r[:, j + 1]
        print(f"{label:>24}: openness median {np.nanmedian(v):.2f} (10th–90th percentile "
              f"{np.nanpercentile(v, 10):.2f} … {np.nanpercentile(v, 90):.2f})")


if __name__ == "__main__":
    main()
