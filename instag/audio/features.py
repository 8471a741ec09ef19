"""Audio features aligned to video frames: `[T, K, D]` arrays, K sub-frame steps per video frame.

Frame i covers [i / fps, (i + 1) / fps); its K rows sample the feature sequence at the centres of K equal parts.
`whisper` (the default) reads Whisper-base encoder states from the packaged weights or a local Whisper directory
(`instag.audio.whisper`). `mel` needs no weights. `hubert` and `wav2vec2` load a transformers model from a local
directory only (`local_files_only=True`): nothing is downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instag.audio import whisper
from instag.errors import InputError
from instag.media.audio import FEATURE_RATE

KINDS = ("whisper", "mel", "hubert", "wav2vec2")
MEL_HOP_S = 0.01  # 100 mel frames per second
MEL_SUBFRAMES = 4
MODEL_SUBFRAMES = 2  # whisper / hubert / wav2vec2 run at 50 Hz


def _sample(seq: np.ndarray, rate_hz: float, fps: float, n_frames: int, subframes: int, offset_s: float) -> np.ndarray:
    """Linearly interpolate `seq` [N, D] (row j at time offset_s + j / rate_hz) at each frame's sub-frame centres."""
    times = (np.arange(n_frames)[:, None] + (np.arange(subframes)[None, :] + 0.5) / subframes) / fps
    pos = np.clip((times - offset_s) * rate_hz, 0, len(seq) - 1).reshape(-1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(seq) - 1)
    frac = (pos - lo)[:, None]
    out = seq[lo] * (1 - frac) + seq[hi] * frac
    return out.reshape(n_frames, subframes, -1).astype(np.float32)


def mel_features(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int, n_mels: int = 80) -> np.ndarray:
    """Log-mel features [T, 4, n_mels] (dB, 25 ms windows every 10 ms) of `audio` [N] float32 mono."""
    import librosa

    hop = int(round(sample_rate * MEL_HOP_S))
    mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=int(sample_rate * 0.025) * 2,
                                         win_length=int(sample_rate * 0.025), hop_length=hop, n_mels=n_mels,
                                         fmin=55.0, fmax=sample_rate / 2, center=True)
    logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T  # [N, n_mels], row j centred at j·hop
    return _sample(logmel, sample_rate / hop, fps, n_frames, MEL_SUBFRAMES, 0.0)


@dataclass
class SpeechModel:
    """A local hubert / wav2vec2 model and how to normalise its input."""

    kind: str
    path: Path
    model: Any
    extractor: Any | None


def load_speech_model(kind: str, path: str | Path) -> SpeechModel:
    """Load `kind` ('hubert' | 'wav2vec2') from local directory `path`; InputError when it is missing or another kind."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a local transformers model directory (no config.json)")
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable model config ({exc})") from exc
    if config.model_type != kind:
        raise InputError(f"{path}: holds a '{config.model_type}' model, not the requested '{kind}'")
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=None).eval()
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot load the {kind} weights ({exc})") from exc
    try:
        extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError):
        extractor = None
    return SpeechModel(kind, path, model, extractor)


def model_features(model: SpeechModel, audio: np.ndarray, sample_rate: int, fps: float, n_frames: int,
                   chunk_s: float = 30.0) -> np.ndarray:
    """Last hidden states [T, 2, D] of a hubert / wav2vec2 model over `audio` [N] (16 kHz mono), in 30 s chunks."""
    import torch

    if sample_rate != 16000:
        raise InputError(f"{model.path}: speech models expect 16 kHz audio, got {sample_rate} Hz")
    outs = []
    step = int(chunk_s * sample_rate)
    with torch.inference_mode():
        for start in range(0, len(audio), step):
            piece = audio[start : start + step]
            if len(piece) < 400:  # shorter than one receptive field: pad so the model yields a frame
                piece = np.pad(piece, (0, 400 - len(piece)))
            if model.extractor is not None:
                x = model.extractor(piece, sampling_rate=sample_rate, return_tensors="pt").input_values
            else:
                x = torch.from_numpy((piece - piece.mean()) / (piece.std() + 1e-7))[None]
            hidden = model.model(x.float()).last_hidden_state[0].numpy()
            outs.append(hidden[: int(np.ceil(len(audio[start : start + step]) / 320))])
    seq = np.concatenate(outs)
    return _sample(seq, sample_rate / 320, fps, n_frames, MODEL_SUBFRAMES, 0.0125)


@functools.lru_cache(maxsize=4)
def load_front_end(kind: str, audio_model: str | None) -> Any:
    """What computing `kind` features needs: None for mel, the Whisper front end (packaged weights unless
    `audio_model` is given), or a local hubert / wav2vec2 model (`audio_model` required). InputError otherwise.
    Cached: a preview or a batch loads each model once."""
    if kind not in KINDS:
        raise InputError(f"--audio-features: unknown kind '{kind}' (known: {', '.join(KINDS)})")
    if kind == "mel":
        return None
    if kind == "whisper":
        return whisper.load_whisper(audio_model)
    if not audio_model:
        raise InputError(f"{kind} features need --audio-model pointing to a local {kind} model directory")
    return load_speech_model(kind, audio_model)


def feature_source(kind: str, front: Any) -> str:
    """What computes `kind` features with `front` (`load_front_end`), as a dataset's meta.json records it."""
    if kind == "mel":
        return "librosa log-mel (dB)"
    if kind == "whisper":
        return f"{front.source}, encoder layer {front.layer}"
    return str(front.path)


def compute_features(kind: str, front: Any, audio: np.ndarray, fps: float, n_frames: int,
                     n_mels: int = 80) -> np.ndarray:
    """Features [n_frames, K, D] of `kind` for 16 kHz mono `audio` [N], with `front` from `load_front_end`."""
    if kind == "mel":
        return mel_features(audio, FEATURE_RATE, fps, n_frames, n_mels)
    if kind == "whisper":
        return whisper_features(front, audio, fps, n_frames)
    return model_features(front, audio, FEATURE_RATE, fps, n_frames)


def whisper_features(front: whisper.WhisperFrontEnd, audio: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Whisper encoder states [T, 2, D] of 16 kHz mono `audio` [N]; state j is centred at j · 20 ms."""
    states = whisper.encode(front, audio if audio.size else np.zeros(1, np.float32))
    return _sample(states, FEATURE_RATE / whisper.TOKEN_SAMPLES, fps, n_frames, MODEL_SUBFRAMES, 0.0)


def whisper_recent_features(front: whisper.WhisperFrontEnd, audio: np.ndarray, fps: float, n_frames: int,
                            start_s: float) -> np.ndarray:
    """Whisper states [n_frames, 2, D] of the last few seconds `audio` [N] encoded alone (`whisper.encode_recent`,
    the live mode's short context); frame 0 starts `start_s` seconds after the audio does."""
    states = whisper.encode_recent(front, audio)
    return _sample(states, FEATURE_RATE / whisper.TOKEN_SAMPLES, fps, n_frames, MODEL_SUBFRAMES, -start_s)


def energy_envelope(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int, floor_db: float = 40.0,
                    band_hz: tuple[float, float] = (300.0, 3000.0)) -> np.ndarray:
    """Speech energy envelope [T] in dB: `band_hz` band energy of `audio` [N] in a one-frame window centred on
    each video frame's instant i / fps (`iter_frames` shows frame i as the picture nearest that instant, so a
    window over [i / fps, (i + 1) / fps) would put the sound half a frame late), floored `floor_db` below the
    clip's peak (so silence reads as a flat floor, not as noise-level detail).

    For relating sound to mouth opening pass band_hz=(1000, 3000), the F2-F3 region: energy below 1 kHz (voicing,
    nasal murmur, the voice bar of /b d g/) goes on through lip closures, energy in 1-3 kHz needs an open mouth
    (Grant & Seitz 2000 found lip area tracks the F2-band envelope better than the wide-band one)."""
    import librosa

    hop = int(round(sample_rate * MEL_HOP_S))
    n_fft = 512 if sample_rate <= 16000 else 1024
    power = np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop, win_length=int(sample_rate * 0.025))) ** 2
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    band = power[(freqs >= band_hz[0]) & (freqs <= band_hz[1])].sum(0)
    at = np.arange(len(band)) * hop / sample_rate * fps  # STFT column j is centred on sample j * hop
    frame_of = np.minimum(np.floor(at + 0.5).astype(int), n_frames - 1)
    per_frame = np.bincount(frame_of, band, n_frames) / np.maximum(np.bincount(frame_of, minlength=n_frames), 1)
    db = 10 * np.log10(per_frame + 1e-10)
    return np.maximum(db, db.max() - floor_db).astype(np.float32)
