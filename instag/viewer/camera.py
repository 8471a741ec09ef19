"""The preview's orbit camera: the clip's replayed camera turned around the head centre and moved along the line
to it (zoom), so the head stays where it was on screen while the viewpoint changes. The turn is bounded to the
angles the avatar was trained from (`view_range`): beyond them the 3D head tears away from the clip's 2D torso and
hair layer, and its unseen sides were never fitted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from instag.render.views import ANY_VIEW, MAX_PITCH, ViewRange

ZOOM_RANGE = (0.5, 4.0)


@dataclass(frozen=True)
class Orbit:
    """yaw (about the camera's vertical axis) and pitch (about its horizontal axis) in radians; zoom > 1 moves the
    camera closer to the head centre (its distance divided by zoom)."""

    yaw: float = 0.0
    pitch: float = 0.0
    zoom: float = 1.0

    def clamped(self, view: ViewRange = ANY_VIEW) -> Orbit:
        """The same orbit with yaw wrapped to (−π, π], yaw and pitch within `view` (pitch within ±80° at most)
        and zoom within ZOOM_RANGE; non-finite values become the identity's."""
        yaw = self.yaw if math.isfinite(self.yaw) else 0.0
        pitch = self.pitch if math.isfinite(self.pitch) else 0.0
        zoom = self.zoom if math.isfinite(self.zoom) and self.zoom > 0 else 1.0
        yaw = min(max(math.remainder(yaw, 2 * math.pi), view.yaw[0]), view.yaw[1])
        pitch = min(max(pitch, view.pitch[0], -MAX_PITCH), view.pitch[1], MAX_PITCH)
        return Orbit(yaw, pitch, min(max(zoom, ZOOM_RANGE[0]), ZOOM_RANGE[1]))

    @property
    def is_identity(self) -> bool:
        return self.yaw == 0.0 and self.pitch == 0.0 and self.zoom == 1.0


def orbit_viewmat(viewmat: Tensor, centre: Tensor, orbit: Orbit) -> Tensor:
    """viewmat [4, 4] world → camera (OpenCV axes), centre [3] world → the orbited viewmat [4, 4].

    In camera space the head centre sits at p. The scene is turned about p by R = Rx(pitch) · Ry(yaw) and p is
    brought to p / zoom (the same ray, so the centre keeps its pixel): x' = R (x − p) + p / zoom.
    """
    if orbit.is_identity:
        return viewmat
    o = orbit.clamped()
    p = viewmat[:3, :3] @ centre + viewmat[:3, 3]  # [3]
    cy, sy, cp, sp = math.cos(o.yaw), math.sin(o.yaw), math.cos(o.pitch), math.sin(o.pitch)
    ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]], dtype=viewmat.dtype, device=viewmat.device)
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]], dtype=viewmat.dtype, device=viewmat.device)
    rot = rx @ ry
    m = torch.eye(4, dtype=viewmat.dtype, device=viewmat.device)
    m[:3, :3] = rot
    m[:3, 3] = p / o.zoom - rot @ p
    return m @ viewmat
