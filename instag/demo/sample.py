"""The demo's sample clip: a real face talking, made from a public-domain portrait and synthetic speech.

The portrait is scikit-image's bundled `astronaut` (Eileen Collins, NASA, public domain); nothing is downloaded.
mediapipe's face mesh (bundled with its wheel) finds her landmarks once. Each frame then
  * drops the lower lip, chin and jaw by an amount that follows the speech's amplitude envelope (a backward warp
    cut along the top of the lower lip, so a lens-shaped mouth opening appears under the upper teeth and is
    filled with a dark mouth interior; the cheeks and neck stretch smoothly),
  * closes the eyelids during a couple of blinks,
  * moves the head a little (slow in-plane rotation, translation and scale),
and the frames are encoded with the audio as H.264 + AAC.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from instag.atomic import atomic_file
from instag.audio.synthetic_speech import SAMPLE_VOICE, Utterance, synthesize
from instag.data import facemesh as fm
from instag.errors import InstagError
from instag.media.mp4 import Mp4Writer

FPS = 25.0
SAMPLE_SECONDS = 6.0
SAMPLE_SEED = 7
SIZE = 512  # side of the encoded frames
SOURCE_CROP = 256  # side of the square cut from the 512² portrait around the face (upscaled to SIZE)
MARGIN = 16  # extra canvas on each side so head motion never shows an edge
MAX_JAW_DROP = 0.25  # jaw drop at full envelope, as a fraction of the outer-eye-corner distance
BLINKS_S = (1.7, 4.4)  # blink instants
BLINK_S = 0.22  # blink length
LOWER_LIP_INNER_CONTOUR = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)  # corner to corner
RIGHT_EYE = (33, 133, 159, 145)  # outer, inner, upper lid, lower lid (subject's right)
LEFT_EYE = (263, 362, 386, 374)
MOUTH_INTERIOR = np.array([62.0, 22.0, 26.0])  # RGB
TONGUE = np.array([150.0, 62.0, 68.0])


class DemoError(InstagError):
    """The demo's sample could not be made (e.g. the portrait's face was not found)."""


@dataclass(frozen=True)
class SampleClip:
    path: Path
    n_frames: int
    fps: float
    mouth_drive: np.ndarray  # [T] in [0, 1]: the jaw drop of each frame (the speech envelope per frame)
    blink: np.ndarray  # [T] in [0, 1]: eyelid closure of each frame


def portrait() -> np.ndarray:
    """The public-domain astronaut portrait [512, 512, 3] uint8 RGB bundled with scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def _face_landmarks(rgb: np.ndarray) -> np.ndarray:
    """Landmarks [478, 2] (pixels) of the largest face in a still image."""
    det = fm.FaceDetector()
    try:
        boxes = det.detect(rgb)
    finally:
        det.close()
    if not boxes:
        raise DemoError("demo: mediapipe found no face in the sample portrait")
    tracker = fm.FaceTracker()
    try:
        pts = tracker.track(rgb, boxes[0].centre)
    finally:
        tracker.close()
    if pts is None:
        raise DemoError("demo: mediapipe found no face mesh in the sample portrait")
    return pts[:, :2]


class FaceAnimator:
    """Warps one portrait into frames with a given jaw drop, eyelid closure and head pose."""

    def __init__(self, rgb: np.ndarray, landmarks: np.ndarray, size: int = SIZE):
        """`rgb` [H, W, 3] uint8, `landmarks` [478, 2] in its pixels; frames are `size`² around the face."""
        cx = float(landmarks[:, 0].mean())
        cy = float((landmarks[fm.FOREHEAD, 1] + landmarks[fm.CHIN, 1]) / 2)
        scale = size / SOURCE_CROP
        side = size + 2 * MARGIN
        # source → canvas: centre the face, scale up; edges replicate (the portrait's top is close to her hair)
        self.affine = np.array([[scale, 0, side / 2 - scale * cx], [0, scale, side / 2 - scale * cy]], np.float32)
        self.canvas = cv2.warpAffine(rgb, self.affine, (side, side), flags=cv2.INTER_CUBIC,
                                     borderMode=cv2.BORDER_REPLICATE)
        self.pts = landmarks @ self.affine[:, :2].T + self.affine[:, 2]
        self.size, self.side = size, side
        p = self.pts
        self.eye_dist = float(np.linalg.norm(p[fm.RIGHT_EYE_OUTER] - p[fm.LEFT_EYE_OUTER]))
        ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
        self.xs, self.ys = xs, ys
        self._setup_jaw()

    def _setup_jaw(self) -> None:
        p = self.pts
        lip = p[list(LOWER_LIP_INNER_CONTOUR)]
        lip = lip[np.argsort(lip[:, 0])]
        self.mouth_cx = float((p[fm.MOUTH_RIGHT, 0] + p[fm.MOUTH_LEFT, 0]) / 2)
        self.mouth_hw = float(abs(p[fm.MOUTH_LEFT, 0] - p[fm.MOUTH_RIGHT, 0]) / 2)
        x = self.xs[0]
        self.cut = np.interp(x, lip[:, 0], lip[:, 1]).astype(np.float32)  # [side] y of the lower lip's top
        oval = p[fm.contours()["face_oval"]]
        below = oval[oval[:, 1] > self.cut.min()]
        self.jaw_hw = float(np.abs(below[:, 0] - self.mouth_cx).max())
        self.chin = float(p[fm.CHIN, 1])
        u = (x - self.mouth_cx) / self.mouth_hw
        self.lens = np.clip(1 - u ** 2, 0, 1) ** 0.6  # lower lip's drop across the mouth (0 at the corners)
        v = np.abs(x - self.mouth_cx) / self.jaw_hw
        self.wx = np.where(v < 0.6, 1.0, 0.5 + 0.5 * np.cos(np.pi * np.clip((v - 0.6) / 0.55, 0, 1)))

    def _jaw_shift(self, drop: float, y: np.ndarray) -> np.ndarray:
        """Downward shift [side, side] of source points at rows `y` (below the cut) for a jaw drop in pixels."""
        depth = np.maximum(self.chin - self.cut, 1.0)
        s = np.clip((y - self.cut) / depth, 0, 1)
        mix = self.lens + (1 - self.lens) * (3 * s ** 2 - 2 * s ** 3)  # lip's lens shape → rigid chin
        fade = np.clip((y - self.chin) / (0.7 * depth), 0, 1)  # the neck stays where it is
        return drop * self.wx * mix * (0.5 + 0.5 * np.cos(np.pi * fade))

    def _eye_shift(self, closure: float, eye: tuple[int, int, int, int]) -> np.ndarray:
        """Downward sampling shift [side, side] that slides the upper lid over the eye."""
        p = self.pts
        outer, inner, top, bottom = (p[i] for i in eye)
        ecx, ecy = (outer[0] + inner[0]) / 2, (top[1] + bottom[1]) / 2
        half_w = abs(outer[0] - inner[0]) / 2
        h0 = max(float(bottom[1] - top[1]), 1.0) * 1.15
        u = np.clip(np.abs(self.xs - ecx) / (half_w * 1.15), 0, 1)
        h = h0 * np.sqrt(1 - u ** 2)
        upper, lower = ecy - h / 2, ecy + h / 2
        rise = np.clip((self.ys - (upper - 1.5 * h0)) / (1.5 * h0), 0, 1)  # skin above the lid stretches
        fall = np.clip(1 - (self.ys - lower) / 2.0, 0, 1)  # the lower lid stays
        return closure * h * rise * np.where(self.ys > lower, fall, 1.0)

    def frame(self, jaw: float, blink: float, angle_deg: float, shift: tuple[float, float], zoom: float):
        """RGB [size, size, 3] uint8: jaw in [0, 1] of MAX_JAW_DROP, blink in [0, 1], head pose in the image plane."""
        drop = jaw * MAX_JAW_DROP * self.eye_dist
        below = self.ys >= self.cut
        opening = drop * self.wx * self.lens  # [side] the gap's height at the lip, per column
        gap = below & (self.ys < self.cut + opening)
        src_y = self.ys.copy()
        q = np.where(below, self.ys - opening, self.ys)
        for _ in range(4):  # solve q + shift(q) = y for the rows under the cut
            q = self.ys - self._jaw_shift(drop, np.maximum(q, self.cut))
        src_y = np.where(below & ~gap, np.maximum(q, self.cut), src_y)
        for eye in (RIGHT_EYE, LEFT_EYE):
            src_y = src_y - self._eye_shift(blink, eye)
        img = cv2.remap(self.canvas, self.xs, src_y.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        if gap.any():
            depth = np.clip((self.ys - self.cut) / np.maximum(opening, 1e-3), 0, 1)[..., None]
            inside = MOUTH_INTERIOR * (0.7 + 0.3 * np.abs(2 * depth - 1)) + (TONGUE - MOUTH_INTERIOR) * depth ** 3
            alpha = cv2.GaussianBlur(gap.astype(np.float32), (3, 3), 0.8)[..., None]
            img = img * (1 - alpha) + inside * alpha
        centre = (self.side / 2, self.side / 2)
        rot = cv2.getRotationMatrix2D(centre, angle_deg, zoom)
        rot[:, 2] += np.asarray(shift) - MARGIN
        out = cv2.warpAffine(np.clip(img, 0, 255).astype(np.uint8), rot, (self.size, self.size),
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out


def blink_curve(n_frames: int, fps: float, instants: tuple[float, ...] = BLINKS_S) -> np.ndarray:
    """Eyelid closure [T] in [0, 1]: a smooth close-open of BLINK_S around each instant."""
    t = np.arange(n_frames) / fps
    out = np.zeros(n_frames, np.float32)
    for c in instants:
        x = np.clip(np.abs(t - c) / (BLINK_S / 2), 0, 1)
        out = np.maximum(out, (0.5 + 0.5 * np.cos(np.pi * x)).astype(np.float32))
    return out


def head_motion(n_frames: int, fps: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small natural head motion: angle [T] degrees, shift [T, 2] pixels, zoom [T], from slow sinusoids."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fps
    ph = rng.uniform(0, 2 * np.pi, 5)
    angle = 1.6 * np.sin(2 * np.pi * 0.21 * t + ph[0]) + 0.6 * np.sin(2 * np.pi * 0.57 * t + ph[1])
    shift = np.stack([4.0 * np.sin(2 * np.pi * 0.17 * t + ph[2]), 2.5 * np.sin(2 * np.pi * 0.31 * t + ph[3])], 1)
    zoom = 1.0 + 0.012 * np.sin(2 * np.pi * 0.13 * t + ph[4])
    return angle, shift, zoom


def make_sample_clip(path: str | Path, utterance: Utterance | None = None, fps: float = FPS, size: int = SIZE,
                     seed: int = SAMPLE_SEED, progress=None) -> SampleClip:
    """Write the talking-astronaut clip (H.264 + AAC MP4, `size`², `fps`) driven by `utterance` (default: a
    SAMPLE_SECONDS synthetic utterance). `progress(done, total)` is called per frame. Written atomically."""
    path = Path(path)
    utt = utterance or synthesize(SAMPLE_SECONDS, SAMPLE_VOICE, seed)
    n_frames = int(np.floor(utt.duration_s * fps))
    rgb = portrait()
    animator = FaceAnimator(rgb, _face_landmarks(rgb), size)
    drive = utt.frame_envelope(fps, n_frames)
    blink = blink_curve(n_frames, fps)
    angle, shift, zoom = head_motion(n_frames, fps, seed)
    with atomic_file(path, suffix=".mp4") as tmp:
        with Mp4Writer(tmp, size, size, fps, utt.samples[None, :], utt.sample_rate, crf=18,
                       preset="veryfast") as writer:
            for k in range(n_frames):
                writer.write(animator.frame(float(drive[k]), float(blink[k]), float(angle[k]),
                                            (float(shift[k, 0]), float(shift[k, 1])), float(zoom[k])))
                if progress:
                    progress(k + 1, n_frames)
        usual_permissions(tmp)
    return SampleClip(path, n_frames, fps, drive, blink)


def usual_permissions(path: Path) -> None:
    """Give a (private, mkstemp-made) temporary output the usual permissions of a new file."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
