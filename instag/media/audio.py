"""Decoding an audio file of any common format (wav, mp3, m4a/aac, flac, ogg, or a video's audio track) with
PyAV: the samples to mux into an output video at the file's own rate, and 16 kHz mono for the audio features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from instag.errors import InputError

if TYPE_CHECKING:
    import av

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


class AudioTooLong(InputError):
    """Audio longer than the caller takes, found from the stream header or while decoding (which stops there)."""


def _regular_file(path: Path) -> None:
    """`InputError` unless `path` is a regular file: a directory or a FIFO is not audio (and opening a FIFO would
    wait for a writer forever)."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an audio file")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")


def _header_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    """The length the stream (or else the container) header states, if any."""
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _too_long(path: Path, limit: float, seconds: float | None = None) -> AudioTooLong:
    length = f"{seconds:.0f} s of audio" if seconds is not None else "audio"
    more = "" if seconds is not None else " (stopped decoding there)"
    return AudioTooLong(f"{path}: {length} is over the limit of {limit:.0f} s{more}")


def decode_audio(path: str | Path, max_seconds: float | None = None) -> DecodedAudio:
    """Decode the first audio stream of `path`; `InputError` naming the file when it is missing, not a regular
    file, unreadable, has no audio stream, no samples or non-finite ones. Silence is fine.

    With `max_seconds`, longer audio is refused (`AudioTooLong`) from the header's length before decoding, and
    decoding stops at the limit when the header states none or understates it: a few kB of compressed silence
    can otherwise decode to gigabytes."""
    import av  # here, so that what only needs FEATURE_RATE runs where PyAV is not installed

    path = Path(path)
    _regular_file(path)
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
        stated = _header_seconds(container, stream)
        if max_seconds is not None and stated is not None and stated > max_seconds:
            raise _too_long(path, max_seconds, stated)
        kept, mono = _decode(container, stream, rate, "mono" if channels == 1 else "stereo", max_seconds, path)
    if not kept or sum(k.shape[1] for k in kept) == 0:
        raise InputError(f"{path}: the audio stream holds no decodable samples")
    samples = np.concatenate(kept, axis=1).astype(np.float32)
    mono16k = np.concatenate(mono).astype(np.float32) if mono else np.zeros(0, np.float32)
    if not (np.isfinite(samples).all() and np.isfinite(mono16k).all()):
        raise InputError(f"{path}: the audio holds non-finite samples (NaN or inf)")
    return DecodedAudio(path, np.ascontiguousarray(np.clip(samples, -1.0, 1.0)), rate, np.clip(mono16k, -1.0, 1.0))


def _decode(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, rate: int, layout: str,
            max_seconds: float | None, path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The stream's samples at its own rate ([C, n] chunks) and at 16 kHz mono ([n] chunks); `AudioTooLong`
    as soon as more than `max_seconds` have come out."""
    import av

    max_samples = None if max_seconds is None else max_seconds * rate
    keep = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    feat = av.AudioResampler(format="flt", layout="mono", rate=FEATURE_RATE)
    kept: list[np.ndarray] = []
    mono: list[np.ndarray] = []
    n = 0
    try:
        for frame in container.decode(stream):
            frame.pts = None
            for out in keep.resample(frame):
                kept.append(out.to_ndarray().reshape(len(out.layout.channels), -1))
                n += kept[-1].shape[1]
            if max_samples is not None and n > max_samples:
                raise _too_long(path, max_seconds)
            for out in feat.resample(frame):
                mono.append(out.to_ndarray().reshape(-1))
        for out in keep.resample(None):
            kept.append(out.to_ndarray().reshape(len(out.layout.channels), -1))
        for out in feat.resample(None):
            mono.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"{path}: corrupt audio data ({exc})") from exc
    return kept, mono
