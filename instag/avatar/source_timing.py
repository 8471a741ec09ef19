"""Paste-back at the source's own frame rate, which may differ from the avatar's (a 30 fps phone clip preprocessed
at 25 fps).

Output frame i lasts 1/rate. It shows source frame s = ping-pong(i) over the source frames that span the clip frames
the avatar replays, so the body moves as it did; the head takes the pose and blink of the clip at that frame's time
(the two drive rows around it interpolated: the head stays on the body between the avatar's frames) and speaks the
audio at time i / rate (the nearest of the avatar-rate speech features).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from instag.avatar.driving import DrivenFrame, Driver, pingpong_index
from instag.motion.audio import frame_audio_windows
from instag.render.avatar import FrameCondition


def interpolate_viewmat(a: Tensor, b: Tensor, t: float) -> Tensor:
    """[4, 4] world → camera matrices a, b → the pose a fraction t of the way from a to b (rotation projected
    back onto the rotations, translation linear)."""
    if t == 0.0:
        return a
    m = (1.0 - t) * a + t * b
    u, _, vh = torch.linalg.svd(m[:3, :3])
    rot = u @ vh
    if torch.det(rot) < 0:
        u = u.clone()
        u[:, -1] = -u[:, -1]
        rot = u @ vh
    out = m.clone()
    out[:3, :3] = rot
    return out


class SourceTimedFrames:
    """`DrivenFrame`s of a dub `n_frames` long at the source's `rate` (see the module doc); `clip_frame` is the
    source frame at that rate."""

    def __init__(self, driver: Driver, rate: float, n_frames: int) -> None:
        self.driver = driver
        self.rate = rate
        self.n_frames = n_frames
        self.fps = float(driver.avatar.meta["fps"])
        clip = np.asarray(driver.avatar.drive["frame_index"], np.float64)  # [C] clip frame of each drive row
        self._clip = clip
        # source frames (at `rate`) from the first replayed clip frame's time to the last one's end
        first, end = clip.min() / self.fps, (clip.max() + 1) / self.fps
        self.first_source = int(round(first * rate))
        self.n_source = max(1, int(np.floor(end * rate + 1e-6)) - self.first_source)

    def condition(self, i: int) -> DrivenFrame:
        d = self.driver
        source = self.first_source + pingpong_index(i, self.n_source)
        # the drive row (fractional) whose clip frame was shown at this source frame's time
        row = float(np.interp(source / self.rate * self.fps, self._clip, np.arange(self._clip.size)))
        j0 = int(np.floor(row))
        j1, t = min(j0 + 1, self._clip.size - 1), row - j0
        audio = min(int(round(i * self.fps / self.rate)), d.n_frames - 1)
        cond = FrameCondition(
            audio_windows=frame_audio_windows(d.features, audio, d.avatar.cfg.audio),
            expression=(1.0 - t) * d.expressions[j0] + t * d.expressions[j1],
            viewmat=interpolate_viewmat(d.viewmats[j0], d.viewmats[j1], t),
            K=d.K,
            width=d.size,
            height=d.size,
            background=d.layers(j0 if t < 0.5 else j1)[0],
        )
        return DrivenFrame(i, source, cond)

    def __iter__(self) -> Iterator[DrivenFrame]:
        for i in range(self.n_frames):
            yield self.condition(i)
