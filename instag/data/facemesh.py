"""mediapipe 0.10.21's bundled face detector, 478-point face mesh and selfie segmentation, plus mesh topology.

The models ship inside the mediapipe wheel: nothing is downloaded. mediapipe is imported lazily (it is slow to
import and only preprocessing needs it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Landmark indices used for pose, signals and labels (mediapipe face-mesh numbering).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER = 33, 133, 362, 263
RIGHT_EYE_LIDS = ((160, 144), (158, 153))  # (upper, lower) pairs of the subject's right eye
LEFT_EYE_LIDS = ((385, 380), (387, 373))
RIGHT_BROW, LEFT_BROW = 105, 334
RIGHT_EYE_TOP, LEFT_EYE_TOP = 159, 386
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
FOREHEAD, CHIN, NOSE_TIP = 10, 152, 1
# Points that move rigidly with the skull (forehead, nose bridge and tip, eye corners, cheekbones, temples).
RIGID_POINTS = np.array(
    [1, 2, 4, 5, 6, 8, 9, 10, 151, 168, 195, 197, 98, 327, 33, 133, 362, 263, 108, 337, 67, 297, 109, 338, 69,
     299, 234, 454, 127, 356, 93, 323, 116, 345, 123, 352, 50, 280],
    dtype=np.int64,
)
# Both lip lines, outer and inner (mediapipe's FACEMESH_LIPS, sorted): what LMD and the lip losses compare. Written
# out, so training and evaluation need no mediapipe; `contours` derives the same set from mediapipe's edges.
LIP_INDICES = np.array(
    [0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269, 270, 291,
     308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415],
    dtype=np.int64,
)
N_LANDMARKS = 478
N_MESH_VERTICES = 468  # the iris points (468..477) are not part of the tessellation


@dataclass(frozen=True)
class FaceBox:
    """A detected face in pixels of the image it was found in."""

    x0: float
    y0: float
    w: float
    h: float
    score: float

    @property
    def area(self) -> float:
        return self.w * self.h

    @property
    def centre(self) -> tuple[float, float]:
        return self.x0 + self.w / 2, self.y0 + self.h / 2


def tracker_available() -> bool:
    """Whether mediapipe, which the tracker and detector run on, is installed (without importing it: seconds)."""
    import importlib.util

    try:
        return importlib.util.find_spec("mediapipe") is not None
    except ImportError:
        return False


@functools.lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """Triangles [F, 3] int64 of the 468-vertex face mesh: the faces of mediapipe's tessellation edge graph.

    Vertex order is arbitrary; `orient_triangles` makes it consistent against a reference shape.
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    adj: dict[int, set[int]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tris = sorted({tuple(sorted((a, b, c))) for a, b in edges for c in adj[a] & adj[b]})
    uses: dict[tuple[int, int], int] = {}
    for a, b, c in tris:
        for e in ((a, b), (b, c), (a, c)):
            uses[e] = uses.get(e, 0) + 1
    # A 3-clique whose every edge already borders two other triangles is not a face of the surface.
    faces = [t for t in tris if not all(uses[e] > 2 for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))]
    # Close the eye openings with fans so the depth prior covers the eyes (the mouth stays open).
    once = {e for e, n in uses.items() if n == 1}
    for loop in _loops(frozenset(once)):
        if RIGHT_EYE_OUTER in loop or LEFT_EYE_OUTER in loop:
            faces += [(loop[0], loop[i], loop[i + 1]) for i in range(1, len(loop) - 1)]
    return np.array(faces, dtype=np.int64)


def orient_triangles(tris: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Reorder triangles [F, 3] so their normals on `verts` [V, 3] (camera axes, frontal face) point at the camera."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    n = np.cross(b - a, c - a)
    flip = n[:, 2] > 0  # the camera looks along +z, so a camera-facing normal has negative z
    out = tris.copy()
    out[flip, 1], out[flip, 2] = tris[flip, 2], tris[flip, 1]
    return out


def _loops(edges: frozenset) -> list[list[int]]:
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    seen: set[int] = set()
    loops = []
    for start in sorted(adj):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in adj[cur] if n != prev and (n not in seen or (n == start and len(loop) > 2))]
            if not nxt or nxt[0] == start:
                break
            prev, cur = cur, nxt[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(loop)
    return loops


@functools.lru_cache(maxsize=1)
def contours() -> dict[str, np.ndarray]:
    """Ordered landmark loops: 'face_oval', 'lips_outer', 'lips_inner' (derived from mediapipe's edge sets)."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    lips = _loops(fmc.FACEMESH_LIPS)
    outer = next(lp for lp in lips if MOUTH_RIGHT in lp)  # the outer lip line runs through the mouth corners
    inner = next(lp for lp in lips if UPPER_LIP_INNER in lp)
    return {
        "face_oval": np.array(_loops(fmc.FACEMESH_FACE_OVAL)[0], dtype=np.int64),
        "lips_outer": np.array(outer, dtype=np.int64),
        "lips_inner": np.array(inner, dtype=np.int64),
    }


WARM_UP_SIDE = 64  # pixels of the blank frame that starts a mediapipe graph


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while mediapipe builds or runs a graph: its C++ side (absl, TFLite)
    prints start-up notes there that no environment variable turns off. Python-level errors are unaffected:
    they propagate as exceptions and are reported after the descriptor is restored. INSTAG_MEDIAPIPE_LOGS=1
    keeps all."""
    if os.environ.get("INSTAG_MEDIAPIPE_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Quiet:
    """A mediapipe solution whose construction and `process` calls run with native stderr silenced."""

    def __init__(self, make):
        with _native_stderr_silenced():
            self.solution = make()
            # The graph opens its calculators on worker threads after construction returns, and they print
            # then; a first frame waits for them. A blank one leaves no state behind: no face, no track.
            self.solution.process(np.zeros((WARM_UP_SIDE, WARM_UP_SIDE, 3), np.uint8))

    def process(self, rgb: np.ndarray):
        with _native_stderr_silenced():
            return self.solution.process(rgb)

    def close(self) -> None:
        with _native_stderr_silenced():
            self.solution.close()


class FaceDetector:
    """mediapipe's full-range face detector (finds faces down to a few per cent of the frame)."""

    def __init__(self, min_confidence: float = 0.5):
        from mediapipe.python.solutions.face_detection import FaceDetection

        self._det = _Quiet(lambda: FaceDetection(model_selection=1, min_detection_confidence=min_confidence))

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in `rgb` [H, W, 3] uint8, largest first. Where none is found, again inside a black border of a
        quarter of the picture's side: the detector misses a face that fills the picture (a close-up cut at the
        chin and brow), which the tracker then follows."""
        boxes = self._detect(rgb, 0)
        if not boxes:
            pad = max(rgb.shape[:2]) // 4
            boxes = self._detect(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0))), pad)
        return boxes

    def _detect(self, rgb: np.ndarray, pad: int) -> list[FaceBox]:
        h, w = rgb.shape[:2]
        res = self._det.process(rgb)
        boxes = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            boxes.append(FaceBox(b.xmin * w - pad, b.ymin * h - pad, b.width * w, b.height * h, float(d.score[0])))
        return sorted(boxes, key=lambda b: -b.area)

    def close(self) -> None:
        self._det.close()


class FaceTracker:
    """mediapipe's face mesh in video mode with refined eyes and lips: 478 landmarks per frame."""

    def __init__(self):
        from mediapipe.python.solutions.face_mesh import FaceMesh

        self._mesh = _Quiet(lambda: FaceMesh(static_image_mode=False, max_num_faces=2, refine_landmarks=True,
                                             min_detection_confidence=0.5, min_tracking_confidence=0.5))

    def track(self, rgb: np.ndarray, near: tuple[float, float]) -> np.ndarray | None:
        """Landmarks [478, 3] in pixels (x, y; z on the x scale, away from the camera) of the face nearest `near`."""
        h, w = rgb.shape[:2]
        res = self._mesh.process(rgb)
        if not res.multi_face_landmarks:
            return None
        best, best_d = None, np.inf
        for face in res.multi_face_landmarks:
            pts = np.array([(p.x * w, p.y * h, p.z * w) for p in face.landmark], dtype=np.float32)
            d = float(np.hypot(*(pts[:, :2].mean(0) - np.asarray(near))))
            if d < best_d:
                best, best_d = pts, d
        return best

    def close(self) -> None:
        self._mesh.close()


class PersonSegmenter:
    """mediapipe's selfie segmentation: probability [H, W] float32 that a pixel shows the person."""

    def __init__(self):
        from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

        self._seg = _Quiet(lambda: SelfieSegmentation(model_selection=0))

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        return np.asarray(self._seg.process(rgb).segmentation_mask, dtype=np.float32)

    def close(self) -> None:
        self._seg.close()
