"""Paste-back: the rendered head crop composited into the clip's original full-size frames.

Where the source frames come from: the avatar dir does not hold full-size frames (only the crop's torso layers),
so they are re-decoded from the source clip, the same way preprocessing decoded them (constant frame rate,
display orientation; dataset frame i = source frame i). The clip is looked for, in order: the path given by the
caller (`--source`), `AVATAR/source/<clip>` (where `instag adapt-from-clip` keeps a copy), and the path recorded
in avatar.json provenance. Its sha256 must match the recorded one.

The frames replayed (the clip's training frames) are decoded once into an unlinked temporary file and read
back by offset, so memory holds one full-size frame at a time however long the output is, and ping-pong
replay needs no seeking in the compressed clip.

The crop box (x0, y0, side) in source pixels may reach outside the frame (preprocessing padded it by edge
replication); the render is scaled to side² and blended in with a feathered border (a smoothstep ramp
`feather` × side wide inside the box edges); pixels outside the box stay the source's own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from instag.avatar.bundle import Avatar
from instag.data.video import iter_frames, probe, sha256_of
from instag.errors import InputError

DEFAULT_FEATHER = 0.06


def _recorded_source(avatar: Avatar) -> dict:
    return dict(avatar.meta.get("provenance", {}).get("source", {}) or {})


def find_source_clip(avatar: Avatar, override: str | Path | None = None) -> Path:
    """The avatar's source clip (see the module doc for the search order); `InputError` if none is usable."""
    recorded = _recorded_source(avatar)
    candidates: list[Path] = []
    if override is not None:
        candidates = [Path(override)]
    else:
        kept = sorted((avatar.path / "source").glob("*")) if (avatar.path / "source").is_dir() else []
        candidates += [p for p in kept if p.is_file()]
        if recorded.get("path"):
            candidates.append(Path(recorded["path"]))
    for path in candidates:
        if not path.is_file():
            if override is not None:
                raise InputError(f"{path}: no such file (--source)")
            continue
        want = recorded.get("sha256")
        if want and sha256_of(path) != want:
            raise InputError(f"{path}: not the clip avatar {avatar.path} was made from (sha256 differs)")
        return path
    raise InputError(f"{avatar.path}: paste-back needs the source clip, which is neither kept in the avatar dir nor "
                     f"at {recorded.get('path', '(not recorded)')}; pass --source CLIP")


def feather_mask(side: int, feather: float) -> np.ndarray:
    """[side, side, 1] float32 weights: 1 inside, a smoothstep ramp to 0 over `feather`·side at the edges."""
    width = max(1.0, feather * side)
    d = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32) + 0.5
    ramp = np.clip(d / width, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)
    return (ramp[:, None] * ramp[None, :])[..., None]


class SourceFrames:
    """The clip frames an avatar replays, decoded once at source resolution into an unlinked temporary file."""

    def __init__(self, clip: Path, fps: float, n_frames: int, tmp_dir: str | Path | None = None) -> None:
        info = probe(clip, 0.0)
        self.clip = clip
        self.width, self.height = info.width, info.height
        self._frame_bytes = self.width * self.height * 3
        self._file = tempfile.TemporaryFile(dir=tmp_dir, prefix="instag-source-")
        count = 0
        for img in iter_frames(info, fps, n_frames):
            self._file.write(np.ascontiguousarray(img).tobytes())
            count += 1
        self._file.flush()
        if count < n_frames:
            raise InputError(f"{clip}: yields {count} frames at {fps:g} fps, the avatar replays {n_frames}")
        self.n_frames = count

    def frame(self, i: int) -> np.ndarray:
        """Source frame i, RGB [H, W, 3] uint8."""
        if not 0 <= i < self.n_frames:
            raise IndexError(f"source frame {i} of {self.n_frames}")
        raw = os.pread(self._file.fileno(), self._frame_bytes, i * self._frame_bytes)
        return np.frombuffer(raw, np.uint8).reshape(self.height, self.width, 3)

    def close(self) -> None:
        self._file.close()


class PasteBack:
    """Composite rendered crops into the avatar's source frames."""

    def __init__(self, avatar: Avatar, source: SourceFrames, feather: float = DEFAULT_FEATHER) -> None:
        x0, y0, side = (int(v) for v in np.asarray(avatar.drive["crop_box"]).reshape(-1)[:3])
        if side <= 0:
            raise InputError(f"{avatar.path / 'drive.npz'}: crop box {[x0, y0, side]} is empty")
        recorded = _recorded_source(avatar)
        if recorded.get("width") and (recorded["width"], recorded["height"]) != (source.width, source.height):
            raise InputError(f"{source.clip}: frames are {source.width}×{source.height}, the avatar was made from "
                             f"{recorded['width']}×{recorded['height']}")
        self.source = source
        self.x0, self.y0, self.side = x0, y0, side
        self.mask = feather_mask(side, feather)
        # The part of the box inside the frame, in frame and in box coordinates.
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(source.width, x0 + side), min(source.height, y0 + side)
        if fx1 <= fx0 or fy1 <= fy0:
            raise InputError(f"{avatar.path}: crop box {[x0, y0, side]} lies outside the {source.width}×"
                             f"{source.height} source frames")
        self.frame_box = (slice(fy0, fy1), slice(fx0, fx1))
        self.crop_box = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))

    @property
    def width(self) -> int:
        return self.source.width

    @property
    def height(self) -> int:
        return self.source.height

    def compose(self, render: np.ndarray, clip_frame: int) -> np.ndarray:
        """render: RGB [S, S, 3] uint8 crop → source frame `clip_frame` with it pasted in, [H, W, 3] uint8."""
        out = self.source.frame(clip_frame).copy()
        interp = cv2.INTER_CUBIC if self.side > render.shape[0] else cv2.INTER_AREA
        crop = cv2.resize(render, (self.side, self.side), interpolation=interp)[self.crop_box]
        m = self.mask[self.crop_box]
        region = out[self.frame_box].astype(np.float32)
        out[self.frame_box] = np.clip(region + m * (crop.astype(np.float32) - region) + 0.5, 0, 255).astype(np.uint8)
        return out
