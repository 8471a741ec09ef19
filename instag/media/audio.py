"""Decoding an audio file of any common format (wav, mp3, m4a/aac, flac, ogg, or a video's audio track) with
PyAV: the samples to mux into an output video at the file's own rate, and 16 kHz mono for the audio features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from instag.errors import InputError

FEATURE_RATE = 16000


@dataclass
class DecodedAudio:
    path: Path
    samples: np.ndarray  # [C, N] float32 in [-1, 1] at `sample_rate`, C = 1 (mono) or 2 (stereo)
    sample_rate: int
    mono16k: np.ndarray  # [M] float32 mono at 16 kHz

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    @property
    def layout(self) -> str:
        return "mono" if self.samples.shape[0] == 1 else "stereo"


def decode_audio(path: str | Path) -> DecodedAudio:
    """Decode the first audio stream of `path`; `InputError` naming the file when it is missing, unreadable,
    has no audio stream or no samples. Silence is fine."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or not an audio file ({exc})") from exc
    with container:
        if not container.streams.audio:
            raise InputError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 1)
        if rate <= 0:
            raise InputError(f"{path}: the audio stream states no sample rate")
        layout = "mono" if channels == 1 else "stereo"
        keep = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        feat = av.AudioResampler(format="flt", layout="mono", rate=FEATURE_RATE)
        kept: list[np.ndarray] = []
        mono: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None
                for out in keep.resample(frame):
                    kept.append(out.to_ndarray().reshape(len(out.layout.channels), -1))
                for out in feat.resample(frame):
                    mono.append(out.to_ndarray().reshape(-1))
            for out in keep.resample(None):
                kept.append(out.to_ndarray().reshape(len(out.layout.channels), -1))
            for out in feat.resample(None):
                mono.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, ValueError) as exc:
            raise InputError(f"{path}: corrupt audio data ({exc})") from exc
    if not kept or sum(k.shape[1] for k in kept) == 0:
        raise InputError(f"{path}: the audio stream holds no decodable samples")
    samples = np.clip(np.concatenate(kept, axis=1).astype(np.float32), -1.0, 1.0)
    mono16k = np.clip(np.concatenate(mono).astype(np.float32), -1.0, 1.0) if mono else np.zeros(0, np.float32)
    return DecodedAudio(path, np.ascontiguousarray(samples), rate, mono16k)
