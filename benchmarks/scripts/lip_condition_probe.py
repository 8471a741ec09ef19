"""What moves an avatar's rendered mouth on held-out frames? Renders every STEP-th held-out frame of DATASET as the
ablation does (the frame's audio, pose, blink and torso) and again with the lip condition replaced: by the tracked
lip shape (standardised as in training), by zeros, and with the blink held at its training mean. Prints the
rendered opening's correlation with the tracked one and with the predicted opening.

    python benchmarks/scripts/lip_condition_probe.py AVATAR DATASET [--step 3]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from instag.avatar.bundle import load_avatar
from instag.data import facemesh as fm
from instag.data.dataset import load_dataset
from instag.data.pose import lip_coefficients, lip_standardisation
from instag.eval.runner import DatasetDrive, mouth_opening
from instag.render.plate import paste_torso

VARIANTS = ("predicted", "tracked", "zero", "predicted, blink fixed", "zero, blink fixed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar"), ap.add_argument("dataset")
    ap.add_argument("--step", type=int, default=3)
    args = ap.parse_args()
    av, ds = load_avatar(args.avatar), load_dataset(args.dataset)
    drive = DatasetDrive(av, ds)
    lips = lip_coefficients(ds.tracks, tuple(av.cfg.lip_coeffs))
    mean, std = lip_standardisation(lips, ds.train_indices)
    tracked = torch.from_numpy(((lips - mean) / std).astype(np.float32))  # [T, C]
    blink_mean = drive.expression[torch.as_tensor(ds.train_indices)].mean(0)
    zero = torch.zeros(tracked.shape[1])
    torso_id = int(ds.meta["labels"]["neck_torso"])
    trackers = {v: fm.FaceTracker() for v in VARIANTS}
    own, predicted, openings = [], [], {v: [] for v in VARIANTS}
    try:
        with torch.no_grad():
            for t in ds.test_indices[:: args.step]:
                t = int(t)
                gt = ds.frame(t)
                background = torch.from_numpy(paste_torso(av.plate, gt, ds.label(t), torso_id)).float() / 255.0
                cond = drive.condition(t, background)
                windows = cond.audio_windows[None]
                predicted.append(float(av.motion.predicted_lips(av.motion.umf.audio_codes(windows), windows)[0, 0]))
                own.append(mouth_opening(ds.tracks["landmarks"][t]))
                for v, lip, expression in zip(VARIANTS, (None, tracked[t], zero, None, zero),
                                              (cond.expression,) * 3 + (blink_mean,) * 2, strict=True):
                    img = av.render(dataclasses.replace(cond, lip_shape=lip, expression=expression)).image
                    img = np.round(img.clamp(0, 1).numpy() * 255).astype(np.uint8)
                    lm = trackers[v].track(img, (img.shape[1] / 2, img.shape[0] / 2))
                    openings[v].append(np.nan if lm is None else mouth_opening(lm[:, :2]))
    finally:
        for tr in trackers.values():
            tr.close()
    own_a, pred_a = np.array(own), np.array(predicted)
    print(f"{args.avatar}: {len(own_a)} held-out frames; predicted opening vs tracked r "
          f"{np.corrcoef(pred_a, own_a)[0, 1]:.3f}")
    for v in VARIANTS:
        o = np.array(openings[v])
        ok = np.isfinite(o)
        print(f"  lip condition {v:>24}: rendered opening vs tracked r {np.corrcoef(o[ok], own_a[ok])[0, 1]:.3f}, "
              f"vs predicted r {np.corrcoef(o[ok], pred_a[ok])[0, 1]:.3f}, spread {o[ok].std() / own_a[ok].std():.2f}")


if __name__ == "__main__":
    main()
