"""How well does the mouth follow the voice alone? Drives AVATAR with the speech of DATASET's held-out frames as a
dub drives it (the avatar's own replayed poses, blinks and torso, nothing else of those frames) and correlates the
rendered mouth opening (the face tracker on each render) with the tracked opening of the held-out frames.

    python benchmarks/scripts/audio_only_mouth.py AVATAR DATASET

The ablation's mouth-opening correlation renders each held-out frame with that frame's own pose and blink, which
carry some of its mouth's motion; this one does not.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from instag.avatar.bundle import load_avatar
from instag.avatar.driving import Driver, to_uint8
from instag.data import facemesh as fm
from instag.data.dataset import load_dataset
from instag.eval.runner import mouth_opening


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("avatar"), ap.add_argument("dataset")
    args = ap.parse_args()
    av, ds = load_avatar(args.avatar), load_dataset(args.dataset)
    features = torch.from_numpy(np.array(ds.audio_features(av.meta["audio_feature"]), dtype=np.float32))
    driver = Driver(av, features)
    tracker = fm.FaceTracker()
    own, rendered = [], []
    try:
        with torch.no_grad():
            for t in ds.test_indices:
                img = to_uint8(av.render(driver.condition(int(t)).cond).image)
                lm = tracker.track(img, (img.shape[1] / 2, img.shape[0] / 2))
                if lm is not None:
                    rendered.append(mouth_opening(lm[:, :2]))
                    own.append(float(ds.tracks["mouth_open"][t]))
    finally:
        tracker.close()
    own_a, rendered_a = np.array(own), np.array(rendered)
    print(f"{args.avatar}: {len(own_a)} held-out frames; audio-only mouth-opening r "
          f"{np.corrcoef(own_a, rendered_a)[0, 1]:.3f}, spread {rendered_a.std() / own_a.std():.2f}")


if __name__ == "__main__":
    main()
