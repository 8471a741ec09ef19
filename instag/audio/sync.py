"""Sound-to-picture offset of a recording: the lag at which a mouth opening predicted from the sound follows the
tracked one best, and the audio shifted to remove it.

Why: recordings reach us with the sound some tens of milliseconds off the picture (encoder delay, editing). A model
that reads the mouth from the sound then sees the mouth a few frames early or late on that clip: on KatieHill the
UMF's predicted opening follows her tracked one with r 0.25 on the held-out frames as recorded and 0.39 with the
sound taken two frames later (0.34 three frames later, which her first 5 s pick; benchmarks/umf_ablation_notes.md).

Where: offsets a viewer would not notice (the broadcast detectability window, ITU-R BT.1359: sound up to 125 ms
after the picture, 45 ms before it) are taken on the best correlation, so a noisy estimate on a clip whose sound is
in sync moves it by no more than that. Edited clips can be further off (5 of the 32 third-party clips of
../shared, up to 240 ms): lags out to SEARCH_MAX_S are searched too, and one is taken only where it is a peak (not
the edge of the search), beats the window's best by OUTSIDE_MARGIN and stands OUTSIDE_Z standard errors above zero.
The standard errors count what a clip's smooth series are worth as independent pairs (`stats.effective_count`,
about a third of the frames), so chance correlations of a mouth that does not follow the sound are not taken for
an offset (benchmarks/audio_sync_cpu.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from instag.stats import correlation, effective_count

SOUND_LATE_MAX_S = 0.125
SOUND_EARLY_MAX_S = 0.045
# Beyond half a second the offset is plain to anyone, and a 5 s clip leaves few frames to compare at such a lag.
SEARCH_MAX_S = 0.5
OUTSIDE_MARGIN = 0.1  # correlation a lag outside the detectability window must gain over the best inside it
OUTSIDE_Z = 3.0  # and its standard errors over zero: a move noticeable to a viewer needs strong evidence


def is_evidence(r: float, n: float) -> bool:
    """Whether a correlation r over n independent pairs says anything: above 2/√n, about the 95 % level (lenient
    where n counts neighbouring frames, which are not independent: the sync passes `stats.effective_count`). Below
    it a clip's sound tells nothing about its mouth, and neither its offset nor the opening's scale is read off it:
    the synthetic demo speech gives r ≤ 0.08 over 150 frames."""
    return n > 0 and r > 2.0 / math.sqrt(n)


@dataclass(frozen=True)
class SyncEstimate:
    lag_frames: int  # > 0: the sound is that many frames late (the picture at t goes with the sound at t + lag)
    correlations: dict[int, float]  # searched lag → Pearson r of tracked and predicted opening at that lag
    effective_frames: float  # what the compared frames are worth as independent pairs (`stats.effective_count`)

    def offset_s(self, fps: float) -> float:
        return self.lag_frames / fps


def candidate_lags(fps: float) -> list[int]:
    """Whole-frame lags inside the detectability window at `fps` (−1 … +3 at 25 fps)."""
    return list(range(-math.floor(SOUND_EARLY_MAX_S * fps + 1e-9), math.floor(SOUND_LATE_MAX_S * fps + 1e-9) + 1))


def search_lags(fps: float) -> list[int]:
    """Every whole-frame lag searched at `fps`, up to SEARCH_MAX_S either way (−12 … +12 at 25 fps)."""
    m = math.floor(SEARCH_MAX_S * fps + 1e-9)
    return list(range(-m, m + 1))


def pick_lag(correlations: dict[int, float], fps: float, effective_frames: float) -> int:
    """The offset read off the correlation at each searched lag, over frames worth `effective_frames` independent
    pairs: the best inside the detectability window, 0 when that is no evidence (`is_evidence`); a peak outside the
    window instead where it is short of the search's edge, beats the window's best by OUTSIDE_MARGIN and stands
    OUTSIDE_Z standard errors (1/√effective_frames) above zero."""
    window = [k for k in candidate_lags(fps) if k in correlations]
    best = max(window, key=lambda k: (correlations[k], k == 0))  # ties go to "in sync"
    outside = [k for k in correlations if k not in window]
    if outside:
        far = max(outside, key=lambda k: correlations[k])
        r = correlations[far]
        if (far not in (min(correlations), max(correlations)) and r >= correlations[best] + OUTSIDE_MARGIN
                and r > OUTSIDE_Z / math.sqrt(effective_frames)):
            return far
    return best if is_evidence(correlations[best], effective_frames) else 0


def estimate_lag(
    predicted: np.ndarray,  # [T] mouth opening predicted from the sound at each frame
    tracked: np.ndarray,  # [T] mouth opening tracked in the picture
    frames: np.ndarray,  # [F] the frames to compare (the training split: no held-out frame may steer it)
    fps: float,
) -> SyncEstimate:
    """The offset `pick_lag` reads off the correlation at every searched lag (`search_lags`)."""
    if predicted.shape != tracked.shape or predicted.ndim != 1:
        raise ValueError(f"predicted {predicted.shape} and tracked {tracked.shape} must be the same [T]")
    t = len(predicted)
    corr: dict[int, float] = {}
    for lag in search_lags(fps):
        idx = frames[(frames + lag >= 0) & (frames + lag < t)]
        corr[lag] = correlation(tracked[idx], predicted[idx + lag]) or 0.0  # None: a constant series
    n_eff = effective_count(tracked[frames], predicted[frames])
    return SyncEstimate(pick_lag(corr, fps, n_eff), corr, n_eff)


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
