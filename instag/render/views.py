"""The angles an avatar can be shown from: those of the training views it was fitted on (beyond them the 3D head
tears away from the clip's 2D torso and hair layer, and its unseen sides were never fitted). Adaptation writes
them into avatar.json; the preview bounds its orbit to them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from instag.errors import InputError

MAX_PITCH = math.radians(80.0)
# The share of training views whose angles bound the orbit at each end: a few frames where the tracker slipped
# must not widen it.
VIEW_TAIL = 0.05


@dataclass(frozen=True)
class ViewRange:
    """Bounds (radians) of the orbit's yaw and pitch: the angles an avatar can show."""

    yaw: tuple[float, float] = (-math.pi, math.pi)
    pitch: tuple[float, float] = (-MAX_PITCH, MAX_PITCH)

    def describe(self) -> dict[str, list[float]]:
        """In degrees, as the page and avatar.json take them."""
        return {"yaw_deg": [round(math.degrees(v), 2) for v in self.yaw],
                "pitch_deg": [round(math.degrees(v), 2) for v in self.pitch]}


ANY_VIEW = ViewRange()  # no bounds but the pitch limit


def view_angles(viewmats: np.ndarray) -> np.ndarray:
    """viewmats [T, 4, 4] world → camera (the head's frame to the camera) → [T, 2] (yaw, pitch) in radians of
    each view turned as the orbit turns (R_t = Rx(pitch) · Ry(yaw) · R_0), relative to the first view."""
    rel = viewmats[:, :3, :3] @ viewmats[0, :3, :3].T  # [T, 3, 3]
    yaw = np.arcsin(np.clip(rel[:, 0, 2], -1.0, 1.0))
    pitch = np.arctan2(rel[:, 2, 1], rel[:, 1, 1])
    return np.stack([yaw, pitch], axis=1)


def view_range(viewmats: np.ndarray) -> ViewRange:
    """The orbit an avatar can show, from its training views viewmats [T, 4, 4]: how far (5th to 95th percentile)
    the head turned each way from its median view while the clip was filmed."""
    angles = view_angles(np.asarray(viewmats, np.float64))
    lo, mid, hi = np.quantile(angles, [VIEW_TAIL, 0.5, 1.0 - VIEW_TAIL], axis=0)  # [2] each
    return ViewRange((float(lo[0] - mid[0]), float(hi[0] - mid[0])), (float(lo[1] - mid[1]), float(hi[1] - mid[1])))


def view_range_from(doc: Any, where: str) -> ViewRange:
    """The `ViewRange` avatar.json describes ({"yaw_deg": [lo, hi], "pitch_deg": [lo, hi]}, lo ≤ 0 ≤ hi)."""
    try:
        yaw, pitch = (tuple(float(v) for v in doc[key]) for key in ("yaw_deg", "pitch_deg"))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: view_range must hold yaw_deg and pitch_deg as [low, high] degrees") from exc
    for name, bounds, limit in (("yaw_deg", yaw, 180.0), ("pitch_deg", pitch, math.degrees(MAX_PITCH))):
        if len(bounds) != 2 or not -limit <= bounds[0] <= 0.0 <= bounds[1] <= limit:
            raise InputError(f"{where}: view_range.{name} {list(bounds)} must run from ≥ -{limit:g} through 0 to "
                             f"≤ {limit:g}")
    return ViewRange((math.radians(yaw[0]), math.radians(yaw[1])), (math.radians(pitch[0]), math.radians(pitch[1])))
