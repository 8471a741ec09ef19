"""Does the level a track was recorded at decide where its lips rest? The voice detector on each track as recorded
and scaled to full scale first (its peak at 1, as `audio.voice.voiced_frames` now hears it).

    python benchmarks/scripts/voice_level.py MUSIC_DIR SPEECH_WAV... -- CLIP...

First each CLIP's own sound, clean, under `voice_rest_noisy.py`'s degradations and 20 or 40 dB quieter: frames at
rest (weight over 0.5) for want of a voice that loudness alone does not rest (speech taken for nobody). Then each
SPEECH_WAV's first 4 s, a gap of music (each file of MUSIC_DIR, as loud as the speech), its next 6 s, the whole
track as recorded, 20 or 40 dB quieter: the share of the gap's frames at rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from voice_rest_backward import FPS, clip_sounds, counts_table, gap_track, music_files, rest

from instag.audio.voice import RATE, VOICE_THRESHOLD, voice_probability
from instag.avatar.rest import silent_frames, weights_over
from instag.media.audio import decode_audio

HEARD = ("as recorded", "full scale")
GAPS = (2.6, 3.0, 4.0, 6.0)  # seconds
LEVELS = {"": 1.0, ", 20 dB quieter": 0.1, ", 40 dB quieter": 0.01}


def rests(x: np.ndarray) -> dict[str, np.ndarray]:
    """Frames [T] at rest with the detector hearing `x` [N] as recorded and at full scale."""
    peak = float(np.abs(x).max()) or 1.0
    return {h: rest(x, voice_probability(np.ascontiguousarray(v, np.float32)) > VOICE_THRESHOLD)
            for h, v in zip(HEARD, (x, x / peak), strict=True)}


def on_clips(clips: list[str]) -> None:
    newly: dict[tuple[str, str], int] = {}
    frames = 0
    for cond, x in clip_sounds(clips, quieter=True):
        n = int(len(x) / RATE * FPS)
        loud = weights_over(silent_frames(x, RATE, FPS, n), FPS) > 0.5
        for heard, r in rests(x).items():
            newly[cond, heard] = newly.get((cond, heard), 0) + int((r & ~loud).sum())
        frames += n if cond == "clean" else 0
    counts_table(f"the {len(clips)} clips' sound ({frames} frames)", newly, list(HEARD))


def on_gaps(music_dir: str, speech: list[str]) -> None:
    cols = [f"{h}{lv}" for lv in LEVELS for h in HEARD]
    print("| speech | gap | " + " | ".join(cols) + " |")
    print("| --- | --- |" + " --- |" * len(cols))
    for path in speech:
        s = decode_audio(Path(path)).mono16k[: 10 * RATE]
        for gap in GAPS:
            rested: dict[str, list[float]] = {}
            for m in music_files(music_dir):
                track, i0, i1 = gap_track(s, m, gap)
                for lv, gain in LEVELS.items():
                    for heard, r in rests((track * gain).astype(np.float32)).items():
                        rested.setdefault(f"{heard}{lv}", []).append(float(r[i0:i1].mean()))
            print(f"| {Path(path).stem} | {gap:g} s | " + " | ".join(f"{np.mean(rested[c]):.2f}" for c in cols) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    cut = args.index("--")
    on_clips(args[cut + 1:])
    on_gaps(args[0], args[1:cut])
