"""Does the pasted face match the source around it: the head pasted into the real source frames by the dubbing
path (`PasteBack.compose`) with and without the seam matching (instag.avatar.seam_match), scored against them.

Frames are composed in order, as a dub composes them, so the colour offset (learnt as it goes) is what a dub
would have: first the first `SeamMatch.frames` training frames (the clip frames a dub replays) driven by the audio
of another moment, so the mouth differs from the clip's (not scored); then, `n_frames` of each scored:

- dub frames (the training frames after those, each driven by another moment's audio; what a dub shows): the seam's
  colour, the face's sharpness, and how much of the source's fine detail the head took over in the mouth (where
  the dub moved the lips, the clip's old edges should stay out) against the rest of the face;
- held-out frames (the test split, after them in the clip, each driven by its own pose and audio): the same, and PSNR / SSIM of the face
  against the source frame it replaces (the source is the ground truth there).

Figures: face = the tracked landmarks' box (as `instag eval`, at the source's scale); sharpness = the face's mean
absolute Laplacian over the source's (1: as sharp as the video, below 1 softer), and the same in the mouth's box
(always the render's, whatever is pasted); seam = the ring just inside the
head's pasted outline (weight ≥ 0.98, within 4 % of the crop side of the 0.5 contour), where the pasted pixels
meet the source's: mean CIE76 ΔE per pixel, the ΔE of the ring's mean colour (a cast), and the signed mean RGB
difference; detail kept = energy of what the variant added over the plain paste of the same colour, over the
source's detail band energy (the frame less its Gaussian blur at one render pixel), in the mouth's box and in the
rest of the face.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from instag.avatar.bundle import load_avatar
from instag.avatar.paste_back import (
    HeadLayers,
    PasteBack,
    head_layers,
    region_weight,
    yuv_matrix,
    yuv_planes,
)
from instag.avatar.seam_match import SeamMatch
from instag.avatar.source_video import SourceVideo
from instag.data.dataset import load_dataset
from instag.data.facemesh import LOWER_LIP_INNER, MOUTH_LEFT, MOUTH_RIGHT, UPPER_LIP_INNER
from instag.errors import InputError
from instag.eval import metrics as M
from instag.eval.runner import DatasetDrive


@dataclass(frozen=True)
class Variant:
    """One way to paste: the seam matching, and what of the head is pasted (`PasteBack`'s region)."""

    match: SeamMatch
    region: str = "head"


VARIANTS = {"none": Variant(SeamMatch(colour=False, detail=False)), "colour": Variant(SeamMatch(detail=False)),
            "detail": Variant(SeamMatch(colour=False)), "both": Variant(SeamMatch()),
            "lower_face_colour": Variant(SeamMatch(detail=False), "lower_face"),
            "lower_face": Variant(SeamMatch(), "lower_face")}
RING = 0.04  # the scored seam ring's width, as a fraction of the crop side


def to_rgb(planes: np.ndarray, source: SourceVideo) -> np.ndarray:
    """YUV 4:2:0 planes [H·3/2, W] uint8 (coded) → the frame as shown, RGB [H', W', 3] float32 in 0–255, with
    the source's own colour matrix and range."""
    y, u, v = yuv_planes(planes, source.coded_width, source.coded_height)
    up = [cv2.resize(c, (source.coded_width, source.coded_height), interpolation=cv2.INTER_LINEAR) for c in (u, v)]
    matrix, offset = yuv_matrix(source.colour)
    yuv = np.dstack([y, *up]).astype(np.float32) - offset.astype(np.float32)
    rgb = yuv @ np.linalg.inv(matrix).T.astype(np.float32) * 255.0
    return np.rot90(np.clip(rgb, 0, 255), source.rotation_deg // 90)


def shown_weight(layers: HeadLayers, edges: np.ndarray, region: str, crop: tuple[int, int, int],
                 shape: tuple[int, int]) -> np.ndarray:
    """The paste weight (alpha × edge ramp, × the lower face's weight for that region) of `layers`, edges
    [S, S, 1], on the shown frame's pixels [H, W] (shape), the crop (x0, y0, side) in shown pixels."""
    x0, y0, side = crop
    s = layers.head.shape[0] / side
    weight = layers.head[..., 3] * edges[..., 0]
    part = region_weight(layers, region)
    if part is not None:
        weight = weight * part
    # shown pixel centre (x + ½) lies at render coordinate (x − x0 + ½)·s − ½
    to_render = np.array([[s, 0, (0.5 - x0) * s - 0.5], [0, s, (0.5 - y0) * s - 0.5]])
    return cv2.warpAffine(np.ascontiguousarray(weight), to_render, (shape[1], shape[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2GRAY)


def _sharpness(rgb: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(_grey(rgb), cv2.CV_32F)).mean())


def _lab(rgb: np.ndarray) -> np.ndarray:
    """[N, 3] RGB in 0–255 → [N, 3] CIE Lab."""
    return cv2.cvtColor(np.ascontiguousarray(rgb[None], dtype=np.float32) / 255.0, cv2.COLOR_RGB2LAB)[0]


def mouth_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the mouth of face-mesh landmarks [478, 2]: 1.5 mouth widths by 1.05."""
    cx, cy = landmarks[[MOUTH_RIGHT, MOUTH_LEFT, UPPER_LIP_INNER, LOWER_LIP_INNER]].mean(0)
    half = 0.75 * float(np.linalg.norm(landmarks[MOUTH_LEFT] - landmarks[MOUTH_RIGHT]))
    return int(cx - half), int(cy - 0.7 * half), int(cx + half), int(cy + 0.7 * half)


def _box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return mask


class _Scene:
    """One frame's source picture and regions (shown pixels)."""

    def __init__(self, src: np.ndarray, landmarks: np.ndarray, weight: np.ndarray, ring_px: float, sigma: float):
        h, w = src.shape[:2]
        self.src = src
        x0, y0, x1, y1 = M.face_box(landmarks, max(h, w))
        self.face = (x0, y0, min(x1, w), min(y1, h))
        inside = cv2.distanceTransform((weight >= 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        self.ring = (weight >= 0.98) & (inside <= ring_px)
        self.mouth_box = mouth_box(landmarks)
        self.mouth = _box_mask((h, w), self.mouth_box)
        self.rest = _box_mask((h, w), self.face) & ~self.mouth
        grey = _grey(src)
        self.detail = grey - cv2.GaussianBlur(grey, (0, 0), sigma)

    def score(self, out: np.ndarray, plain: np.ndarray, ground_truth: bool) -> dict[str, Any]:
        x0, y0, x1, y1 = self.face
        pred, gt = out[y0:y1, x0:x1], self.src[y0:y1, x0:x1]
        mine, theirs = out[self.ring], self.src[self.ring]
        added = _grey(out) - _grey(plain)
        mx0, my0, mx1, my1 = (max(0, v) for v in self.mouth_box)
        mouth_pred, mouth_src = out[my0:my1, mx0:mx1], self.src[my0:my1, mx0:mx1]
        row = {"face_sharpness": _sharpness(pred) / max(_sharpness(gt), 1e-6),
               "mouth_sharpness": _sharpness(mouth_pred) / max(_sharpness(mouth_src), 1e-6),
               "seam_delta_e": float(np.linalg.norm(_lab(mine) - _lab(theirs), axis=-1).mean()),
               "seam_cast_delta_e": float(np.linalg.norm(_lab(mine.mean(0, keepdims=True))
                                                         - _lab(theirs.mean(0, keepdims=True)))),
               "seam_rgb_bias": (mine - theirs).mean(0).tolist(),
               "detail_kept_mouth": float((added[self.mouth] ** 2).sum() / (self.detail[self.mouth] ** 2).sum()),
               "detail_kept_rest_of_face": float((added[self.rest] ** 2).sum() / (self.detail[self.rest] ** 2).sum())}
        if ground_truth:
            pred8, gt8 = np.round(pred).astype(np.uint8), np.round(gt).astype(np.uint8)
            row |= {"face_psnr": M.psnr(pred8, gt8), "face_ssim": M.ssim(pred8, gt8)}
        return row


def _spread(frames: np.ndarray, n: int) -> list[int]:
    return sorted({int(v) for v in frames[np.linspace(0, frames.size - 1, min(n, frames.size)).round().astype(int)]})


def compare_seams(avatar: str | Path, dataset: str | Path, n_frames: int = 24,
                  variants: dict[str, Variant] | None = None) -> dict[str, Any]:
    """The figures of the module doc per variant: means over `n_frames` dub frames and `n_frames` held-out frames,
    and the colour offset each variant learnt."""
    variants = variants or VARIANTS
    av = load_avatar(avatar)
    ds = load_dataset(dataset)
    test, train = np.asarray(ds.test_indices), np.asarray(ds.train_indices)
    frames = max(v.match.frames for v in variants.values())
    if test.size == 0 or train.size <= frames:
        raise InputError(f"{ds.path}: needs test frames and over {frames} training frames (--test-from)")
    picks = {"dub": _spread(train[frames:], n_frames), "held_out": _spread(test, n_frames)}
    drive = DatasetDrive(av, ds)
    n_audio = drive.features.shape[0]
    tracks = ds.tracks
    background = torch.zeros(av.size, av.size, 3)  # only the head's layers are pasted
    box = ds.meta["crop_box"]
    crop = (int(box["x0"]), int(box["y0"]), int(box["side"]))
    if tuple(int(v) for v in np.asarray(av.drive["crop_box"]).reshape(-1)[:3]) != crop:
        raise InputError(f"{avatar}: its crop box is not dataset {ds.path}'s (made from another clip?)")
    scale = crop[2] / ds.size

    def head(t: int, own_audio: bool) -> HeadLayers:
        audio_t = t if own_audio else (t + n_audio // 2) % n_audio  # another moment's speech: a dub
        return head_layers(av.render(drive.condition(t, background, av.size, audio_t)), t)

    # each variant's plain twin (same region and colour, no detail) is what its added detail is measured against
    plain_of = {name: next((n for n, w in variants.items()
                            if not w.match.detail and w.match.colour == v.match.colour and w.region == v.region), None)
                for name, v in variants.items()}
    source = SourceVideo(Path(ds.meta["source"]["path"]), ds.fps)
    sums: dict[str, dict[str, dict[str, Any]]] = {"dub": {n: {} for n in variants}, "held_out": {n: {} for n in variants}}
    seconds = dict.fromkeys(variants, 0.0)
    try:
        pastes = {name: PasteBack(av, source, av.size, match=v.match, region=v.region) for name, v in variants.items()}
        with torch.no_grad():
            for kind, run in (("first", train[:frames]), ("dub", train[frames:]), ("held_out", test)):
                scored = set(picks.get(kind, ()))
                for t in (int(v) for v in run):  # every frame in order, as a dub composes them; some scored
                    layers = head(t, own_audio=kind == "held_out")
                    source.frame(t)  # decoded before the clock starts: compose_ms is the compositing alone
                    outs = {}
                    for name, paste in pastes.items():
                        t0 = time.perf_counter()
                        outs[name] = paste.compose(layers)
                        seconds[name] += time.perf_counter() - t0
                    if t not in scored:
                        continue
                    src = to_rgb(source.frame(t), source)
                    edges = next(iter(pastes.values())).edges
                    landmarks = tracks["landmarks"][t] * scale + np.array(crop[:2])
                    scenes = {region: _Scene(src, landmarks, shown_weight(layers, edges, region, crop, src.shape[:2]),
                                             RING * crop[2], scale)
                              for region in {v.region for v in variants.values()}}
                    rgb = {name: to_rgb(planes, source) for name, planes in outs.items()}
                    for name, v in variants.items():
                        plain = rgb[plain_of[name]] if plain_of[name] else rgb[name]
                        _accumulate(sums[kind][name], scenes[v.region].score(rgb[name], plain, kind == "held_out"))
    finally:
        source.close()
    return {"avatar": str(avatar), "dataset": str(dataset), "crop_side_px": crop[2], "avatar_size": av.size,
            "first_frames": frames, "scored_frames": picks,
            "variants": {name: {"match": asdict(variants[name].match), "region": variants[name].region,
                                "offset_yuv": pastes[name].calibration.offset.tolist(),
                                "compose_ms": 1e3 * seconds[name] / (train.size + test.size),
                                **{kind: {k: (np.asarray(v) / len(picks[kind])).tolist() for k, v in sums[kind][name].items()}
                                   for kind in picks}}
                         for name in variants}}


def _accumulate(into: dict[str, Any], row: dict[str, Any]) -> None:
    for k, v in row.items():
        into[k] = np.asarray(v, dtype=np.float64) + into.get(k, 0.0)
