"""Frames for the preview: an avatar driven by a clip's audio, by a live microphone stream, or by silence for the
idle loop, seen through the orbit camera, rendered on the server's device and encoded as JPEG.

The driving (features → conditions, ping-pong replay of the clip's poses, blinks and torso) is
`instag.avatar.driving.Driver`'s; the idle loop is a Driver fed silence, one whole ping-pong period long, so the
loop point joins without a jump and the mouth stays closed. A live frame k replays the idle loop's pose, blink and
torso at k and takes its audio windows from `instag.viewer.live`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from instag.avatar.bundle import Avatar
from instag.avatar.driving import DriveLayers, Driver, audio_driver, to_uint8
from instag.avatar.rest import resting_note
from instag.render.avatar import FrameCondition
from instag.viewer.camera import Orbit, orbit_viewmat
from instag.viewer.clips import Clip
from instag.viewer.config import LIVE_LOOKAHEAD_FRAMES
from instag.viewer.live import LiveFeatures, LiveStream

CPU_SIZE = 256  # default side on CPU; on CUDA the avatar's own
JPEG_QUALITY = 85
IDLE_CACHE_BYTES = 64 << 20  # the idle loop's JPEGs kept (a 5 s clip's loop takes about 3 MB at 256²)


def default_size(avatar: Avatar, device: torch.device) -> int:
    return avatar.size if device.type == "cuda" else min(avatar.size, CPU_SIZE)


def idle_length(avatar: Avatar) -> int:
    """Frames of one ping-pong period of the clip's poses (forward then back), the idle loop's length."""
    return max(1, 2 * (avatar.n_drive_frames - 1))


@dataclass
class Frame:
    jpeg: bytes
    index: int
    render_ms: float  # (live: features +) motion + rasterization + composite + JPEG, wall time
    header: dict[str, Any] = field(default_factory=dict)  # what else the stream header says about it


def seen_from(cond: FrameCondition, centre: Tensor, orbit: Orbit) -> FrameCondition:
    """`cond` with its camera moved by `orbit` about the head centre [3]. The clip's own pixels drawn over the head
    (`FrameCondition.foreground`) belong to the replayed view, so an orbit leaves them out."""
    return dataclasses.replace(cond, viewmat=orbit_viewmat(cond.viewmat, centre, orbit),
                               foreground=cond.foreground if orbit.is_identity else None)


class PreviewRenderer:
    """Renders frame `index` of a clip (or of the idle loop) from an orbit; safe to call from worker threads."""

    def __init__(self, avatar: Avatar, device: torch.device, size: int | None = None,
                 audio_model: str | None = None, live_lookahead: int = LIVE_LOOKAHEAD_FRAMES,
                 voice_rest: bool = True) -> None:
        self.avatar = avatar
        self.device = device
        self.size = int(size or default_size(avatar, device))
        self.fps = float(avatar.meta["fps"])
        self.audio_model = audio_model
        self.voice_rest = voice_rest  # clips' and live streams' lips rest where no voice is heard (`avatar.rest`)
        # Head centre: the mean of the face branch's Gaussians (world coordinates), what the orbit turns about.
        self.centre = avatar.face.means.detach().mean(dim=0).to(device)
        self.view = avatar.view
        # The clip's layers, decoded once for the idle loop, the pauses and every clip.
        self.layers = DriveLayers(avatar, self.size, device)
        n_idle = idle_length(avatar)
        silence = np.zeros(int(round(n_idle / self.fps * 16000)), np.float32)
        # Silence from end to end: the idle loop's lips rest (`avatar.rest`). A live pause shorter than a rest shows
        # the same frames with the lips the silence predicts, as a dub's pauses between phrases do.
        self.idle = audio_driver(avatar, silence, n_idle, audio_model, self.size, device, layers=self.layers)
        self.pause = Driver(avatar, self.idle.features, self.size, device=device, layers=self.layers)
        self.live = LiveFeatures(avatar, device, audio_model, live_lookahead)
        self._idle_jpegs: dict[int, bytes] = {}  # idle-loop frame → its JPEG from the front, up to IDLE_CACHE_BYTES
        self._idle_bytes = 0
        self._drivers: dict[tuple[str, bool], Driver] = {}  # (clip id, whether its lips rest without a voice)
        self._lock = threading.Lock()

    def driver(self, clip: Clip, song: bool = False) -> Driver:
        """The clip's Driver (built once: features and conditions of the avatar's kind); for a `song`, one whose lips
        rest in silence only (on the same features)."""
        without_voice = self.voice_rest and not song
        with self._lock:
            d = self._drivers.get((clip.id, without_voice))
            other = self._drivers.get((clip.id, not without_voice))
        if d is None:
            d = audio_driver(self.avatar, clip.mono16k, clip.n_frames, self.audio_model, self.size, self.device,
                             features=None if other is None else other.features, layers=self.layers,
                             rest_without_voice=without_voice)
            if without_voice:
                clip.note = resting_note(d.rest)
            with self._lock:
                self._drivers[(clip.id, without_voice)] = d
        return d

    def forget(self, keep: set[str]) -> None:
        """Drop the drivers of clips no longer listed."""
        with self._lock:
            for k in [k for k in self._drivers if k[0] not in keep]:
                del self._drivers[k]

    @torch.inference_mode()
    def render(self, driver: Driver, index: int, orbit: Orbit) -> Frame:
        """Frame `index` of `driver` (clamped to its length) seen from `orbit`, as JPEG."""
        t0 = time.perf_counter()
        index = min(max(index, 0), driver.n_frames - 1)
        return self._frame(driver.condition(index).cond, index, orbit, t0)

    def _frame(self, cond: FrameCondition, index: int, orbit: Orbit, t0: float) -> Frame:
        image = self.avatar.render(seen_from(cond, self.centre, orbit)).image
        rgb = to_uint8(image)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return Frame(buf.tobytes(), index, (time.perf_counter() - t0) * 1e3)

    def render_idle(self, k: int, orbit: Orbit) -> Frame:
        """Frame k of the idle loop; seen from the front, rendered once and then kept (the loop repeats, and a live
        stream's silences show it too)."""
        j = k % self.idle.n_frames
        if not orbit.is_identity:
            return self.render(self.idle, j, orbit)
        with self._lock:
            jpeg = self._idle_jpegs.get(j)
        if jpeg is not None:
            return Frame(jpeg, j, 0.0)
        frame = self.render(self.idle, j, orbit)
        with self._lock:
            if self._idle_bytes + len(frame.jpeg) <= IDLE_CACHE_BYTES:
                self._idle_jpegs[j] = frame.jpeg
                self._idle_bytes += len(frame.jpeg)
        return frame

    @torch.inference_mode()
    def render_live(self, stream: LiveStream, k: int, orbit: Orbit, song: bool = False) -> Frame:
        """Live frame k of `stream` (its audio must have arrived) seen from `orbit`, as JPEG; where no voice is heard,
        the idle loop's frame k, its lips at rest once that has lasted long enough (`LiveFeatures.shows`; for a
        `song`, in silence only)."""
        t0 = time.perf_counter()
        end = stream.frame_end(k)
        shows = self.live.shows(stream, k, song)
        if shows != "voice":
            if shows == "pause":
                frame = self.render(self.pause, k % self.pause.n_frames, orbit)
            else:
                frame = self.render_idle(k, orbit)
            return Frame(frame.jpeg, k, frame.render_ms, {"end": end, "voiced": False, "feature_ms": 0.0})
        windows = self.live.windows(stream, k)
        feature_ms = (time.perf_counter() - t0) * 1e3
        # The idle loop's pose, blink and torso at k; the lips from the voice (`pause` has no rest).
        cond = dataclasses.replace(self.pause.condition(k % self.pause.n_frames).cond, audio_windows=windows,
                                   live_audio=True)
        frame = self._frame(cond, k, orbit, t0)
        frame.header = {"end": end, "voiced": True, "feature_ms": round(feature_ms, 2)}
        return frame
