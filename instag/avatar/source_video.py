"""A source clip's frames as the encoder takes them: planar YUV 4:2:0 in the coded orientation, at a constant rate.

Paste-back rewrites only the few pixels around the head, so the rest of each frame should go from the decoder to
the encoder untouched: no colour conversion, no rotation (the output carries the source's rotation metadata
instead), no copy of the frame in RGB. Frames are decoded on first request, in order, with the decoder's own
threads, and kept in an unlinked temporary file (read back by offset), so a ping-pong replay decodes each clip
frame once, a dub shorter than the clip decodes only what it shows, and memory holds one frame at a time.

Output frame i at `fps` is the decoded frame nearest in time, picked as the data module's `iter_frames` picks them
(`cfr_decoded_frames`), so dataset frame i and source frame i are the same picture.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import av
import numpy as np

from instag.data.video import cfr_decoded_frames, cfr_frame_count, probe
from instag.errors import InputError
from instag.media.mp4 import PIXEL_FORMAT, Colour


class SourceVideo:
    """Constant-rate YUV 4:2:0 frames [H·3/2, W] uint8 (coded orientation) of `clip`, decoded on demand, at `fps`
    (default: the clip's own average rate)."""

    def __init__(self, clip: Path, fps: float | None = None, tmp_dir: str | Path | None = None,
                 decoder_threads: int = 0) -> None:
        """decoder_threads: the decoder's own threads (0: ffmpeg's choice, one per core)."""
        self.info = probe(clip, 0.0)
        self.clip = Path(clip)
        self._container = av.open(str(clip))
        stream = self._container.streams.video[0]
        if decoder_threads:
            stream.codec_context.thread_count = decoder_threads
        rate = stream.average_rate or stream.guessed_rate
        if fps is None and not rate:
            raise InputError(f"{clip}: the video stream states no frame rate")
        self.fps = float(fps or rate)
        cc = stream.codec_context
        self.coded_width, self.coded_height = cc.width, cc.height
        if self.coded_width % 2 or self.coded_height % 2:
            raise InputError(f"{clip}: paste-back needs even frame sizes (4:2:0 video), the clip is "
                             f"{self.coded_width}×{self.coded_height}")
        self.rotation_deg = 90 * self.info.rotation_k  # counter-clockwise, decoded → displayed
        # frames in another pixel format are converted to limited-range yuv420p (full-range yuvj420p included)
        limited = 1  # ffmpeg's AVCOL_RANGE_MPEG
        color_range = int(cc.color_range) if cc.pix_fmt == PIXEL_FORMAT else limited
        self.colour = Colour(int(cc.colorspace), color_range, int(cc.color_primaries), int(cc.color_trc))
        self._frames = cfr_decoded_frames(self._container, self.info, self.fps)  # the last one repeats
        self._bytes = self.coded_width * self.coded_height * 3 // 2
        self._file = tempfile.TemporaryFile(dir=tmp_dir, prefix="instag-source-")
        self.decoded = 0
        self.n_frames = cfr_frame_count(self.info, self.fps)

    @property
    def width(self) -> int:
        """Displayed width."""
        return self.info.width

    @property
    def height(self) -> int:
        """Displayed height."""
        return self.info.height

    def _decode_next(self) -> None:
        frame, _ = next(self._frames, (None, None))
        if frame is None:  # a former call's InputError ended the frames
            raise InputError(f"{self.clip}: the video stream holds no decodable frames")
        if frame.format.name != PIXEL_FORMAT or (frame.width, frame.height) != (self.coded_width, self.coded_height):
            frame = frame.reformat(width=self.coded_width, height=self.coded_height, format=PIXEL_FORMAT)
        self._file.seek(0, os.SEEK_END)
        self._file.write(np.ascontiguousarray(frame.to_ndarray()))  # its buffer, not a bytes copy of it
        self._file.flush()  # `frame` reads the file by offset (os.pread), past the write buffer
        self.decoded += 1

    def frame(self, i: int) -> np.ndarray:
        """Constant-rate frame i: YUV 4:2:0 planes [H·3/2, W] uint8 (Y rows, then U, then V), coded orientation."""
        if not 0 <= i < self.n_frames:
            raise InputError(f"{self.clip}: yields {self.n_frames} frames at {self.fps:g} fps, frame {i} is asked for "
                             f"(not the clip the avatar was made from?)")
        while self.decoded <= i:
            self._decode_next()
        raw = os.pread(self._file.fileno(), self._bytes, i * self._bytes)
        return np.frombuffer(raw, np.uint8).reshape(self.coded_height * 3 // 2, self.coded_width)

    def close(self) -> None:
        self._frames.close()
        self._container.close()
        self._file.close()
