"""Audio clips the preview plays: the files given on the command line and uploads from the page.

Each clip is decoded once (instag.media.audio) into what the page plays (16-bit WAV bytes, kept in memory and
served by id) and the per-frame driving conditions of the avatar (instag.avatar.driving). An upload is bounded in
size, checked for an audio container's signature, written only into the server's own temporary directory under a
name the server makes up, decoded and deleted at once; its client-given name is only ever displayed.
"""

from __future__ import annotations

import io
import itertools
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from instag.avatar.driving import frame_count
from instag.errors import InputError
from instag.media.audio import AudioTooLong, DecodedAudio, decode_audio
from instag.viewer.config import MAX_UPLOAD_BYTES

MAX_UPLOADS = 4  # uploads kept at once (the oldest is dropped); command-line clips always stay
MAX_AUDIO_S = 600.0


class UploadRefused(InputError):
    """An upload that is not accepted; `status` is the HTTP status that says why (413 too large, 415 not audio)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Clip:
    id: str
    name: str  # for display only
    duration_s: float
    n_frames: int
    wav: bytes  # 16-bit PCM WAV of the decoded audio, what the page plays
    mono16k: np.ndarray  # [N] float32, what the features are computed from
    note: str = ""  # what the page tells of it (`avatar.rest.resting_note`), once its driver is made

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "duration": self.duration_s, "frames": self.n_frames,
                "url": f"/audio/{self.id}.wav", "note": self.note}


def sniff_audio(head: bytes) -> str | None:
    """The container an upload's first bytes announce (wav, flac, ogg, mp3, aac, mp4, webm, aiff), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "aac"  # ADTS
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mp3"  # MPEG audio frame sync
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    return None


def display_name(name: str | None) -> str:
    """A client-given file name reduced to something safe to show: its last component, printable, ≤ 80 chars."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w.\- ()]+", "_", base).strip()[:80]
    return base or "upload"


def wav_bytes(audio: DecodedAudio) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, audio.samples.T, audio.sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class ClipStore:
    """Clips by id (server-made: c0, c1, …). Thread-safe; uploads live in a private temporary directory only while
    they are decoded."""

    def __init__(self, fps: float, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.fps = fps
        self.max_upload_bytes = max_upload_bytes
        self._clips: OrderedDict[str, Clip] = OrderedDict()
        self._uploads: list[str] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="instag-preview-")

    def close(self) -> None:
        self._tmp.cleanup()

    def get(self, clip_id: str) -> Clip | None:
        with self._lock:
            return self._clips.get(clip_id)

    def list(self) -> list[Clip]:
        with self._lock:
            return list(self._clips.values())

    def _add(self, audio: DecodedAudio, name: str, uploaded: bool) -> Clip:
        with self._lock:
            clip_id = f"c{next(self._ids)}"
        clip = Clip(clip_id, name, audio.duration_s, frame_count(audio.duration_s, self.fps), wav_bytes(audio),
                    audio.mono16k)
        with self._lock:
            self._clips[clip_id] = clip
            if uploaded:
                self._uploads.append(clip_id)
                while len(self._uploads) > MAX_UPLOADS:
                    self._clips.pop(self._uploads.pop(0), None)
        return clip

    def add_file(self, path: Path) -> Clip:
        """A clip from a file given on the command line (`InputError` naming it when it is not audio)."""
        return self._add(decode_audio(path, max_seconds=MAX_AUDIO_S), Path(path).name, uploaded=False)

    def discard(self, clip_id: str) -> None:
        """Forget a clip (one whose driving conditions could not be made, say)."""
        with self._lock:
            self._clips.pop(clip_id, None)
            if clip_id in self._uploads:
                self._uploads.remove(clip_id)

    def add_upload(self, data: bytes, name: str | None) -> Clip:
        """A clip from uploaded bytes; `UploadRefused` (413 / 415) with a message for the page otherwise."""
        shown = display_name(name)
        if len(data) > self.max_upload_bytes:
            raise UploadRefused(f"{shown}: {len(data) / 2**20:.1f} MiB is over the upload limit of "
                                f"{self.max_upload_bytes / 2**20:.0f} MiB", 413)
        if not data:
            raise UploadRefused(f"{shown}: the upload is empty", 415)
        kind = sniff_audio(data[:16])
        if kind is None:
            raise UploadRefused(f"{shown}: not an audio file (expected wav, mp3, m4a/aac, flac, ogg/opus or "
                                f"webm)", 415)
        with tempfile.NamedTemporaryFile(dir=self._tmp.name, prefix="upload-", suffix=f".{kind}") as f:
            f.write(data)
            f.flush()
            try:
                # The length limit applies while decoding: a few kB of compressed silence can decode to GBs.
                audio = decode_audio(f.name, max_seconds=MAX_AUDIO_S)
            except AudioTooLong as exc:
                raise UploadRefused(str(exc).replace(f.name, shown), 413) from exc
            except InputError as exc:
                reason = str(exc).replace(f.name, shown)
                raise UploadRefused(f"not playable audio: {reason}", 415) from exc
        return self._add(audio, shown, uploaded=True)
