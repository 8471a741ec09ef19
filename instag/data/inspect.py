"""Contact sheet of a dataset dir: frames with landmarks and pose axes, label overlay, background plate,
depth and normal priors, and plots of pose, blink, mouth opening and audio energy over time (OpenCV drawing)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from instag.atomic import atomic_file
from instag.audio.features import energy_envelope
from instag.data.dataset import Dataset
from instag.data.labels import LABEL_COLOURS
from instag.plot import line_plot, put_text

TILE = 256


def _tile(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA)


def _frame_with_tracks(ds: Dataset, i: int) -> np.ndarray:
    img = ds.frame(i).copy()
    tr = ds.tracks
    z = TILE / ds.size
    img = _tile(img)
    for x, y in tr["landmarks"][i]:
        cv2.circle(img, (int(x * z), int(y * z)), 1, (0, 255, 0), -1, cv2.LINE_AA)
    k = ds.intrinsics
    view = tr["viewmats"][i].astype(np.float64)
    axis_len = 0.06  # metres
    pts = np.array([[0, 0, 0], [axis_len, 0, 0], [0, axis_len, 0], [0, 0, -axis_len]], np.float64)
    cam = pts @ view[:3, :3].T + view[:3, 3]
    uv = (cam @ k.T)[:, :2] / cam[:, 2:3] * z
    o = tuple(int(v) for v in uv[0])
    for j, colour in ((1, (255, 0, 0)), (2, (0, 255, 0)), (3, (0, 128, 255))):
        cv2.arrowedLine(img, o, tuple(int(v) for v in uv[j]), colour, 2, cv2.LINE_AA, tipLength=0.2)
    put_text(img, f"frame {i}", 6, 18)
    return img


def _label_overlay(ds: Dataset, i: int) -> np.ndarray:
    lab = ds.label(i)
    colours = np.zeros((256, 3), np.uint8)
    for cls, rgb in LABEL_COLOURS.items():
        colours[cls] = rgb
    over = (0.45 * ds.frame(i) + 0.55 * colours[lab]).astype(np.uint8)
    return _tile(over)


def _depth_tile(ds: Dataset, i: int) -> np.ndarray:
    d = ds.depth(i)
    m = d > 0
    vis = np.zeros(d.shape, np.uint8)
    if m.any():
        lo, hi = np.percentile(d[m], [1, 99])
        vis[m] = np.clip(255 * (hi - d[m]) / max(hi - lo, 1e-6), 0, 255).astype(np.uint8)
    col = cv2.applyColorMap(vis, cv2.COLORMAP_VIRIDIS)[..., ::-1].copy()
    col[~m] = 0
    return _tile(col)


def _normal_tile(ds: Dataset, i: int) -> np.ndarray:
    n = ds.normal(i)
    vis = np.where(np.any(n != 0, -1, keepdims=True), (n * [0.5, -0.5, -0.5] + 0.5) * 255, 0)
    return _tile(vis.astype(np.uint8))


def contact_sheet(ds: Dataset, n_samples: int = 4) -> np.ndarray:
    """The sheet as RGB [H, W, 3] uint8: 3 rows of tiles, then 4 time plots."""
    t = ds.n_frames
    idx = np.linspace(0, t - 1, n_samples).round().astype(int)
    row1 = np.concatenate([_frame_with_tracks(ds, i) for i in idx], 1)
    row2 = np.concatenate([_label_overlay(ds, i) for i in idx], 1)
    bg = _tile(ds.background())
    put_text(bg, "background", 6, 18)
    tiles = [bg]
    for i in idx[1:3]:
        d, nrm = _depth_tile(ds, i), _normal_tile(ds, i)
        put_text(d, f"depth {i}", 6, 18)
        put_text(nrm, f"normal {i}", 6, 18)
        tiles += [d, nrm]
    row3 = np.concatenate(tiles[:n_samples], 1)
    width = row1.shape[1]
    tr = ds.tracks
    euler = Rotation.from_matrix(tr["viewmats"][:, :3, :3].astype(np.float64)).as_euler("yxz", degrees=True)
    euler -= np.median(euler, 0)
    audio, sr = ds.audio()
    energy = energy_envelope(audio, sr, ds.fps, t)
    plots = [
        line_plot(width, 120, [("yaw", euler[:, 0], (255, 90, 90)), ("pitch", euler[:, 1], (90, 255, 90)),
                           ("roll", euler[:, 2], (90, 160, 255))], "head pose (deg about median)", ds.fps),
        line_plot(width, 90, [("blink", tr["blink"], (255, 255, 120))], "blink", ds.fps),
        line_plot(width, 90, [("mouth", tr["mouth_open"], (255, 120, 255))], "mouth opening", ds.fps),
        line_plot(width, 90, [("dB", energy, (120, 255, 255))], "audio energy (300-3000 Hz)", ds.fps),
    ]
    head = np.full((28, width, 3), 24, np.uint8)
    put_text(head, f"{ds.path.name}: {t} frames @ {ds.fps:g} fps, {ds.size}px, f={ds.intrinsics[0, 0]:.0f}px, "
                f"face found {100 * ds.meta['tracking']['face_found_fraction']:.0f}%", 8, 19)
    return np.concatenate([head, row1, row2, row3, *plots], 0)


def write_contact_sheet(ds: Dataset, out: str | Path) -> Path:
    """Render the sheet and write it as PNG atomically."""
    out = Path(out)
    sheet = contact_sheet(ds)
    with atomic_file(out, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), sheet[..., ::-1])
    return out
