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
# Long hair is cut in two where the labels split head from torso (`data.labels.label_map`): rendered above, the
# clip's own below. The rendered strands never match the real ones exactly, so the join shows as a step. Over this
# fraction of the side above the cut the clip's own hair is drawn over the render, fading out upwards.
HAIR_BAND = 0.05
UNDER = 255  # a torso layer's alpha: drawn under the head; 1–254: over it with that weight (the hair band)


def torso_layer(frame: np.ndarray, label: np.ndarray, torso_id: int, chin_ids: tuple[int, ...] = (),
                hair_id: int | None = None) -> np.ndarray:
    """RGBA [S, S, 4] uint8: the frame's neck/torso pixels (label [S, S] == torso_id) at alpha UNDER; everything
    else transparent. Where the neck's top meets a pixel labelled one of `chin_ids` (face skin, lips: the jaw above
    it), that column's neck colour, from just below its shadowed top rows, is carried straight up over those
    labels for NECK_REACH of the side. Where the torso's top meets `hair_id` (hair cut by the labels), the hair
    pixels of the HAIR_BAND above it get alpha 1–254, falling from the cut upwards: `over_head` draws them over
    the head."""
    torso = label == torso_id
    alpha = np.where(torso, UNDER, 0).astype(np.uint8)
    out = np.concatenate([frame, alpha[..., None]], axis=-1)
    if not torso.any():
        return out
    side = label.shape[0]
    cols = np.nonzero(torso.any(axis=0))[0]
    top = torso[:, cols].argmax(axis=0)  # [X] each column's highest neck row
    if hair_id is not None:
        _hair_band(out, label, cols, top, hair_id)
    if not chin_ids:
        return out
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


def _hair_band(out: np.ndarray, label: np.ndarray, cols: np.ndarray, top: np.ndarray, hair_id: int) -> None:
    """Alpha of the hair band (see `torso_layer`) in `out` [S, S, 4], for the columns `cols` whose torso starts at
    row `top` [X]."""
    reach = max(1, round(HAIR_BAND * label.shape[0]))
    cut = (top > 0) & (label[np.maximum(top - 1, 0), cols] == hair_id)
    cols, top = cols[cut], top[cut]
    for k in range(1, reach + 1):  # k rows above the cut
        rows = top - k
        ok = (rows >= 0) & (label[np.maximum(rows, 0), cols] == hair_id)
        out[rows[ok], cols[ok], 3] = round((UNDER - 1) * (reach + 1 - k) / (reach + 1))


def over_plate(plate: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """plate [S, S, 3] uint8 with an RGBA layer's UNDER pixels [S, S, 4] pasted over it."""
    out = plate.copy()
    on = layer[..., 3] == UNDER
    out[on] = layer[..., :3][on]
    return out


def over_head(layer: np.ndarray) -> np.ndarray | None:
    """The part of a torso layer [S, S, 4] drawn over the head: RGBA [S, S, 4] uint8 (alpha its weight), or None
    when it has none (a layer made before the hair band, or no hair reaching the torso)."""
    over = (layer[..., 3] > 0) & (layer[..., 3] < UNDER)
    if not over.any():
        return None
    return np.where(over[..., None], layer, 0).astype(np.uint8)
