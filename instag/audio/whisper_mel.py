"""Whisper's log-mel input in plain torch: 25 ms Hann windows every 10 ms, Slaney mel filters up to 8 kHz,
log10 floored 8 below the loudest bin, scaled by (x + 4) / 4 (OpenAI's `whisper/audio.py` recipe).

transformers' `WhisperFeatureExtractor` computes the same (a parity test holds the two together), but importing
transformers costs about 0.6 s of every dubbing job on the 2-core CPU, and librosa's filter bank about as much.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
_MEL_BREAK_HZ = 1000.0  # Slaney's scale: linear below, logarithmic above
_MEL_LINEAR_HZ = 200.0 / 3  # Hz per mel below the break
_MEL_LOG_STEP = np.log(6.4) / 27.0  # natural-log step per mel above the break


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, np.float64)
    log_part = _MEL_BREAK_HZ / _MEL_LINEAR_HZ + np.log(np.maximum(f, _MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return np.where(f < _MEL_BREAK_HZ, f / _MEL_LINEAR_HZ, log_part)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    m_break = _MEL_BREAK_HZ / _MEL_LINEAR_HZ
    return np.where(m < m_break, m * _MEL_LINEAR_HZ, _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (m - m_break)))


def mel_filters(n_mels: int, sample_rate: int, n_fft: int = N_FFT) -> Tensor:
    """[n_fft // 2 + 1, n_mels] float32: triangular filters evenly spaced on Slaney's mel scale from 0 Hz to
    Nyquist, each scaled to unit area (Slaney normalisation)."""
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(sample_rate / 2), n_mels + 2))  # [n_mels + 2]
    width = np.diff(edges)
    rising = (fft_hz[None, :] - edges[:-2, None]) / width[:-1, None]
    falling = (edges[2:, None] - fft_hz[None, :]) / width[1:, None]
    bank = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(bank.T.astype(np.float32))


def log_mel_spectrogram(audio: Tensor, filters: Tensor, hop: int = HOP) -> Tensor:
    """[n_mels, N // hop] log-mel of `audio` [N] (float32, 16 kHz mono) with `filters` [n_fft // 2 + 1, n_mels];
    frames centred on multiples of `hop` (reflect-padded), the last one dropped as Whisper does."""
    n_fft = 2 * (filters.shape[0] - 1)
    spec = torch.stft(audio, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    power = (spec[:, :-1].abs() ** 2).contiguous()  # contiguous: the matmul's fast path
    log_spec = (filters.T @ power).clamp(min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0
