"""The lips at rest through long silences.

Between phrases people keep the lips about as parted as in speech (they breathe in through the mouth): over the 32
clips of the corpus and the real clips, in pauses of 0.2 s up to the longest, 1.5 s, the median person sits half-way
up their own opening range (`benchmarks/dub_cpu.md`), and the audio → lip predictor already follows that. A silence
longer than any of those pauses is not a breath between phrases but nobody speaking (a dub's lead-in and tail, the
gaps of a synthesised track, the preview's idle loop), where the lips rest shut. There the lip condition eases to
the person's own most-closed shape, and back to the prediction just before the voice returns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from instag.audio.features import energy_envelope
from instag.audio.silence import runs, silent_mask
from instag.audio.voice import voiced_frames
from instag.avatar.bundle import Avatar
from instag.data.pose import lip_coefficients, lip_standardisation

REST_AFTER_S = 1.6  # silences at least this long rest the lips: longer than every pause measured in speech
REST_EASE_S = 0.3  # the lips close (and open) over this long
REST_ANTICIPATE_S = 0.1  # the lips are back on the prediction this long before the voice returns
REST_PERCENTILE = 5.0  # the rest opening: this percentile of the person's tracked opening over the training frames
# A track whose lips rest through at least this share of its sound gets a note (`resting_note`): speech rests through
# none of its own, music alone through 0.64–1.00 of it, a synthesised sung voice 0.88–0.94
# (`benchmarks/voice_activity_cpu.md`).
RESTING_NOTE_SHARE = 0.5


def silent_frames(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """[n_frames] bool: video frames of mono `audio` [N] that are silent by loudness (`silence.silent_mask`)."""
    return silent_mask(energy_envelope(audio if audio.size else np.zeros(1, np.float32), sample_rate, fps, n_frames))


def quiet_frames(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int,
                 without_voice: bool = True, silent: np.ndarray | None = None) -> np.ndarray:
    """[n_frames] bool: video frames of mono `audio` [N] in which nobody speaks: silent (`silent_frames`, unless
    given) or, with `without_voice`, holding no voice (`voice.voiced_frames`: music, a room's noise, a track's sound
    effects; off for a song, whose singing the detector may not take for a voice)."""
    silent = silent_frames(audio, sample_rate, fps, n_frames) if silent is None else silent
    return silent | ~voiced_frames(audio, sample_rate, fps, n_frames) if without_voice else silent


def rest_weights(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int,
                 without_voice: bool = True) -> np.ndarray:
    """Per video frame [n_frames], how far the lips are at rest (0: as predicted, 1: the rest shape) for mono
    `audio` [N]: through every run of `quiet_frames` at least REST_AFTER_S long. A quiet run that opens or closes
    the track rests from or to its edge; a quiet track, throughout."""
    if n_frames == 0:
        return np.zeros(0, np.float32)
    return weights_over(quiet_frames(audio, sample_rate, fps, n_frames, without_voice), fps)


def resting_share(weights: np.ndarray, silent: np.ndarray) -> float:
    """The share of a track's frames that hold sound (not `silent` [T] by loudness) in which the lips rest (rest
    `weights` [T] of at least a half): near 1 where the voice detector hears nobody in the track at all."""
    sound = ~silent
    return float((weights[sound] >= 0.5).mean()) if sound.any() else 0.0


def weights_over(quiet: np.ndarray, fps: float) -> np.ndarray:
    """The rest weights [T] of the quiet frames `quiet` [T] bool (`rest_weights`)."""
    n_frames = len(quiet)
    weights = np.zeros(n_frames, np.float32)
    ease = max(REST_EASE_S * fps, 1.0)
    lead = REST_ANTICIPATE_S * fps
    for start, end in runs(quiet):
        if end - start < REST_AFTER_S * fps and (start, end) != (0, n_frames):  # a quiet track rests throughout
            continue
        t = np.arange(start, end, dtype=np.float32)
        closing = np.ones_like(t) if start == 0 else (t - start + 1) / ease
        opening = np.ones_like(t) if end == n_frames else (end - lead - t) / ease
        weights[start:end] = np.clip(np.minimum(closing, opening), 0.0, 1.0)
    return weights


def rest_lip_shape(drive: dict[str, np.ndarray], lip_coeffs: tuple[str, ...]) -> Tensor:
    """The lip shape [C] at rest, in the units the avatar's lip condition is standardised to (over its training
    frames, which `drive` replays): the opening at its REST_PERCENTILE, every other coefficient at its mean."""
    lips = lip_coefficients(drive, lip_coeffs)  # [F, C]
    mean, std = lip_standardisation(lips, np.arange(len(lips)))
    rest = np.zeros(len(lip_coeffs), np.float32)
    if "mouth_open" in lip_coeffs:
        c = lip_coeffs.index("mouth_open")
        rest[c] = (np.percentile(lips[:, c], REST_PERCENTILE) - mean[c]) / std[c]
    return torch.from_numpy(rest)


class LipRest:
    """An avatar's lips through one track's long silences: frame i's lip shape eased toward the rest shape by the
    track's rest weight (`rest_weights`)."""

    def __init__(self, avatar: Avatar, weights: np.ndarray, silent: np.ndarray, device: torch.device | str = "cpu",
                 without_voice: bool = True) -> None:
        self.motion = avatar.motion
        self.weights = weights  # [T]
        self.silent = silent  # [T] bool: the track's frames silent by loudness
        self.without_voice = without_voice  # they rest where no voice is heard too (`quiet_frames`)
        self.shape = rest_lip_shape(avatar.drive, tuple(avatar.cfg.lip_coeffs)).to(device)  # [C]

    def lips(self, i: int, windows: Tensor) -> Tensor | None:
        """Frame i's lip shape [C] from its audio windows [S, W, D]; None (the motion predicts it) outside rests."""
        w = float(self.weights[i]) if 0 <= i < len(self.weights) else 0.0
        if w <= 0.0:
            return None
        if w >= 1.0:  # all rest: the prediction would be weighted by 0
            return self.shape
        with torch.no_grad():
            predicted = self.motion.predicted_lips(self.motion.umf.audio_codes(windows[None]), windows[None])[0]
        return (1.0 - w) * predicted + w * self.shape


def lip_rest(avatar: Avatar, audio: np.ndarray, sample_rate: int, n_frames: int,
             device: torch.device | str = "cpu", without_voice: bool = True) -> LipRest | None:
    """The LipRest of mono `audio` [N] over `n_frames` video frames (`without_voice`: as `quiet_frames`); None for
    an avatar whose motion has no lip condition to rest."""
    if not avatar.cfg.articulation:
        return None
    fps = float(avatar.meta["fps"])
    silent = silent_frames(audio, sample_rate, fps, n_frames)
    weights = weights_over(quiet_frames(audio, sample_rate, fps, n_frames, without_voice, silent), fps)
    return LipRest(avatar, weights, silent, device, without_voice)


def resting_note(rest: LipRest | None) -> str:
    """What a user should know of a track whose lips rest (`rest`) through at least RESTING_NOTE_SHARE of its sound
    for want of a voice: a song's singing can read as nobody speaking. "" otherwise (and where only silence rests
    them)."""
    if rest is None or not rest.without_voice:
        return ""
    share = resting_share(rest.weights, rest.silent)
    if share < RESTING_NOTE_SHARE:
        return ""
    return f"the lips rest through {share:.0%} of its sound: no voice heard there (music?); for a song, --no-voice-rest"
