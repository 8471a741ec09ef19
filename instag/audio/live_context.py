"""Which sound a live frame's features hear. The preview's microphone mode cannot wait for the whole recording: it
computes frame k's features from the CONTEXT_S seconds that end with its look-ahead, encoded alone (Whisper's
short-context mode). Those features differ from a whole file's, so the UMF fits a second lip read-out on them
(`motion.audio.LipReadout`, `train.lips.fit_live_readout`). The preview (`viewer.live`) and that fit both take the
context from here, so the read-out is fitted on what the preview computes.

Frame k covers samples [k · R / fps, (k + 1) · R / fps) (R = 16 kHz). Its context is `n_frames` frames that end
with frame `context_end(k)`; its audio windows are taken from them (`motion.audio.frame_audio_windows`) at index
n_frames − 1 − (context_end(k) − k). Module level imports nothing heavy: the CLI takes its defaults from here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from instag.media.audio import FEATURE_RATE as RATE

CONTEXT_S = 1.0  # seconds of audio the features of a frame are computed from
# Frames of microphone sound heard after a live frame before it is drawn: the audio nets were trained seeing them.
# 2 (80 ms at 25 fps) closes more than half the gap between live lips and a dub's; more adds little and costs latency
# (`instag bench live-lips`, benchmarks/preview_live_cpu.md).
LOOKAHEAD_FRAMES = 2
# On a CPU, neighbouring live frames that share one pass of the feature model: their context ends with the
# look-ahead of the last of them, so the others hear up to CPU_FEATURE_HOP − 1 frames more of what follows them and
# wait as long for it. There a Whisper pass costs about what rendering the frame does; sharing it lifts the frame
# rate past 20 frames/s for about 30–40 ms of latency (benchmarks/preview_live_cpu.md). Elsewhere each frame has
# its own.
CPU_FEATURE_HOP = 2


def frame_end(k: int, fps: float) -> int:
    """The sample where frame k ends (counted from the start of the stream or clip)."""
    return int(round((k + 1) * RATE / fps))


def context_frames(fps: float, smooth_window: int, lookahead: int, hop: int, context_s: float = CONTEXT_S) -> int:
    """How many frames a context holds: `context_s` seconds, and at least what one frame's windows read."""
    return max(int(round(context_s * fps)), smooth_window + lookahead + hop - 1)


def context_end(k: int, lookahead: int, hop: int) -> int:
    """The last frame of frame k's context: the end of its look-ahead, rounded up to a multiple of the hop (so
    `hop` neighbouring frames share it)."""
    return -(-(k + lookahead) // hop) * hop


def context_span(kind: str, last: int, n_frames: int, fps: float) -> tuple[int, int, float]:
    """The audio of the context of `n_frames` frames that ends with frame `last`: (end sample, sample count,
    seconds from the first sample to the context's frame 0). Whisper makes one state per 320 samples from the start
    of what it is given, so for it the count is a whole number of them, ending where the context ends."""
    end = frame_end(last, fps)
    frame_start = int(round((last - n_frames + 1) * RATE / fps))
    n = end - frame_start
    if kind == "whisper":
        from instag.audio.whisper import TOKEN_SAMPLES

        n = math.ceil(n / TOKEN_SAMPLES) * TOKEN_SAMPLES
    return end, n, (frame_start - (end - n)) / RATE


def context_features(kind: str, front: Any, audio: np.ndarray, fps: float, n_frames: int, start_s: float,
                     n_mels: int) -> np.ndarray:
    """Features [n_frames, K, D] of a context's `audio` [N] (`context_span`), frame 0 starting `start_s` after it;
    `front` from `audio.features.load_front_end`."""
    from instag.audio import features as af

    if kind == "whisper":
        return af.whisper_recent_features(front, audio, fps, n_frames, start_s)
    return af.compute_features(kind, front, audio, fps, n_frames, n_mels=n_mels)


def clip_window(audio: np.ndarray, end: int, n: int) -> np.ndarray:
    """Samples [n] of a clip's `audio` [N] over [end − n, end), zeros where that lies outside the clip (as a live
    stream reads zeros before its start)."""
    out = np.zeros(n, np.float32)
    lo, hi = max(end - n, 0), min(end, len(audio))
    if hi > lo:
        out[lo - (end - n):hi - (end - n)] = audio[lo:hi]
    return out
