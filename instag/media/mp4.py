"""Streaming MP4 writing (PyAV): H.264 video (libx264, yuv420p) and AAC audio, muxed as frames arrive.

Frames are handed to a background thread that converts, encodes and muxes them while the caller renders the
next one (PyAV releases the GIL while encoding). The queue between them is short, so memory does not grow with
the video's length. A caller whose frames need more work than a colour conversion (paste-back's compositing)
passes `prepare`: it turns each queued item into YUV 4:2:0 planes in that thread, beside the encoder, so the
three stages (render, prepare, encode) overlap. Audio is encoded alongside, up to the time of each video frame,
so the two streams stay interleaved in the file. The caller writes to a temporary path (instag.atomic) and
renames when `close` returns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from instag.errors import InstagError
from instag.media.encoding import Encoding

QUEUE_FRAMES = 4
PIXEL_FORMAT = "yuv420p"
AUDIO_CHUNK = 4096  # samples per AAC input frame we hand to PyAV (it re-chunks to the codec's frame size)


def is_finished_mp4(path: Path) -> bool:
    """Whether `path` is an MP4 that opens and holds a video stream with frames: what a finished output looks like
    (outputs are renamed into place only when whole, but a zero-byte or foreign file may sit there)."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with av.open(str(path)) as c:
            return bool(c.streams.video) and (c.streams.video[0].frames or 0) > 0
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return False


@dataclass(frozen=True)
class Colour:
    """How a video's YUV maps to RGB (ffmpeg's enum values): a source's, carried into the output's stream tags."""

    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int


class EncodeError(InstagError):
    """The encoder or muxer failed (disk full, codec refused the parameters)."""


Prepare = Callable[[Any], np.ndarray]  # queued item → YUV 4:2:0 planes [H·3/2, W] uint8


class Mp4Writer:
    """`write(frame)` RGB frames [H, W, 3] uint8 in order, then `close()`; `audio` [C, N] float32 is muxed in.

    Odd frame sizes are padded by one edge row/column (yuv420p needs even sizes); `width`/`height` are the
    sizes actually encoded. With `prepare`, `write` takes whatever `prepare` turns into planes of that size.
    `rotation_deg` (counter-clockwise) and `colour` are written as the video stream's display matrix and colour
    tags, so a player shows the frames as it shows the source they came from.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, audio: np.ndarray | None,
                 sample_rate: int, crf: int = Encoding.crf, preset: str = Encoding.preset, threads: int = 0,
                 prepare: Prepare | None = None, rotation_deg: int = 0, colour: Colour | None = None) -> None:
        self.path = Path(path)
        self.width, self.height = width + width % 2, height + height % 2
        self.fps = Fraction(fps).limit_denominator(1001)
        self._prepare = prepare
        self._colour = colour
        self._container = av.open(str(self.path), mode="w", format="mp4",
                                  options={"movflags": "+faststart"})
        vs = self._container.add_stream("libx264", rate=self.fps)
        vs.width, vs.height, vs.pix_fmt = self.width, self.height, PIXEL_FORMAT
        vs.options = {"crf": str(int(crf)), "preset": preset}
        vs.codec_context.time_base = 1 / self.fps
        if colour is not None:
            cc = vs.codec_context
            cc.colorspace, cc.color_range = colour.colorspace, colour.color_range
            cc.color_primaries, cc.color_trc = colour.color_primaries, colour.color_trc
        if rotation_deg % 360:
            vs.set_display_rotation(rotation_deg)
        if threads:
            vs.codec_context.thread_count = threads
        self._video = vs
        self._audio_data = audio
        self._audio_rate = sample_rate
        self._audio_pos = 0
        self._audio = None
        if audio is not None:
            if audio.ndim != 2 or audio.shape[0] not in (1, 2):
                raise ValueError(f"audio must be [1 or 2, N], got {list(audio.shape)}")
            self._audio = self._container.add_stream("aac", rate=sample_rate,
                                                     layout="mono" if audio.shape[0] == 1 else "stereo")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mp4-writer", daemon=True)
        self._thread.start()

    def write(self, frame: Any) -> None:
        """Queue one RGB frame [H, W, 3] uint8, or one item for `prepare` (blocks while the encoder is behind)."""
        if self._error is not None:
            raise EncodeError(f"{self.path}: encoding failed ({self._error})") from self._error
        if self._prepare is not None:
            self._queue.put(frame)
            return
        h, w = frame.shape[:2]
        if (h + h % 2, w + w % 2) != (self.height, self.width) or frame.dtype != np.uint8:
            raise ValueError(f"frame is {frame.shape} {frame.dtype}, the video is {self.height}×{self.width} uint8")
        if (h, w) != (self.height, self.width):
            frame = np.pad(frame, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")
        self._queue.put(np.ascontiguousarray(frame))

    def _mux_audio_until(self, t_end: float | None) -> None:
        if self._audio is None:
            return
        data = self._audio_data
        end = data.shape[1] if t_end is None else min(data.shape[1], int(round(t_end * self._audio_rate)))
        while self._audio_pos < end:
            stop = min(end, self._audio_pos + AUDIO_CHUNK)
            chunk = np.ascontiguousarray(data[:, self._audio_pos:stop])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self._audio.layout.name)
            frame.sample_rate = self._audio_rate
            frame.pts = self._audio_pos
            frame.time_base = Fraction(1, self._audio_rate)
            self._container.mux(self._audio.encode(frame))
            self._audio_pos = stop

    def _run(self) -> None:
        i = 0
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                frame = self._frame(item)
                frame.pts = i
                frame.time_base = 1 / self.fps
                self._container.mux(self._video.encode(frame))
                i += 1
                self._mux_audio_until(i / self.fps)
            self._container.mux(self._video.encode(None))
            self._mux_audio_until(None)
            if self._audio is not None:
                self._container.mux(self._audio.encode(None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._error = exc
            while True:  # drain so a blocked `write` returns and sees the error
                try:
                    if self._queue.get_nowait() is None:
                        break
                except queue.Empty:
                    break

    def _frame(self, item: Any) -> av.VideoFrame:
        if self._prepare is None:
            return av.VideoFrame.from_ndarray(item, format="rgb24")
        planes = self._prepare(item)
        if planes.shape != (self.height * 3 // 2, self.width) or planes.dtype != np.uint8:
            raise ValueError(f"prepared planes are {planes.shape} {planes.dtype}, the video needs "
                             f"{(self.height * 3 // 2, self.width)} uint8")
        frame = av.VideoFrame.from_ndarray(planes, format=PIXEL_FORMAT)
        if self._colour is not None:
            frame.colorspace, frame.color_range = self._colour.colorspace, self._colour.color_range
        return frame

    def close(self) -> None:
        """Flush the encoders and finish the file; `EncodeError` if anything failed."""
        self._finish()
        if self._error is not None:
            raise EncodeError(f"{self.path}: encoding failed ({self._error})") from self._error

    def abort(self) -> None:
        """Stop without caring for the file (the caller removes it)."""
        self._finish()

    def _finish(self) -> None:
        if self._thread.is_alive():
            while self._thread.is_alive():
                try:
                    self._queue.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        try:
            self._container.close()
        except (av.FFmpegError, OSError) as exc:
            if self._error is None:
                self._error = exc

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
