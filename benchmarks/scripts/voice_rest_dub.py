"""A dub with music between two lines, rendered by an avatar and read by the face tracker, with the lips resting by
loudness alone (before) and by loudness or no voice (now, `avatar.rest.quiet_frames`).

    python benchmarks/scripts/voice_rest_dub.py AVATAR SPEECH_WAV MUSIC...

The track: SPEECH_WAV's 2–7 s, 6 s of the music (as loud as the speech), its 7–12 s. Prints, per music, the rendered
opening over the music's 6.0–10.5 s on the person's own scale (0 and 1: the 10th and 90th percentiles of the dub's
speech frames before), median / 90th percentile / standard deviation, before and now; and the largest change of
the opening over the speech frames (the tracker follows frames, so what it saw during the music moves it a little).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from instag.avatar.bundle import load_avatar
from instag.bench.dub import rendered_openings
from instag.media.audio import decode_audio

RATE = 16000
FPS = 25


def main(avatar_path: str, speech_wav: str, *music_files: str) -> None:
    speech = decode_audio(Path(speech_wav)).mono16k
    s1, s2 = speech[2 * RATE:7 * RATE], speech[7 * RATE:12 * RATE]
    avatar = load_avatar(Path(avatar_path))
    speech_part = np.r_[int(0.5 * FPS):int(4.5 * FPS), int(11.5 * FPS):int(15.5 * FPS)]
    music_part = slice(int(6 * FPS), int(10.5 * FPS))
    for path in music_files:
        music = decode_audio(Path(path)).mono16k
        music = np.tile(music, int(np.ceil(6 * RATE / len(music))))[:6 * RATE]
        track = np.concatenate([s1, music * np.std(s1) / np.std(music), s2]).astype(np.float32)
        now, _ = rendered_openings(avatar, track)
        before, _ = rendered_openings(avatar, track, rest_without_voice=False)  # loudness alone, as before
        lo, hi = np.nanpercentile(before[speech_part], [10, 90])
        a, b = (before[music_part] - lo) / (hi - lo), (now[music_part] - lo) / (hi - lo)
        print(f"{Path(avatar_path).name} {Path(path).name}: over the music, before "
              f"{np.nanmedian(a):.2f} / {np.nanpercentile(a, 90):.2f} / {np.nanstd(a):.2f}, now "
              f"{np.nanmedian(b):.2f} / {np.nanpercentile(b, 90):.2f} / {np.nanstd(b):.2f}; over the speech, the "
              f"opening changed by at most {np.nanmax(np.abs(now[speech_part] - before[speech_part])):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
