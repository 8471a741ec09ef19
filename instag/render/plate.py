"""The background plate of a frame: the clip's neck and torso pasted over the empty background, in training,
rendering and evaluation alike."""

from __future__ import annotations

import numpy as np


def paste_torso(plate: np.ndarray, frame: np.ndarray, label: np.ndarray, torso_id: int) -> np.ndarray:
    """Background plate [S, S, 3] uint8 with the frame's neck/torso pixels (label == torso_id) pasted in."""
    torso = label == torso_id
    out = plate.copy()
    out[torso] = frame[torso]
    return out


def torso_layer(frame: np.ndarray, label: np.ndarray, torso_id: int) -> np.ndarray:
    """RGBA [S, S, 4] uint8: the frame's neck/torso pixels, opaque; everything else transparent."""
    alpha = np.where(label == torso_id, 255, 0).astype(np.uint8)
    return np.concatenate([frame, alpha[..., None]], axis=-1)


def over_plate(plate: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """plate [S, S, 3] uint8 with an RGBA layer [S, S, 4] (binary alpha) pasted over it."""
    out = plate.copy()
    on = layer[..., 3] > 127
    out[on] = layer[..., :3][on]
    return out
