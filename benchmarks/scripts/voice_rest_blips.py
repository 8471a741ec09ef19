"""Would ignoring the voice detector's brief answers let a dub's lips rest through short music gaps? Over music the
forward pass's belief in a voice falls under the threshold within 0.2–0.5 s of the voice stopping, but lone chunks
over it keep coming, and each ends a quiet run before it is long enough to rest. Not taken:
`benchmarks/voice_activity_cpu.md`.

    python benchmarks/scripts/voice_rest_blips.py MUSIC_DIR SPEECH_WAV... -- CLIP...

A variant drops every run of at most k voiced chunks (each track heard at full scale, as shipped). First each
SPEECH_WAV's first 4 s, a gap of music (each file of MUSIC_DIR, as loud as the speech) and its next 6 s: the share
of the gap's frames at rest, and (in brackets) frames newly rested outside it. Then each CLIP's own sound, clean,
under `voice_rest_noisy.py`'s degradations and quieter: frames a variant rests that the shipped rule does not.
"""

from __future__ import annotations

import sys

import numpy as np
from voice_rest_backward import FPS, clip_sounds, counts_table, gap_table, rest

from instag.audio.silence import runs
from instag.audio.voice import RATE, VOICE_THRESHOLD, voice_probability

DROPPED = (1, 2, 3, 4, 6)  # chunks (32 ms each)
GAPS = (2.2, 2.6, 3.0, 4.0, 6.0)  # seconds
NAMES = ["as shipped", *(f"runs of <= {k} dropped" for k in DROPPED)]


def variants(x: np.ndarray) -> dict[str, np.ndarray]:
    """Voiced chunks [C] bool of `x` [N] at full scale: as shipped, and without runs of at most k voiced chunks."""
    peak = float(np.abs(x).max()) or 1.0
    voiced = voice_probability(np.ascontiguousarray(x / peak, np.float32)) > VOICE_THRESHOLD
    out = {NAMES[0]: voiced}
    for k, name in zip(DROPPED, NAMES[1:], strict=True):
        kept = voiced.copy()
        for start, end in runs(voiced):
            if end - start <= k:
                kept[start:end] = False
        out[name] = kept
    return out


def on_gaps(music_dir: str, speech: list[str]) -> None:
    gap_table(music_dir, speech, GAPS, lambda track: {name: rest(track, v) for name, v in variants(track).items()})


def on_clips(clips: list[str]) -> None:
    newly: dict[tuple[str, str], int] = {}
    frames = 0
    for cond, x in clip_sounds(clips, quieter=True):
        rests = {name: rest(x, v) for name, v in variants(x).items()}
        for name, r in rests.items():
            newly[cond, name] = newly.get((cond, name), 0) + int((r & ~rests[NAMES[0]]).sum())
        frames += int(len(x) / RATE * FPS) if cond == "clean" else 0
    counts_table(f"sound ({len(clips)} clips, {frames} frames)", newly, NAMES[1:])


if __name__ == "__main__":
    args = sys.argv[1:]
    cut = args.index("--")
    on_gaps(args[0], args[1:cut])
    on_clips(args[cut + 1:])
