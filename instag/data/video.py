"""Decoding any talking clip with PyAV: probing, constant-rate frame streams in display orientation, 16 kHz audio."""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from instag.errors import InputError


@dataclass(frozen=True)
class ClipInfo:
    """What the clip holds, in display orientation (rotation metadata applied)."""

    path: Path
    width: int  # displayed width in pixels
    height: int  # displayed height in pixels
    rotation_k: int  # quarter turns counter-clockwise from decoded to displayed
    codec: str
    duration_s: float  # video duration from its first frame
    video_start_s: float  # presentation time of the first video frame
    audio_start_s: float  # presentation time of the first audio sample
    audio_codec: str


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable or corrupt media file ({exc})") from exc


def _first_time(container: av.container.InputContainer, stream: av.stream.Stream, path: Path, what: str):
    """Decode the first frame of `stream`; returns (frame, its time in seconds)."""
    try:
        for frame in container.decode(stream):
            return frame, float(frame.time) if frame.time is not None else 0.0
    except av.FFmpegError as exc:
        raise InputError(f"{path}: corrupt {what} stream ({exc})") from exc
    raise InputError(f"{path}: the {what} stream holds no decodable frames")


def probe(path: str | Path, min_duration_s: float) -> ClipInfo:
    """Check the clip is usable (readable, video + audio, long enough) and describe it; InputError otherwise."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        if not container.streams.audio:
            raise InputError(f"{path}: no audio stream (the clip's speech drives the avatar)")
        vs = container.streams.video[0]
        duration = None
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        first, t0 = _first_time(container, vs, path, "video")
        k = int(round((first.rotation or 0) / 90.0)) % 4
        w, h = (first.width, first.height) if k % 2 == 0 else (first.height, first.width)
        codec = vs.codec_context.name
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else t0
    with _open(path) as container:
        aus = container.streams.audio[0]
        _, a0 = _first_time(container, aus, path, "audio")
        audio_codec = aus.codec_context.name
    if duration is None or duration <= 0:
        duration = _count_duration(path)
    else:
        duration -= t0 - start
    if duration < min_duration_s:
        raise InputError(f"{path}: clip is {duration:.2f} s long, shorter than the {min_duration_s:g} s minimum")
    return ClipInfo(path, w, h, k, codec, duration, t0, a0, audio_codec)


def _count_duration(path: Path) -> float:
    """Duration from decoded frame times when the container does not state it."""
    with _open(path) as container:
        vs = container.streams.video[0]
        times = [f.time for f in container.decode(vs) if f.time is not None]
    if len(times) < 2:
        return 0.0
    return times[-1] - times[0] + (times[-1] - times[0]) / (len(times) - 1)


def cfr_frame_count(info: ClipInfo, fps: float) -> int:
    """Number of frames the clip yields at the constant rate `fps` (whole frames within its duration)."""
    return int(math.floor(info.duration_s * fps + 1e-6))


def cfr_decoded_frames(container: av.container.InputContainer, info: ClipInfo, fps: float,
                       n_frames: int | None = None) -> Iterator[tuple[av.VideoFrame, int]]:
    """(decoded frame, its index in decoding order) for output frames 0, 1, … at constant `fps`: output frame i is
    the decoded frame nearest in time to i / fps, each one repeated or skipped as that asks (a frame is held until
    the next one's time is known, so only two are held).

    With `n_frames`, that many: `InputError` when the video data ends before 90 % of them (truncated file).
    Without, the last frame repeats for as long as the caller asks. `InputError` for corrupt video data or a
    stream without decodable frames."""
    vs = container.streams.video[0]
    vs.thread_type = "AUTO"
    rate = float(vs.average_rate) if vs.average_rate else fps
    i = 0
    prev: tuple[av.VideoFrame, float, int] | None = None
    try:
        for n, frame in enumerate(container.decode(vs)):
            t = (float(frame.time) if frame.time is not None else n / rate) - info.video_start_s
            while prev is not None and (n_frames is None or i < n_frames) and i / fps < (prev[1] + t) / 2:
                yield prev[0], prev[2]
                i += 1
            if n_frames is not None and i >= n_frames:
                return
            prev = (frame, t, n)
    except av.FFmpegError as exc:
        raise InputError(f"{info.path}: corrupt video data after output frame {i} ({exc})") from exc
    if prev is None:
        raise InputError(f"{info.path}: the video stream holds no decodable frames")
    if n_frames is not None and i < 0.9 * n_frames:
        raise InputError(f"{info.path}: video data ends at {prev[1]:.2f} s of a stated {info.duration_s:.2f} s (truncated file?)")
    while n_frames is None or i < n_frames:
        yield prev[0], prev[2]
        i += 1


def iter_frames(info: ClipInfo, fps: float, n_frames: int, max_side: int | None = None) -> Iterator[np.ndarray]:
    """Yield `n_frames` RGB frames [H, W, 3] uint8 at constant `fps` (nearest source frame in time, as
    `cfr_decoded_frames` picks them), displayed.

    With `max_side` the frames are scaled down (during colour conversion) so their long side is at most that.
    Only the current and previous decoded frame are held: memory does not grow with the clip.
    """
    scale = 1.0 if max_side is None else min(1.0, max_side / max(info.width, info.height))
    cached: tuple[int, np.ndarray] | None = None

    def convert(frame: av.VideoFrame, index: int) -> np.ndarray:
        nonlocal cached
        if cached is not None and cached[0] == index:
            return cached[1]
        if scale < 1.0:
            w = max(2, int(round(frame.width * scale / 2)) * 2)
            h = max(2, int(round(frame.height * scale / 2)) * 2)
            img = frame.to_ndarray(format="rgb24", width=w, height=h)
        else:
            img = frame.to_ndarray(format="rgb24")
        if info.rotation_k:
            img = np.ascontiguousarray(np.rot90(img, k=info.rotation_k))
        cached = (index, img)
        return img

    with _open(info.path) as container, contextlib.closing(cfr_decoded_frames(container, info, fps, n_frames)) as frames:
        for i, (frame, n) in enumerate(frames):
            try:
                img = convert(frame, n)
            except av.FFmpegError as exc:
                raise InputError(f"{info.path}: corrupt video data after output frame {i} ({exc})") from exc
            yield img


def read_audio(info: ClipInfo, sample_rate: int, n_samples: int) -> np.ndarray:
    """The clip's audio as float32 mono [n_samples] at `sample_rate`, sample 0 at the first video frame."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    with _open(info.path) as container:
        try:
            for frame in container.decode(container.streams.audio[0]):
                frame.pts = None
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise InputError(f"{info.path}: corrupt audio data ({exc})") from exc
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise InputError(f"{info.path}: the audio stream holds no decodable samples")
    offset = int(round((info.audio_start_s - info.video_start_s) * sample_rate))
    if offset > 0:
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    elif offset < 0:
        audio = audio[-offset:]
    if audio.size < n_samples:
        audio = np.concatenate([audio, np.zeros(n_samples - audio.size, np.float32)])
    return np.clip(audio[:n_samples], -1.0, 1.0)
