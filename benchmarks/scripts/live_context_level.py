"""The live preview's predicted opening by context length, against a dub's (file mode): around speech onsets, and
its level and spread over speech frames.

    python benchmarks/scripts/live_context_level.py AVATAR DATASET...

Onsets: the first voiced frame after at least 8 silent ones (`audio.silence`), with 2 s of sound before the three
frames scored ahead of it. Openings are the UMF's predicted mouth_open (the articulation head's standardised
units), live with 2 frames of look-ahead as `instag bench live-lips` makes them. Speech frames: every 4th voiced
frame from 2 s on. Prints the mean trajectory around onsets per context, then per context the median over people
of (live mean − file mean) and of (live std / file std) over their speech frames.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from instag.audio import features as af
from instag.audio.silence import runs, silent_mask
from instag.avatar.bundle import load_avatar
from instag.bench.live_lips import live_lips
from instag.data.dataset import load_dataset
from instag.viewer.live import LiveFeatures

CONTEXTS = (0.5, 1.0, 2.0)
PRE, POST, MIN_SILENT = 3, 10, 8


def main(avatar: Path, datasets: list[Path]) -> None:
    torch.set_num_threads(1)
    av = load_avatar(avatar)
    fronts = {c: LiveFeatures(av, torch.device("cpu"), lookahead=2, context_s=c) for c in CONTEXTS}
    around: dict[float | str, list[np.ndarray]] = {c: [] for c in (*CONTEXTS, "file")}
    level: dict[float, list[float]] = {c: [] for c in CONTEXTS}
    spread: dict[float, list[float]] = {c: [] for c in CONTEXTS}
    for path in datasets:
        ds = load_dataset(path)
        audio, rate = ds.audio()
        whole = torch.from_numpy(np.array(ds.audio_features(av.meta["audio_feature"]), np.float32))
        n = min(ds.n_frames, len(whole))
        silent = silent_mask(af.energy_envelope(audio, rate, ds.fps, n))
        lead = int(2.0 * ds.fps) + 4
        onsets = [end for start, end in runs(silent)
                  if end - start >= MIN_SILENT and end + POST + 4 < n and end - PRE >= lead]
        speech = [k for k in range(lead, n - 6, 4)
                  if not silent[k] and max(f.context_end(k) for f in fronts.values()) < n]
        for frames, onset_frames in ((sorted({k for o in onsets for k in range(o - PRE, o + POST)}), True),
                                     (speech, False)):
            if len(frames) < (1 if onset_frames else 10):
                continue
            with torch.inference_mode():
                file_lips = av.motion.umf.clip_lips(whole, frames, av.cfg.audio)[1][:, 0].numpy()
            live = {c: live_lips(fronts[c], audio, frames)[:, 0] for c in CONTEXTS}
            if onset_frames:
                at = {k: i for i, k in enumerate(frames)}
                for o in onsets:
                    sel = [at[k] for k in range(o - PRE, o + POST)]
                    around["file"].append(file_lips[sel])
                    for c in CONTEXTS:
                        around[c].append(live[c][sel])
            else:
                for c in CONTEXTS:
                    level[c].append(float(live[c].mean() - file_lips.mean()))
                    spread[c].append(float(live[c].std() / file_lips.std()))
        print(f"{ds.path.name}: {len(onsets)} onsets, {len(speech)} speech frames", flush=True)
    print(f"{len(around['file'])} onsets; frames from the onset: {list(range(-PRE, POST))}")
    for key, rows in around.items():
        print(f"  {key}: {np.round(np.mean(rows, 0).astype(float), 3).tolist()}")
    for c in CONTEXTS:
        d = np.array(level[c])
        print(f"context {c} s, {len(d)} people: live − file level median {np.median(d):.3f} (below for {(d < 0).sum()}),"
              f" live / file spread median {np.median(spread[c]):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
