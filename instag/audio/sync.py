"""Sound-to-picture offset of a recording: the lag at which a mouth opening predicted from the sound follows the
tracked one best, searched only over offsets a viewer would not notice, and the audio shifted to remove it.

Why: recordings reach us with the sound some tens of milliseconds off the picture (encoder delay, editing). A model
that reads the mouth from the sound then sees the mouth a few frames early or late on that clip: on KatieHill the
UMF's predicted opening follows her tracked one with r 0.25 on the held-out frames as recorded and 0.39 with the
sound taken two frames later (0.34 three frames later, which her first 5 s pick; benchmarks/umf_ablation_notes.md).
The search is limited to the broadcast detectability window (ITU-R BT.1359: sound up to 125 ms after the picture,
45 ms before it), so a noisy estimate on a clip whose sound is in sync can move it by no more than that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from instag.stats import correlation

SOUND_LATE_MAX_S = 0.125
SOUND_EARLY_MAX_S = 0.045


def is_evidence(r: float, n: int) -> bool:
    """Whether a correlation r over n frames says anything: above 2/√n, about the 95 % level for n independent
    frames (lenient, as neighbouring frames are not independent). Below it a clip's sound tells nothing about its
    mouth, and neither its offset nor the opening's scale is read off it: the synthetic demo speech gives r ≤ 0.08
    over 150 frames."""
    return n > 0 and r > 2.0 / math.sqrt(n)


@dataclass(frozen=True)
class SyncEstimate:
    lag_frames: int  # > 0: the sound is that many frames late (the picture at t goes with the sound at t + lag)
    correlations: dict[int, float]  # candidate lag → Pearson r of tracked and predicted opening at that lag

    def offset_s(self, fps: float) -> float:
        return self.lag_frames / fps


def candidate_lags(fps: float) -> list[int]:
    """Whole-frame lags inside the detectability window at `fps` (−1 … +3 at 25 fps)."""
    return list(range(-math.floor(SOUND_EARLY_MAX_S * fps + 1e-9), math.floor(SOUND_LATE_MAX_S * fps + 1e-9) + 1))


def estimate_lag(
    predicted: np.ndarray,  # [T] mouth opening predicted from the sound at each frame
    tracked: np.ndarray,  # [T] mouth opening tracked in the picture
    frames: np.ndarray,  # [F] the frames to compare (the training split: no held-out frame may steer it)
    fps: float,
) -> SyncEstimate:
    """The candidate lag with the highest correlation; 0 when that correlation is no evidence (`is_evidence`)."""
    if predicted.shape != tracked.shape or predicted.ndim != 1:
        raise ValueError(f"predicted {predicted.shape} and tracked {tracked.shape} must be the same [T]")
    t = len(predicted)
    corr: dict[int, float] = {}
    for lag in candidate_lags(fps):
        idx = frames[(frames + lag >= 0) & (frames + lag < t)]
        corr[lag] = correlation(tracked[idx], predicted[idx + lag]) or 0.0  # None: a constant series
    best = max(corr, key=lambda k: (corr[k], k == 0))  # ties go to "in sync"
    return SyncEstimate(best if is_evidence(corr[best], len(frames)) else 0, corr)


def shift_audio(
    audio: np.ndarray,  # [N] samples
    sample_rate: int,
    lag_frames: int,  # > 0: the sound is late, so it is moved earlier
    fps: float,
) -> np.ndarray:
    """`audio` moved by `lag_frames` video frames, same length, silence where it runs out → [N]."""
    n = int(round(lag_frames * sample_rate / fps))
    out = np.zeros_like(audio)
    if abs(n) >= len(audio):
        return out
    if n >= 0:
        out[: len(audio) - n] = audio[n:]
    else:
        out[-n:] = audio[: len(audio) + n]
    return out
