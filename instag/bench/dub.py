"""`instag bench dub AVATAR DATASET --audio F…`: does a dub move the mouth like the person does?

For each audio the avatar is driven as `instag render` drives it; the face tracker reads the rendered mouth
opening (inner-lip gap over the eye-corner distance, as `instag eval`). Against the person's own clip (the dataset
the avatar was adapted on, its tracked opening) it reports:
- spread: the rendered opening's standard deviation over the person's (1: as wide as they open it);
- pause and silence: the rendered opening in the audio's quiet runs (frames whose speech-band energy is SILENCE_DB
  below the file's loudest, `audio.silence`): pauses between phrases (0.2 s up to `avatar.rest.REST_AFTER_S`), where
  people keep the lips about as parted as in speech, and silences (longer), where the lips should rest shut; each
  against the person's closed level (their 10th percentile) and their range (90th - 10th percentile): 0 is shut, 1
  is open as wide as they usually talk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instag.audio.silence import SILENCE_DB, runs, silent_mask
from instag.bench.record import header
from instag.media.audio import FEATURE_RATE

MIN_SILENT_RUN = 5  # frames (0.2 s at 25 fps): a pause, not a stop consonant


def silent_frames(energy_db: np.ndarray, silence_db: float = SILENCE_DB, min_run: int = MIN_SILENT_RUN,
                  max_run: int | None = None) -> np.ndarray:
    """Frames [T] bool inside runs of at least `min_run` (and fewer than `max_run`) silent frames
    (`silence.silent_mask`, energy dB [T]), shrunk by 2 frames at each end (the mouth closes and opens around a
    pause)."""
    out = np.zeros(len(energy_db), bool)
    for start, end in runs(silent_mask(energy_db, silence_db)):
        if min_run <= end - start and (max_run is None or end - start < max_run):
            out[start + 2 : end - 2] = True
    return out


def rendered_openings(avatar, audio: np.ndarray, rest_without_voice: bool = True) -> tuple[np.ndarray, int]:
    """The tracked opening [T] of each rendered frame of a dub of 16 kHz `audio` (NaN where no face is found;
    `rest_without_voice` as `audio_driver`'s)."""
    from instag.avatar.driving import audio_driver, frame_count, to_uint8
    from instag.data import facemesh as fm
    from instag.eval.runner import mouth_opening

    n = frame_count(len(audio) / FEATURE_RATE, float(avatar.meta["fps"]))
    driver = audio_driver(avatar, audio, n, rest_without_voice=rest_without_voice)
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
    from instag.avatar.rest import REST_AFTER_S
    from instag.data.dataset import load_dataset
    from instag.media.audio import decode_audio

    av = load_avatar(avatar_path)
    ds = load_dataset(dataset)
    own = ds.tracks["mouth_open"].astype(np.float64)
    closed, wide = np.percentile(own, 10), np.percentile(own, 90)
    long_run = int(np.ceil(REST_AFTER_S * float(av.meta["fps"])))  # a silence, where the lips rest; shorter: a pause

    def openness(frames: np.ndarray) -> float | None:
        """Median rendered opening over `frames` [T] bool on the person's scale (0: closed, 1: wide)."""
        return round(float((np.median(opening[frames]) - closed) / (wide - closed)), 3) if frames.any() else None

    rows = []
    for path in audios:
        audio = decode_audio(path).mono16k
        if max_seconds is not None:
            audio = audio[: int(max_seconds * FEATURE_RATE)]
        opening, n = rendered_openings(av, audio)
        energy = energy_envelope(audio, FEATURE_RATE, float(av.meta["fps"]), n)
        ok = np.isfinite(opening)
        pause = silent_frames(energy, max_run=long_run) & ok
        silent = silent_frames(energy, min_run=long_run) & ok
        row = {"audio": Path(path).name, "seconds": round(len(audio) / FEATURE_RATE, 2), "frames": n,
               "tracked_frames": int(ok.sum()),
               "spread": round(float(np.nanstd(opening) / own.std()), 3),
               "mean_ratio": round(float(np.nanmean(opening) / own.mean()), 3),
               "pause_frames": int(pause.sum()), "pause_openness": openness(pause),
               "silent_frames": int(silent.sum()), "silence_openness": openness(silent),
               "speech_openness": openness(ok & ~pause & ~silent)}
        rows.append(row)
        if progress:
            progress(", ".join(f"{k} {v}" for k, v in row.items()))
    doc = header("dub")
    doc.update({"avatar": str(avatar_path), "dataset": str(dataset), "own_opening_std": round(float(own.std()), 4),
                "own_closed_p10": round(float(closed), 4), "own_open_p90": round(float(wide), 4),
                "silence_db": SILENCE_DB, "silence_min_s": REST_AFTER_S, "files": rows})
    return doc
