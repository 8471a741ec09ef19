"""Paste-back: the rendered head composited into the clip's original full-size frames.

Where the source frames come from: the avatar dir does not hold full-size frames (only the crop's torso layers),
so they are re-decoded from the source clip (instag.avatar.source_video, at the clip's own constant frame rate;
which frame each output frame shows: instag.avatar.source_timing). The clip is looked for, in order: the path
given by the caller (`--source`), `AVATAR/source/<clip>` (where `instag adapt-from-clip` keeps a copy), and the
path recorded in avatar.json provenance. Its sha256 must match the recorded one.

Only the head is pasted, not the whole crop: everything else the avatar replays from the clip (background, torso)
is the source's own picture at full resolution already. By default only the head's lower face is pasted (`region`
"lower_face": mouth, jaw and chin, from a little below the nose, placed by the mouth branch's footprint in each
frame; `lower_face_weight`): the dub changes the mouth, and above it the clip's own eyes, brows and hair are
sharper than a 256² render upscaled 2–3× can be and already move with the clip's head
(benchmarks/render_paste_back_seam_cpu.md: face sharpness 0.89 → 0.95 of the source's on demo2, 0.65 → 0.97 on
KatieHill). "head" pastes the whole rendered head. The crop box (x0, y0, side) in displayed source pixels
may reach outside the frame (edge-replicated there); the render covers it at S² pixels.
The head is the face and mouth branches (alpha α = 1 − (1 − α_face)(1 − α_mouth), premultiplied colour h), laid
over the source frame s as s·(1 − w) + p with w = e·α and p = e·h, e a smoothstep ramp from 0 at the crop's edges
to 1 `feather`·S inside (a head cut by the crop fades into the source instead of ending in a line). So the seam is
the head's own soft outline, with the source's pixels on its far side: their colour and sharpness are the source's.
On its near side the head is matched to them (instag.avatar.seam_match): a colour offset learnt from the ring inside
the outline, and the source's detail finer than a render pixel where the upscaled render agrees with the source.
Where the dub's jaw is higher than the clip's, the clip's chin shows below it (as a longer chin); the avatar's
plate there (a background inpainted behind the head, edged by the torso layer) looked worse on demo2.

w and p are resampled (cubic) from render pixels onto the source pixels of the head's bounding box only,
premultiplied so that no colour spreads where its weight is 0, converted to the source's YUV with its own colour
matrix and blended into a copy of the decoded frame: pixels outside the head are the decoder's, bit for bit.
Rotated sources are worked on in the coded orientation and the output carries the same rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from instag.avatar.bundle import Avatar
from instag.avatar.seam_match import SeamCalibration, SeamMatch
from instag.avatar.source_video import SourceVideo
from instag.data.video import sha256_of
from instag.errors import InputError
from instag.media.mp4 import Colour
from instag.render.avatar import AvatarRender

DEFAULT_FEATHER = 0.06  # the ramp at the crop's edges, as a fraction of the render side
HEAD_ALPHA = 1.0 / 255.0  # render alpha below which nothing is pasted
REGIONS = ("lower_face", "head")  # what of the rendered head is pasted (see `lower_face_weight`); the first is the default
# The lower face, in units of the mouth's width (the mouth branch's footprint): pasted from this far above the mouth's
# centre (below the nose), fading in over the next `_FADE_UP`; and out to this far either side, fading over `_FADE_SIDE`.
_ABOVE_MOUTH, _FADE_UP = 0.6, 0.25
_SIDE, _FADE_SIDE = 1.5, 0.4


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


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def edge_ramp(side: int, width: float) -> np.ndarray:
    """[side, side] float32 weights: 1 inside, a smoothstep ramp to 0 over `width` pixels at the edges."""
    d = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32) + 0.5
    ramp = _smoothstep(d / max(1.0, width))
    return ramp[:, None] * ramp[None, :]


@dataclass
class HeadLayers:
    """One rendered frame as paste-back needs it."""

    head: np.ndarray  # [S, S, 4] float32 face ∪ mouth: premultiplied RGB and alpha, in [0, 1]
    clip_frame: int  # source frame to paste into
    # [S, S] float32 the mouth branch's own alpha (where the mouth is, lips shut or not); None: not known, so the
    # whole head is pasted
    mouth_alpha: np.ndarray | None = None


def head_layers(render: AvatarRender, clip_frame: int) -> HeadLayers:
    """The head of a render, as `PasteBack.compose` takes it."""
    face, mouth = render.face, render.mouth
    rgb = face.image + (1.0 - face.alpha) * mouth.image
    alpha = 1.0 - (1.0 - face.alpha) * (1.0 - mouth.alpha)
    head = torch.cat([rgb, alpha], dim=-1).float().cpu().numpy()
    return HeadLayers(np.ascontiguousarray(head), clip_frame,
                      np.ascontiguousarray(mouth.alpha[..., 0].float().cpu().numpy()))


def lower_face_weight(mouth_alpha: np.ndarray) -> np.ndarray:
    """[S, S] float32 weights of the lower face around the mouth of `mouth_alpha` [S, S]: 1 from a little below
    the nose down (the head's own alpha ends it at the chin) and out to the jaw either side, smoothstep fades
    above and at the sides; all 1 when there is no mouth to place it by.

    The mouth branch is drawn whether the lips are shut or not, so its footprint places the mouth in every frame:
    its alpha-weighted centre, and its width from the horizontal spread (a uniform band of width w has standard
    deviation w / √12)."""
    total = float(mouth_alpha.sum())
    if total < 1.0:
        return np.ones_like(mouth_alpha)
    w = mouth_alpha / total
    cols, rows = w.sum(0), w.sum(1)
    x = np.arange(mouth_alpha.shape[1], dtype=np.float32)
    y = np.arange(mouth_alpha.shape[0], dtype=np.float32)
    cx, cy = float(cols @ x), float(rows @ y)
    width = max(np.sqrt(12.0 * float(cols @ (x - cx) ** 2)), 1.0)
    up = _smoothstep((y - (cy - _ABOVE_MOUTH * width)) / (_FADE_UP * width))
    side = _smoothstep((_SIDE * width - np.abs(x - cx)) / (_FADE_SIDE * width))
    return (up[:, None] * side[None, :]).astype(np.float32)


def region_weight(layers: HeadLayers, region: str) -> np.ndarray | None:
    """[S, S] float32 weight of `region` over the head of `layers`; None where the whole head is pasted."""
    if region == "lower_face" and layers.mouth_alpha is not None:
        return lower_face_weight(layers.mouth_alpha)
    return None


def coded_rect(rect: tuple[int, int, int, int], k: int, coded_w: int, coded_h: int) -> tuple[int, int, int, int]:
    """Displayed (x0, y0, x1, y1) → the same pixels' rect in the coded frame, where displayed = rot90(coded, k)."""
    x0, y0, x1, y1 = rect
    if k == 1:
        return coded_w - y1, x0, coded_w - y0, x1
    if k == 2:
        return coded_w - x1, coded_h - y1, coded_w - x0, coded_h - y0
    if k == 3:
        return y0, coded_h - x1, y1, coded_h - x0
    return rect


class PasteBack:
    """Composite rendered heads into the avatar's source frames (see the module doc)."""

    def __init__(self, avatar: Avatar, source: SourceVideo, render_size: int,
                 feather: float = DEFAULT_FEATHER, match: SeamMatch | None = None, region: str = REGIONS[0]) -> None:
        if region not in REGIONS:
            raise InputError(f"paste-back region {region!r}: one of {', '.join(REGIONS)}")
        x0, y0, side = (int(v) for v in np.asarray(avatar.drive["crop_box"]).reshape(-1)[:3])
        if side <= 0:
            raise InputError(f"{avatar.path / 'drive.npz'}: crop box {[x0, y0, side]} is empty")
        recorded = _recorded_source(avatar)
        if recorded.get("width") and (recorded["width"], recorded["height"]) != (source.width, source.height):
            raise InputError(f"{source.clip}: frames are {source.width}×{source.height}, the avatar was made from "
                             f"{recorded['width']}×{recorded['height']}")
        if not (x0 < source.width and y0 < source.height and x0 + side > 0 and y0 + side > 0):
            raise InputError(f"{avatar.path}: crop box {[x0, y0, side]} lies outside the {source.width}×"
                             f"{source.height} source frames")
        self.source = source
        self.region = region
        self.x0, self.y0, self.side = x0, y0, side
        self.size = render_size
        self.edges = edge_ramp(render_size, feather * render_size)[..., None]  # [S, S, 1]
        self._yuv = yuv_matrix(source.colour)
        self.calibration = SeamCalibration(match or SeamMatch(), render_size)

    def _window(self, weight: np.ndarray) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None:
        """Where weight [S, S] > HEAD_ALPHA: (render window (u0, v0, u1, v1) in render pixels, the displayed source
        rect (x0, y0, x1, y1) covering it, even-aligned and inside the frame); None if there is none."""
        vs, us = np.nonzero(weight > HEAD_ALPHA)
        if us.size == 0:
            return None
        pad = 2  # the cubic warp's support
        u0, v0 = max(0, int(us.min()) - pad), max(0, int(vs.min()) - pad)
        u1, v1 = min(self.size, int(us.max()) + 1 + pad), min(self.size, int(vs.max()) + 1 + pad)
        scale = self.side / self.size
        rx0, ry0 = int(np.floor(self.x0 + u0 * scale)), int(np.floor(self.y0 + v0 * scale))
        rx1, ry1 = int(np.ceil(self.x0 + u1 * scale)), int(np.ceil(self.y0 + v1 * scale))
        rx0, ry0 = max(0, rx0 - rx0 % 2), max(0, ry0 - ry0 % 2)
        rx1, ry1 = min(self.source.width, rx1 + rx1 % 2), min(self.source.height, ry1 + ry1 % 2)
        if rx1 <= rx0 or ry1 <= ry0:
            return None
        return (u0, v0, u1, v1), (rx0, ry0, rx1, ry1)

    def compose(self, layers: HeadLayers) -> np.ndarray:
        """The source frame `layers.clip_frame` with the head pasted in: YUV 4:2:0 planes [H·3/2, W] uint8 of
        the coded frame (what `SourceVideo.frame` gives and `Mp4Writer` takes)."""
        src = self.source
        planes = src.frame(layers.clip_frame).copy()
        weighted = layers.head * self.edges  # p and w
        region = region_weight(layers, self.region)
        if region is not None:
            weighted *= region[..., None]
        found = self._window(weighted[..., 3])
        if found is None:
            return planes
        (u0, v0, u1, v1), rect = found
        k = src.rotation_deg // 90
        window = np.ascontiguousarray(np.rot90(weighted[v0:v1, u0:u1], -k))  # coded orientation
        # YUV is affine in RGB, so the premultiplied p converts as M·p + w·offset and is resampled in YUV: luma
        # at the source's pixels, chroma at its half-resolution samples, the source's own planes never in RGB
        matrix, offset = self._yuv
        p, w = window[..., :3], window[..., 3:]
        yuv_w = np.dstack([p @ matrix.T + w * offset, w]).astype(np.float32)  # [h, w, 4]: Y, U, V, w
        to_window = self._coded_to_window(rect, (u0, v0, u1, v1), k)
        if self.calibration.learning:
            self.calibration.update(yuv_w, self._source_on_window(planes, rect, to_window, k, yuv_w.shape[:2]))
        self.calibration.recolour(yuv_w)
        luma = self._warp(np.ascontiguousarray(yuv_w[..., [0, 3]]), to_window, rect, k, 1)
        chroma = self._warp(np.ascontiguousarray(yuv_w[..., 1:]), to_window, rect, k, 2)
        cx0, cy0, cx1, cy1 = coded_rect(rect, k, src.coded_width, src.coded_height)
        y, u, v = yuv_planes(planes, src.coded_width, src.coded_height)
        luma_at = (slice(cy0, cy1), slice(cx0, cx1))
        self.calibration.add_detail(luma, y[luma_at], self.side / self.size)
        chroma_at = (slice(cy0 // 2, cy1 // 2), slice(cx0 // 2, cx1 // 2))
        for plane, at, value, weight in ((y, luma_at, luma[..., 0], luma[..., 1]),
                                         (u, chroma_at, chroma[..., 0], chroma[..., 2]),
                                         (v, chroma_at, chroma[..., 1], chroma[..., 2])):
            keep = 1.0 - np.clip(weight, 0.0, 1.0)
            plane[at] = np.clip(plane[at] * keep + value + 0.5, 0.0, 255.0).astype(np.uint8)
        return planes

    def _coded_to_window(self, rect: tuple[int, int, int, int], window: tuple[int, int, int, int],
                         k: int) -> np.ndarray:
        """[3, 3] affine: a pixel of the coded frame's `rect` (relative to its corner) → the same point in the
        render window turned to the coded orientation (np.rot90(window, -k)), in that window's pixels."""
        rx0, ry0, rx1, ry1 = rect
        u0, v0, u1, v1 = window
        s = self.size / self.side
        # displayed pixel centre (x + rx0 + ½) lies at render coordinate (x + rx0 − x0 + ½)·s − ½
        shown_to_window = np.array([[s, 0, (rx0 - self.x0 + 0.5) * s - 0.5 - u0],
                                    [0, s, (ry0 - self.y0 + 0.5) * s - 0.5 - v0], [0, 0, 1]])
        coded_w, coded_h = (rx1 - rx0, ry1 - ry0) if k % 2 == 0 else (ry1 - ry0, rx1 - rx0)
        turned_w, turned_h = (u1 - u0, v1 - v0) if k % 2 == 0 else (v1 - v0, u1 - u0)
        return (np.linalg.inv(_turn(k, turned_w, turned_h)) @ shown_to_window @ _turn(k, coded_w, coded_h))

    def _source_on_window(self, planes: np.ndarray, rect: tuple[int, int, int, int], coded_to_window: np.ndarray,
                          k: int, shape: tuple[int, int]) -> np.ndarray:
        """The source's Y, U, V [h, w, 3] float32 at the pixels of the turned render window (shape (h, w)):
        the coded frame's `rect` area-averaged to about the render's scale, then resampled (linear) onto it."""
        src = self.source
        cx0, cy0, cx1, cy1 = coded_rect(rect, k, src.coded_width, src.coded_height)
        y, u, v = yuv_planes(planes, src.coded_width, src.coded_height)
        cw, ch = cx1 - cx0, cy1 - cy0
        s = self.size / self.side
        sw, sh = max(1, round(cw * s)), max(1, round(ch * s))
        small = np.dstack([cv2.resize(plane, (sw, sh), interpolation=cv2.INTER_AREA)
                           for plane in (y[cy0:cy1, cx0:cx1], u[cy0 // 2:cy1 // 2, cx0 // 2:cx1 // 2],
                                         v[cy0 // 2:cy1 // 2, cx0 // 2:cx1 // 2])]).astype(np.float32)
        # a pixel centre of `small` → the rect's (luma) pixel coordinates; chroma covers the same area in half the
        # samples, so the same map holds for it
        small_to_rect = np.array([[cw / sw, 0, 0.5 * cw / sw - 0.5], [0, ch / sh, 0.5 * ch / sh - 0.5], [0, 0, 1]])
        return cv2.warpAffine(small, (coded_to_window @ small_to_rect)[:2], (shape[1], shape[0]),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _warp(self, layer: np.ndarray, coded_to_window: np.ndarray, rect: tuple[int, int, int, int], k: int,
              step: int) -> np.ndarray:
        """The turned window's layer [h, w, C] resampled (cubic) onto the coded frame's samples over `rect`, one
        every `step` pixels (2: the 4:2:0 chroma samples, centred on their 2×2 luma pixels); 0 outside it."""
        rx0, ry0, rx1, ry1 = rect
        w, h = (rx1 - rx0, ry1 - ry0) if k % 2 == 0 else (ry1 - ry0, rx1 - rx0)
        sample = np.array([[step, 0, (step - 1) / 2], [0, step, (step - 1) / 2], [0, 0, 1]])
        to_layer = (coded_to_window @ sample)[:2]
        return cv2.warpAffine(layer, to_layer, (w // step, h // step), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _turn(k: int, width: int, height: int) -> np.ndarray:
    """[3, 3] affine: pixel (x, y) of a width × height array → the same pixel in np.rot90(array, k)."""
    return {0: np.eye(3),
            1: np.array([[0, 1, 0], [-1, 0, width - 1], [0, 0, 1]]),
            2: np.array([[-1, 0, width - 1], [0, -1, height - 1], [0, 0, 1]]),
            3: np.array([[0, -1, height - 1], [1, 0, 0], [0, 0, 1]])}[k]


# (Kr, Kb) of the YCbCr matrices by ffmpeg colour space; others (unspecified included) get BT.601, as swscale does
LUMA_WEIGHTS = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
BT601 = (0.299, 0.114)
FULL_RANGE = 2  # ffmpeg's AVCOL_RANGE_JPEG


def yuv_matrix(colour: Colour) -> tuple[np.ndarray, np.ndarray]:
    """(M [3, 3], offset [3]): Y, U, V in 0–255 levels = M · (R, G, B in [0, 1]) + offset, for the source's colour
    space and range."""
    kr, kb = LUMA_WEIGHTS.get(colour.colorspace, BT601)
    kg = 1.0 - kr - kb
    luma = np.array([kr, kg, kb])
    blue = (np.array([0.0, 0.0, 1.0]) - luma) / (2 * (1 - kb))  # Pb in [-½, ½]
    red = (np.array([1.0, 0.0, 0.0]) - luma) / (2 * (1 - kr))  # Pr
    if colour.color_range == FULL_RANGE:
        return np.stack([255 * luma, 255 * blue, 255 * red]), np.array([0.0, 128.0, 128.0])
    return np.stack([219 * luma, 224 * blue, 224 * red]), np.array([16.0, 128.0, 128.0])


def yuv_planes(planes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of Y [H, W], U and V [H/2, W/2] in YUV 4:2:0 planes [H·3/2, W]."""
    y = planes[:height]
    u = planes[height: height + height // 4].reshape(height // 2, width // 2)
    v = planes[height + height // 4:].reshape(height // 2, width // 2)
    return y, u, v
