"""How open are people's mouths in the pauses of their own clips, and would a per-person pause shape help a dub?

    python benchmarks/scripts/pause_shape.py DATASET... [--umf whisper_v2] [--train-frames 125]

Pauses follow `instag bench dub`: speech-band energy 35 dB under the loudest frame for at least 0.2 s, trimmed by 2
frames at each end. Per dataset:
- its own pause openness over the whole clip, on the bench's scale (0: the person's 10th percentile of the tracked
  opening, 1: their 90th), beside the openness in speech;
- the UMF's lip prediction, calibrated on the first `--train-frames` frames as adaptation calibrates it, scored on
  the rest (correlation and RMSE with the tracked opening, standardised as the head's target), as it is and with
  every pause frame set to the person's pause shape (the median tracked lip shape in the pauses of the first
  frames; only people with at least 5 such frames). Pauses of each part are judged against that part's loudest
  frame, so the training part reveals nothing of the rest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile
import torch

from instag.audio.features import energy_envelope
from instag.bench.dub import silent_frames
from instag.config.recipe import load_recipe
from instag.data.dataset import load_dataset
from instag.data.pose import lip_coefficients, lip_standardisation
from instag.motion.model import MotionModel
from instag.motion.umf_file import find_umf, load_umf
from instag.train.adapt import lip_gain
from instag.train.recipe import AdaptRecipe

MIN_PAUSE_FRAMES = 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+", type=Path)
    ap.add_argument("--umf", default="whisper_v2")
    ap.add_argument("--train-frames", type=int, default=125)
    args = ap.parse_args()
    cfg = load_recipe("adapt_quick_cpu", AdaptRecipe).model
    motion = MotionModel(cfg)
    load_umf(find_umf(args.umf)[0], motion, cfg)
    motion.eval()
    n_train = args.train_frames
    own, scored = [], []
    for path in args.datasets:
        ds = load_dataset(path)
        audio, rate = soundfile.read(path / "audio.wav", dtype="float32")
        audio = audio.mean(1) if audio.ndim > 1 else audio
        opening = ds.tracks["mouth_open"]
        pauses = silent_frames(energy_envelope(audio, rate, ds.fps, len(opening)))
        lo, hi = np.percentile(opening, [10, 90])
        scale = (opening - lo) / (hi - lo)
        if pauses.sum() >= MIN_PAUSE_FRAMES:
            own.append((path.name, int(pauses.sum()), len(opening), np.median(scale[pauses]),
                        np.median(scale[~pauses])))
        feats = torch.from_numpy(np.load(path / "audio" / "whisper.npy")).float()
        n = min(len(feats), len(opening))
        if n < n_train + 50:
            continue
        with torch.no_grad():
            lips = motion.umf.clip_lips(feats, list(range(n)), cfg.audio)[1].numpy()  # [T, C]
        tracked = lip_coefficients(ds.tracks, tuple(cfg.lip_coeffs))[:n]
        train, test = np.arange(n_train), np.arange(n_train, n)
        mean, std = lip_standardisation(tracked, train)
        z = (tracked - mean) / std
        bias = lips[train].mean(0)
        pred = (lips - bias) * lip_gain(torch.from_numpy(lips[train] - bias), torch.from_numpy(z[train])).numpy()
        energy = energy_envelope(audio, rate, ds.fps, n)
        train_pauses, test_pauses = silent_frames(energy[train]), silent_frames(energy[test])
        if train_pauses.sum() < MIN_PAUSE_FRAMES or not test_pauses.any():
            continue
        gated = pred.copy()
        gated[test[test_pauses]] = np.median(z[train][train_pauses], 0)
        r = [np.corrcoef(p[test, 0], z[test, 0])[0, 1] for p in (pred, gated)]
        rmse = [np.sqrt(np.mean((p[test, 0] - z[test, 0]) ** 2)) for p in (pred, gated)]
        scored.append((path.name, int(train_pauses.sum()), int(test_pauses.sum()), *r, *rmse))
    print(f"Own pauses ({len(own)} people with at least {MIN_PAUSE_FRAMES} pause frames):")
    for name, k, total, sil, speech in own:
        print(f"  {name[:44]:44s} {k:4d}/{total:4d} pause frames  openness in pauses {sil:5.2f}, in speech {speech:5.2f}")
    sil = np.array([o[3] for o in own])
    print(f"  median openness in pauses {np.median(sil):.2f}; below 0.25 for {int((sil < 0.25).sum())} of {len(sil)}")
    print(f"Pause shape from the first {n_train} frames, scored on the rest ({len(scored)} people):")
    for name, k_tr, k_te, r0, r1, e0, e1 in scored:
        print(f"  {name[:44]:44s} pauses {k_tr:3d} / {k_te:4d}  r {r0:.3f} → {r1:.3f}  RMSE {e0:.3f} → {e1:.3f}")
    s = np.array([row[3:] for row in scored])
    print(f"  mean r {s[:, 0].mean():.3f} → {s[:, 1].mean():.3f} (better for {int((s[:, 1] > s[:, 0]).sum())} of "
          f"{len(s)}); mean RMSE {s[:, 2].mean():.3f} → {s[:, 3].mean():.3f}")


if __name__ == "__main__":
    main()
