"""`instag bench dub AVATAR DATASET --audio F…`: does a dub move the mouth like the person does?

For each audio the avatar is driven as `instag render` drives it; the face tracker reads the rendered mouth
opening (inner-lip gap over the eye-corner distance, as `instag eval`). Against the person's own clip (the dataset
the avatar was adapted on, its tracked opening) it reports:
- spread: the rendered opening's standard deviation over the person's (1: as wide as they open it);
- silence: the rendered opening in the audio's silences (frames whose speech-band energy is more than
  SILENCE_DB below the file's loudest), against the person's closed level (their 10th percentile) and their
  range (90th - 10th percentile): 0 is shut, 1 is open as wide as they usually talk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instag.bench.record import header
from instag.media.audio import FEATURE_RATE

SILENCE_DB = 35.0  # below the file's loudest speech-band frame: a pause, not a quiet syllable
MIN_SILENT_RUN = 5  # frames (0.2 s at 25 fps): a pause, not a stop consonant


def silent_frames(energy_db: np.ndarray, silence_db: float = SILENCE_DB, min_run: int = MIN_SILENT_RUN) -> np.ndarray:
    """Frames [T] bool inside runs of at least `min_run` frames whose energy (dB [T]) is `silence_db` below the
    loudest, shrunk by 2 frames at each end (the mouth closes and opens around a pause)."""
    quiet = energy_db < energy_db.max() - silence_db
    out = np.zeros_like(quiet)
    t = 0
    while t < len(quiet):
        if quiet[t]:
            end = t
            while end < len(quiet) and quiet[end]:
                end += 1
            if end - t >= min_run:
                out[t + 2 : end - 2] = True
            t = end
        else:
            t += 1
    return out


def rendered_openings(avatar, audio: np.ndarray) -> tuple[np.ndarray, int]:
    """The tracked opening [T] of each rendered frame of a dub of 16 kHz `audio` (NaN where no face is found)."""
    from instag.avatar.driving import Driver, audio_features, frame_count, to_uint8
    from instag.data import facemesh as fm
    from instag.eval.runner import mouth_opening

    n = frame_count(len(audio) / FEATURE_RATE, float(avatar.meta["fps"]))
    driver = Driver(avatar, audio_features(avatar, audio, n))
    tracker = fm.FaceTracker()
    out = np.full(n, np.nan)
    try:
        with torch.no_grad():
            for frame in driver:
                img = to_uint8(avatar.render(frame.cond).image)
                lm = tracker.track(img, (img.shape[1] / 2, img.shape[0] / 2))
                if lm is not None:
                    out[frame.index] = mouth_opening(lm[:, :2])
    finally:
        tracker.close()
    return out, n


def run(avatar_path: Path, dataset: Path, audios: list[Path], max_seconds: float | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from instag.audio.features import energy_envelope
    from instag.avatar.bundle import load_avatar
    from instag.data.dataset import load_dataset
    from instag.media.audio import decode_audio

    av = load_avatar(avatar_path)
    ds = load_dataset(dataset)
    own = ds.tracks["mouth_open"].astype(np.float64)
    closed, wide = np.percentile(own, 10), np.percentile(own, 90)
    rows = []
    for path in audios:
        audio = decode_audio(path).mono16k
        if max_seconds is not None:
            audio = audio[: int(max_seconds * FEATURE_RATE)]
        opening, n = rendered_openings(av, audio)
        energy = energy_envelope(audio, FEATURE_RATE, float(av.meta["fps"]), n)
        silent = silent_frames(energy) & np.isfinite(opening)
        ok = np.isfinite(opening)
        row = {"audio": Path(path).name, "seconds": round(len(audio) / FEATURE_RATE, 2), "frames": n,
               "tracked_frames": int(ok.sum()),
               "spread": round(float(np.nanstd(opening) / own.std()), 3),
               "mean_ratio": round(float(np.nanmean(opening) / own.mean()), 3),
               "silent_frames": int(silent.sum()),
               "silence_openness": (round(float((np.median(opening[silent]) - closed) / (wide - closed)), 3)
                                    if silent.any() else None),
               "speech_openness": round(float((np.nanmedian(opening[ok & ~silent]) - closed) / (wide - closed)), 3)}
        rows.append(row)
        if progress:
            progress(", ".join(f"{k} {v}" for k, v in row.items()))
    doc = header("dub")
    doc.update({"avatar": str(avatar_path), "dataset": str(dataset), "own_opening_std": round(float(own.std()), 4),
                "own_closed_p10": round(float(closed), 4), "own_open_p90": round(float(wide), 4),
                "silence_db": SILENCE_DB, "files": rows})
    return doc
