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


# How far, as a fraction of the frame's side, a replayed torso layer carries the neck up under the chin: a dub's
# jaw that sits higher than the replayed frame's would otherwise leave a sliver of the empty background between the
# two (a light line under the chin). The head is drawn over the layer, so only that sliver shows.
NECK_REACH = 0.08
NECK_EDGE = 2  # rows at the neck label's top that hold the chin's shadow; filled like the reach above them


def torso_layer(frame: np.ndarray, label: np.ndarray, torso_id: int, chin_ids: tuple[int, ...] = ()) -> np.ndarray:
    """RGBA [S, S, 4] uint8: the frame's neck/torso pixels (label [S, S] == torso_id), opaque; everything else
    transparent. Where the neck's top meets a pixel labelled one of `chin_ids` (face skin, lips: the jaw above
    it), that column's neck colour, from just below its shadowed top rows, is carried straight up over those
    labels for NECK_REACH of the side."""
    torso = label == torso_id
    alpha = np.where(torso, 255, 0).astype(np.uint8)
    out = np.concatenate([frame, alpha[..., None]], axis=-1)
    if not chin_ids or not torso.any():
        return out
    side = label.shape[0]
    cols = np.nonzero(torso.any(axis=0))[0]
    top = torso[:, cols].argmax(axis=0)  # [X] each column's highest neck row
    under_chin = (top > 0) & np.isin(label[np.maximum(top - 1, 0), cols], chin_ids)
    cols, top = cols[under_chin], top[under_chin]
    if len(cols) == 0:
        return out
    colour = frame[np.minimum(top + NECK_EDGE + 1, side - 1), cols]  # [X, 3]
    rows = np.arange(side)[:, None]  # [S, 1]
    reach = max(1, round(NECK_REACH * side))
    band = (rows >= top - reach) & (rows <= top + NECK_EDGE)  # [S, X]
    fill = band & (np.isin(label[:, cols], chin_ids) | torso[:, cols])
    ys, xs = np.nonzero(fill)
    out[ys, cols[xs], :3] = colour[xs]
    out[ys, cols[xs], 3] = 255
    return out


def over_plate(plate: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """plate [S, S, 3] uint8 with an RGBA layer [S, S, 4] (binary alpha) pasted over it."""
    out = plate.copy()
    on = layer[..., 3] > 127
    out[on] = layer[..., :3][on]
    return out
