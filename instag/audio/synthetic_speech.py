"""Speech-like audio made from code alone: a glottal pulse train through three formant resonators.

An utterance is phrases of syllables separated by pauses. Each syllable is a vowel (its formants and how far it
opens the mouth) under a raised-cosine amplitude envelope, so the loudness rises and falls at a syllable rate of
about 4-5 Hz, as in speech. The pitch follows a slow contour with a fall over each phrase (declination); short
noise bursts stand in for fricative onsets. Nothing is downloaded and no speech model is used.

The amplitude envelope is returned with the samples: it is what drives the sample clip's jaw, and what the mouth
opening of an avatar trained on that clip should follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

SAMPLE_RATE = 16000
BLOCK_S = 0.005  # formant filters are updated every 5 ms
FORMANT_BANDWIDTHS = (80.0, 100.0, 140.0)
# vowel: (F1, F2, F3) in Hz and how far it opens the mouth (0..1)
VOWELS: dict[str, tuple[tuple[float, float, float], float]] = {
    "a": ((800.0, 1300.0, 2600.0), 1.0),
    "o": ((550.0, 900.0, 2500.0), 0.8),
    "e": ((500.0, 1900.0, 2600.0), 0.7),
    "@": ((550.0, 1500.0, 2500.0), 0.6),
    "i": ((320.0, 2300.0, 3000.0), 0.45),
    "u": ((350.0, 800.0, 2300.0), 0.45),
}


@dataclass(frozen=True)
class VoiceStyle:
    """How an utterance sounds: pitch, speaking rate and phrasing."""

    f0_hz: float  # mean pitch
    syllable_s: tuple[float, float]  # syllable duration range
    phrase_syllables: tuple[int, int]  # syllables per phrase (inclusive range)
    pause_s: tuple[float, float]  # pause between phrases
    pitch_swing: float = 0.12  # relative depth of the slow pitch contour


# The sample clip's voice (the astronaut) and a different one for the dubbing line.
SAMPLE_VOICE = VoiceStyle(f0_hz=195.0, syllable_s=(0.17, 0.30), phrase_syllables=(4, 7), pause_s=(0.25, 0.45))
DUB_VOICE = VoiceStyle(f0_hz=125.0, syllable_s=(0.13, 0.22), phrase_syllables=(5, 10), pause_s=(0.18, 0.35),
                       pitch_swing=0.2)


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # [N] float32 in [-1, 1]
    envelope: np.ndarray  # [N] float32 in [0, 1]: the voiced amplitude envelope (0 in pauses)
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def frame_envelope(self, fps: float, n_frames: int) -> np.ndarray:
        """Envelope [n_frames] averaged over one frame period centred on each frame instant k / fps."""
        half = 0.5 / fps
        out = np.zeros(n_frames, np.float32)
        for k in range(n_frames):
            a = max(0, int(round((k / fps - half) * self.sample_rate)))
            b = min(len(self.envelope), int(round((k / fps + half) * self.sample_rate)))
            out[k] = self.envelope[a:b].mean() if b > a else 0.0
        return out


def _syllable_plan(rng: np.random.Generator, duration_s: float, style: VoiceStyle):
    """[(start_s, length_s, vowel, loudness, phrase_start_s, phrase_end_s)], starting after a short lead-in."""
    plan = []
    t = 0.3
    while True:
        n = int(rng.integers(style.phrase_syllables[0], style.phrase_syllables[1] + 1))
        lengths = rng.uniform(*style.syllable_s, size=n)
        if t + lengths.sum() > duration_s - 0.3:
            lengths = lengths[np.cumsum(lengths) <= duration_s - 0.3 - t]
            if len(lengths) == 0:
                break
        start, end = t, t + float(lengths.sum())
        for length in lengths:
            vowel = str(rng.choice(list(VOWELS)))
            plan.append((t, float(length), vowel, float(rng.uniform(0.75, 1.0)), start, end))
            t += float(length)
        t += float(rng.uniform(*style.pause_s))
        if t > duration_s - 0.6:
            break
    return plan


def synthesize(duration_s: float, style: VoiceStyle, seed: int, sample_rate: int = SAMPLE_RATE) -> Utterance:
    """A speech-like utterance of `duration_s` seconds (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    plan = _syllable_plan(rng, duration_s, style)

    envelope = np.zeros(n)
    formants = np.tile(np.array(VOWELS["@"][0]), (n, 1))
    declination = np.ones(n)
    noise_env = np.zeros(n)
    for start, length, vowel, loud, p0, p1 in plan:
        a, b = int(start * sample_rate), min(n, int((start + length) * sample_rate))
        phase = np.linspace(0.0, 1.0, b - a, endpoint=False)
        shape = np.sin(np.pi * phase) ** 1.5  # rises from and falls to silence: the jaw closes between syllables
        envelope[a:b] = np.maximum(envelope[a:b], loud * VOWELS[vowel][1] * shape)
        formants[a:b] = VOWELS[vowel][0]
        pa, pb = int(p0 * sample_rate), min(n, int(p1 * sample_rate))
        declination[pa:pb] = np.linspace(1.08, 0.88, pb - pa)
        if rng.random() < 0.4:  # a fricative-like burst leading into the syllable
            m = int(0.05 * sample_rate)
            lo = max(0, a - m // 2)
            noise_env[lo:lo + m] = np.maximum(noise_env[lo:lo + m], 0.08 * np.hanning(len(noise_env[lo:lo + m])))
    # formant transitions take ~30 ms instead of jumping
    k = int(0.03 * sample_rate)
    kernel = np.hanning(k) / np.hanning(k).sum()
    formants = np.stack([np.convolve(np.pad(f, (k // 2, k - k // 2 - 1), mode="edge"), kernel, "valid")
                         for f in formants.T], 1)

    contour = 1.0 + style.pitch_swing * np.sin(2 * np.pi * 0.37 * t + rng.uniform(0, 2 * np.pi))
    contour *= 1.0 + 0.03 * np.sin(2 * np.pi * 5.5 * t)  # slight vibrato
    jitter = 1.0 + 0.01 * np.convolve(rng.standard_normal(n), np.ones(200) / 200, "same")
    f0 = style.f0_hz * contour * declination * jitter
    phase = np.cumsum(f0 / sample_rate) % 1.0
    open_q = 0.6  # Rosenberg-like glottal flow: open phase, then closed; its derivative excites the tract
    flow = np.where(phase < open_q, np.sin(np.pi * phase / open_q) ** 2, 0.0)
    source = np.diff(flow, prepend=0.0) * envelope
    source += 0.02 * rng.standard_normal(n) * envelope  # breathiness

    voiced = _formant_filter(source, formants, sample_rate)
    hiss = lfilter([1.0, -1.0], [1.0], rng.standard_normal(n)) * noise_env
    out = voiced / (np.abs(voiced).max() + 1e-9) * 0.8 + hiss
    out = out / max(1.0, np.abs(out).max() / 0.95)
    return Utterance(out.astype(np.float32), (envelope / max(envelope.max(), 1e-9)).astype(np.float32), sample_rate)


def _formant_filter(x: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cascade of two-pole resonators, one per formant column of `formants` [N, 3] (Hz), updated per block."""
    block = int(BLOCK_S * sample_rate)
    y = x.copy()
    for j, bw in enumerate(FORMANT_BANDWIDTHS):
        r = np.exp(-np.pi * bw / sample_rate)
        zi = np.zeros(2)
        out = np.empty_like(y)
        for a in range(0, len(y), block):
            theta = 2 * np.pi * formants[min(a + block // 2, len(y) - 1), j] / sample_rate
            den = [1.0, -2 * r * np.cos(theta), r * r]
            gain = 1.0 - 2 * r * np.cos(theta) + r * r  # unit gain at DC
            out[a:a + block], zi = lfilter([gain], den, y[a:a + block], zi=zi)
        y = out
    return y
