"""How the lip read-out holds when the speech is recorded badly: each person's audio under added noise, room
reverberation, a telephone band or a low level, scored on people held out in four folds (every 4th person), as
`readout_variants.py` scores its variants. Also scores two remedies: the read-out fitted on noisy copies as well,
and a spectral gate before the encoder.

    python benchmarks/scripts/noisy_speech.py CACHE_DIR BABBLE_DIR DATASET...

BABBLE_DIR holds speech `.wav` files mixed together as background talk (only for scoring, never fitted on).
Layer-3 Whisper features per condition are cached in CACHE_DIR; every noise is drawn from a seed named after the
person and the condition, so a rerun gives the same figures.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf
import torch
from readout_variants import cached_features

from instag.audio import features as af
from instag.audio import whisper
from instag.bench.lips import with_context
from instag.stats import correlation, ridge_from_moments, ridge_moments

RATE = af.FEATURE_RATE
STRENGTH = 1e4  # the shipped read-out's ridge strength
FOLDS = 4


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2) + 1e-20))


def _speech_rms(x: np.ndarray) -> float:
    """Level over the louder half of 20 ms blocks, so a clip's pauses do not set its signal-to-noise ratio."""
    e = np.sqrt((x[: len(x) // 320 * 320].reshape(-1, 320) ** 2).mean(1))
    return float(np.sqrt(np.mean(np.sort(e)[len(e) // 2:] ** 2)))


def _at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    return x + noise[: len(x)] * _speech_rms(x) / _rms(noise) * 10 ** (-snr_db / 20)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    k = np.arange(len(spectrum))
    k[0] = 1
    return np.fft.irfft(spectrum / np.sqrt(k), n)


def _reverb(x: np.ndarray, t60: float, rng: np.random.Generator) -> np.ndarray:
    """A room as exponentially decaying noise (60 dB down after t60 s) behind the direct sound, level kept."""
    t = np.arange(int(t60 * RATE)) / RATE
    h = rng.standard_normal(len(t)) * np.exp(-6.9 * t / t60)
    h[0] = 1 + abs(h[0])
    y = scipy.signal.fftconvolve(x, h)[: len(x)]
    return y * _rms(x) / _rms(y)


def _phone(x: np.ndarray) -> np.ndarray:
    """300–3400 Hz through 8 kHz sampling."""
    b, a = scipy.signal.butter(4, [300, 3400], btype="band", fs=RATE)
    y = scipy.signal.resample_poly(scipy.signal.lfilter(b, a, x), 1, 2)
    return scipy.signal.resample_poly(y, 2, 1)[: len(x)]


def _babble(n: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for s in talkers:
        s = np.tile(s, n // len(s) + 2)
        start = int(rng.integers(0, len(s) - n))
        out += s[start:start + n] / _rms(s)
    return out


def _gate(x: np.ndarray, floor: float = 0.1, over: float = 1.5, quantile: float = 10) -> np.ndarray:
    """Spectral gating: each bin's power above its 10th percentile over time (the steady noise) is kept."""
    import librosa

    spec = librosa.stft(x, n_fft=512, hop_length=128)
    power = np.abs(spec) ** 2
    smooth = scipy.signal.convolve2d(power, np.ones((1, 5)) / 5, mode="same")
    noise = np.percentile(smooth, quantile, axis=1, keepdims=True)
    gain = np.sqrt(np.maximum(1 - over * noise / np.maximum(smooth, 1e-20), floor ** 2))
    return librosa.istft(spec * gain, hop_length=128, length=len(x))


def conditions(talkers: list[np.ndarray]) -> dict:
    return {
        "clean": lambda x, rng: x,
        "white 20 dB": lambda x, rng: _at_snr(x, rng.standard_normal(len(x)), 20),
        "white 10 dB": lambda x, rng: _at_snr(x, rng.standard_normal(len(x)), 10),
        "pink 10 dB": lambda x, rng: _at_snr(x, _pink(len(x), rng), 10),
        "4 talkers 15 dB": lambda x, rng: _at_snr(x, _babble(len(x), talkers, rng), 15),
        "room 0.5 s": lambda x, rng: _reverb(x, 0.5, rng),
        "room 1.0 s": lambda x, rng: _reverb(x, 1.0, rng),
        "telephone": lambda x, rng: _phone(x),
        "40 dB quieter": lambda x, rng: x * 0.01,
    }


GATED = ("clean", "white 10 dB", "pink 10 dB", "4 talkers 15 dB", "room 1.0 s")


def _features(cache: Path, babble: Path, datasets: list[Path]) -> list[dict[str, np.ndarray]]:
    talkers = [a if a.ndim == 1 else a.mean(1) for a in (sf.read(f)[0] for f in sorted(babble.glob("*.wav")))]
    conds = conditions(talkers)

    def encode(front: whisper.WhisperFrontEnd, ds, audio: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name, make in conds.items():
            rng = np.random.default_rng(zlib.crc32(f"{ds.path.name}/{name}".encode()))
            noisy = make(audio.astype(np.float64), rng)
            for gated in (False, True) if name in GATED else (False,):
                y = (_gate(noisy) if gated else noisy).astype(np.float32)
                y /= max(1.0, float(np.abs(y).max()))
                key = f"gated, {name}" if gated else name
                out[key] = af.whisper_features(front, y, ds.fps, ds.n_frames).mean(1).astype(np.float32)
        return out
    return cached_features(cache, datasets, encode)


def _score(data: list[dict[str, np.ndarray]], fit_on: list[str], scored: list[str]) -> dict[str, np.ndarray]:
    """Per scored condition: mean r (opening, width) over the held-out people, and the median of their predicted
    spread over that of their clean audio (opening, width)."""
    folds: list[dict[str, np.ndarray]] = [{} for _ in range(FOLDS)]
    for i, d in enumerate(data):
        for c in fit_on:
            m = ridge_moments(with_context(d[c].astype(np.float64), 2), d["lips"])
            folds[i % FOLDS] = {q: folds[i % FOLDS].get(q, 0) + m[q] for q in m}
    r: dict[str, list] = {c: [] for c in scored}
    spread: dict[str, list] = {c: [] for c in scored}
    for k in range(FOLDS):
        rest = [folds[j] for j in range(FOLDS) if j != k]
        mx, sx, ws, my = ridge_from_moments({q: sum(f[q] for f in rest) for q in rest[0]}, (STRENGTH,))
        for i in range(k, len(data), FOLDS):
            clean = ((with_context(data[i]["clean"].astype(np.float64), 2) - mx) / sx) @ ws[STRENGTH]
            for c in scored:
                p = ((with_context(data[i][c].astype(np.float64), 2) - mx) / sx) @ ws[STRENGTH] + my
                r[c].append([correlation(data[i]["lips"][:, j], p[:, j]) or 0.0 for j in range(2)])
                spread[c].append(p.std(0) / clean.std(0))
    return {c: np.r_[np.mean(r[c], 0), np.median(spread[c], 0)] for c in scored}


def main(cache: Path, babble: Path, datasets: list[Path]) -> None:
    torch.set_num_threads(2)
    data = _features(cache, babble, datasets)
    scored = [c for c in data[0] if c != "lips"]
    fits = {"clean (shipped)": ["clean"], "clean + room 0.5 s": ["clean", "room 0.5 s"],
            "clean + white 20 dB + room 0.5 s": ["clean", "white 20 dB", "room 0.5 s"]}
    results = {name: _score(data, fit_on, scored) for name, fit_on in fits.items()}
    print(f"{len(data)} people; mean r opening / width (median spread of the opening vs clean), read-out fitted on:")
    print("| speech | " + " | ".join(fits) + " |")
    print("| --- |" + " --- |" * len(fits))
    for c in scored:
        print(f"| {c} | " + " | ".join(f"{v[c][0]:.3f} / {v[c][1]:.3f} ({v[c][2]:.2f})" for v in results.values())
              + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
