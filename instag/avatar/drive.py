"""Driving signals shared by training, rendering and evaluation: the expression condition of a frame and the
background plate with the clip's torso replayed."""

from __future__ import annotations

import numpy as np

from instag.errors import InputError


def expression_matrix(tracks: dict[str, np.ndarray], dim: int) -> np.ndarray:
    """Per-frame expression condition [T, dim]: blink, then the tracked expression signals, as many as fit."""
    blink = np.asarray(tracks["blink"], dtype=np.float32)[:, None]
    expr = np.asarray(tracks["expression"], dtype=np.float32)
    out = np.concatenate([blink, expr], axis=1)
    if out.shape[1] < dim:
        raise InputError(f"model.expression_dim {dim}: the tracks have only {out.shape[1]} expression signals")
    return out[:, :dim]


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
