"""The live microphone mode's rest for want of a voice (`LiveFeatures.voiceless`'s rule: over the gate for
REST_AFTER_S, no voice through the look-ahead) at the clip's level, 20 and 40 dB under it, with the stream's detector
hearing the samples as they come (shipped) or scaled by the stream's running peak (not taken; at most 40 or 20 dB
up: MAX_BOOSTS_DB). The stream is fed 10 ms at a time, as the page sends it.

    python benchmarks/scripts/voice_level_live.py MUSIC_DIR SPEECH_WAV... -- CLIP...

First each CLIP's own sound: frames over the gate that rest (speech taken for nobody). Then each SPEECH_WAV's first
4 s, 6 s of each music of MUSIC_DIR as loud as the speech, its next 6 s: the share of the music's frames at rest.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from voice_rest_backward import gap_track, music_files

from instag.audio.live_context import LOOKAHEAD_FRAMES
from instag.audio.voice import VoiceStream
from instag.avatar.rest import REST_AFTER_S
from instag.media.audio import decode_audio
from instag.viewer.live import RATE, LiveStream, to_chunk

FPS = 25.0
REST = max(int(math.ceil(REST_AFTER_S * FPS)), 1)
MAX_BOOSTS_DB = (40.0, 20.0)
GAINS = (1.0, 0.1, 0.01)


class RunningPeakVoiceStream(VoiceStream):
    """The detector hearing each piece scaled by the largest sample heard so far (at most `max_boost_db` up)."""

    def __init__(self, keep: int, max_boost_db: float) -> None:
        super().__init__(keep)
        self.peak = 10 ** (-max_boost_db / 20)

    def push(self, samples: np.ndarray) -> None:
        self.peak = max(self.peak, float(np.abs(samples).max()) if len(samples) else 0.0)
        super().push(samples / self.peak)


def resting(audio: np.ndarray, max_boost_db: float | None) -> dict[int, bool]:
    """Per live frame, whether it rests for want of a voice (the detector hearing the stream as it comes, or by its
    running peak at most `max_boost_db` up)."""
    stream = LiveStream(FPS)
    if max_boost_db is not None:
        stream.voice = RunningPeakVoiceStream(stream.voice._voiced.maxlen, max_boost_db)
    out: dict[int, bool] = {}
    step, done = RATE // 100, 0
    for i in range(0, len(audio), step):
        stream.push(to_chunk(audio[i:i + step]), (i + step) / RATE)
        newest = stream.newest_frame() - LOOKAHEAD_FRAMES
        for k in range(done, newest + 1):
            out[k] = stream.loud_throughout(k, REST) and stream.voiceless(k + LOOKAHEAD_FRAMES, REST + LOOKAHEAD_FRAMES)
        done = max(done, newest + 1)
    return out


def main(music_dir: str, speech: list[str], clips: list[str]) -> None:
    arms = {"as it comes": None, **{f"running peak, <= {b:g} dB up": b for b in MAX_BOOSTS_DB}}
    cols = [(g, a) for g in GAINS for a in arms]
    head = " | ".join(f"{a}, {20 * math.log10(g):+.0f} dB" for g, a in cols)
    rested = {c: 0 for c in cols}
    for clip in clips:
        audio = decode_audio(Path(clip)).mono16k
        for g, a in cols:
            rested[g, a] += sum(resting(audio * g, arms[a]).values())
    print(f"| the {len(clips)} clips' sound | {head} |\n| --- |" + " --- |" * len(cols))
    print("| loud frames at rest | " + " | ".join(str(rested[c]) for c in cols) + " |")
    print(f"\n| speech, 6 s of music | {head} |\n| --- |" + " --- |" * len(cols))
    for path in speech:
        s = decode_audio(Path(path)).mono16k[: 10 * RATE]
        shares: dict[tuple[float, str], list[float]] = {c: [] for c in cols}
        for m in music_files(music_dir):
            track, i0, i1 = gap_track(s, m, 6.0)
            for g, a in cols:
                r = resting(track * g, arms[a])
                shares[g, a].append(float(np.mean([r[k] for k in range(i0, i1) if k in r])))
        print(f"| {Path(path).stem} | " + " | ".join(f"{np.mean(shares[c]):.2f}" for c in cols) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    cut = args.index("--")
    main(args[0], args[1:cut], args[cut + 1:])
