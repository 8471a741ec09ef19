"""Head pose from landmarks: a rigid per-subject face shape fitted over the clip, the focal length, PnP per frame,
and a zero-phase (lag-free) low-pass over the whole clip; plus blink, expression and mouth-opening signals.

World coordinates are the subject's canonical head frame in metres (x to the image right, y down, z away from the
camera for a frontal face, origin at the centre of the rigid points). Viewmats map world to camera (OpenCV axes).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.signal import butter, filtfilt
from scipy.spatial.transform import Rotation

from instag.data import facemesh as fm
from instag.errors import InputError

EXPRESSION_NAMES = ("mouth_open", "mouth_width", "smile", "eye_open_right", "eye_open_left", "brow_right",
                    "brow_left", "jaw_drop")


@dataclass(frozen=True)
class PoseFit:
    viewmats: np.ndarray  # [T, 4, 4] float32, world (head frame) → camera, OpenCV axes, smoothed
    focal: float  # pixels of the output frames (fx = fy)
    focal_fitted: bool  # False when the landmarks did not determine it and the default field of view was used
    shape: np.ndarray  # [478, 3] float32, the rigid per-subject face shape in the head frame (metres)
    local_shapes: np.ndarray  # [T, 478, 3] float32, each frame's landmarks in the head frame (expression kept)
    reprojection_px: float  # median reprojection error of the rigid points with the smoothed pose


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R [3,3], t [3]) with dst ≈ s · R @ src + t in least squares; src, dst [N, 3]."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1
    r = u @ np.diag(d) @ vt
    s = float((sig * d).sum() / (a**2).sum(1).mean())
    return s, r, mu_d - s * r @ mu_s


def interpolate_missing(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face [T, ...] by linear interpolation in time (nearest at the ends)."""
    t = np.arange(len(points))
    flat = points.reshape(len(points), -1)
    out = flat.copy()
    ok = np.flatnonzero(found)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, ok, flat[ok, j])
    return out.reshape(points.shape)


def _canonical_shape(pts: np.ndarray, eye_distance_m: float) -> np.ndarray:
    """Generalised Procrustes over frames [T, 478, 3] (rigid points drive the alignment) → shape in the head frame."""
    rigid = fm.RIGID_POINTS
    sample = pts[:: max(1, len(pts) // 60)]
    ref = sample[len(sample) // 2].astype(np.float64)
    for _ in range(3):
        aligned = []
        for p in sample:
            s, r, t = umeyama(p[rigid], ref[rigid])
            aligned.append(s * p @ r.T + t)
        ref = np.mean(aligned, 0)
    x = ref[fm.LEFT_EYE_OUTER] - ref[fm.RIGHT_EYE_OUTER]
    eye = np.linalg.norm(x)
    x /= eye
    y = ref[fm.CHIN] - ref[fm.FOREHEAD]
    y -= y.dot(x) * x
    y /= np.linalg.norm(y)
    axes = np.stack([x, y, np.cross(x, y)], 1)  # columns: head axes in the reference frame
    return (ref - ref[rigid].mean(0)) @ axes * (eye_distance_m / eye)


def _pnp(shape: np.ndarray, uv: np.ndarray, k: np.ndarray, rvec: np.ndarray, tvec: np.ndarray):
    ok, rvec, tvec = cv2.solvePnP(shape.astype(np.float64), uv.astype(np.float64), k, None, rvec.copy(), tvec.copy(),
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    proj, _ = cv2.projectPoints(shape.astype(np.float64), rvec, tvec, k, None)
    err = np.linalg.norm(proj.reshape(-1, 2) - uv, axis=1)
    return rvec, tvec, float(np.mean(err**2))


def intrinsics(focal: float, size: int) -> np.ndarray:
    """K [3, 3] for square frames of `size` pixels; pixel (row i, col j) has its centre at (j + 0.5, i + 0.5)."""
    return np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]], dtype=np.float64)


def _initial_pose(shape: np.ndarray, p: np.ndarray, focal: float, size: int):
    """Pose guess from the similarity between the head-frame shape and one frame's pixel-space landmarks."""
    rigid = fm.RIGID_POINTS
    s, r, t = umeyama(shape[rigid], p[rigid].astype(np.float64))
    z = focal / s
    tvec = np.array([(t[0] - size / 2) * z / focal, (t[1] - size / 2) * z / focal, z])
    return cv2.Rodrigues(r)[0], tvec.reshape(3, 1)


def _solve_all(shape, pts, focal, size, frames):
    k = intrinsics(focal, size)
    rig = shape[fm.RIGID_POINTS]
    rvecs, tvecs, errs = [], [], []
    rvec = tvec = None
    for i in frames:
        r0, t0 = _initial_pose(shape, pts[i], focal, size)
        if rvec is None or np.linalg.norm(r0 - rvec) > 0.3:
            rvec, tvec = r0, t0
        rvec, tvec, e = _pnp(rig, pts[i, fm.RIGID_POINTS, :2], k, rvec, tvec)
        rvecs.append(rvec.reshape(3))
        tvecs.append(tvec.reshape(3))
        errs.append(e)
    return np.array(rvecs), np.array(tvecs), np.array(errs)


def _fit_focal(shape, pts, size, default_fov_deg) -> tuple[float, bool]:
    """Focal minimising the rigid points' reprojection error over sample frames; the default when it is flat."""
    frames = np.linspace(0, len(pts) - 1, min(len(pts), 25)).astype(int)
    fovs = np.linspace(8.0, 60.0, 14)
    focals = size / 2 / np.tan(np.radians(fovs) / 2)
    errs = np.array([_solve_all(shape, pts, f, size, frames)[2].mean() for f in focals])
    best = int(np.argmin(errs))
    default = size / 2 / np.tan(np.radians(default_fov_deg) / 2)
    if errs.max() < 1.05 * errs[best] or best in (0, len(fovs) - 1):
        return float(default), False
    return float(focals[best]), True


def smooth_poses(rvecs: np.ndarray, tvecs: np.ndarray, fps: float, cutoff_hz: float):
    """Zero-phase Butterworth low-pass of rotations (as rotation vectors about their mean) and translations."""
    rots = Rotation.from_rotvec(rvecs)
    mean = rots.mean()
    rel = (mean.inv() * rots).as_rotvec()
    wn = min(0.99, cutoff_hz / (fps / 2))
    b, a = butter(2, wn)
    pad = min(len(rvecs) - 1, 3 * max(len(a), len(b)))
    rel_s = filtfilt(b, a, rel, axis=0, padlen=pad)
    t_s = filtfilt(b, a, tvecs, axis=0, padlen=pad)
    return (mean * Rotation.from_rotvec(rel_s)).as_matrix(), t_s


def fit_pose(pts: np.ndarray, size: int, fps: float, cutoff_hz: float, default_fov_deg: float,
             eye_distance_m: float) -> PoseFit:
    """Fit shape, focal and smoothed per-frame pose to landmarks `pts` [T, 478, 3] (pixels; z on the x scale)."""
    shape = _canonical_shape(pts, eye_distance_m)
    focal, fitted = _fit_focal(shape, pts, size, default_fov_deg)
    rvecs, tvecs, _ = _solve_all(shape, pts, focal, size, range(len(pts)))
    rmats, t_s = smooth_poses(rvecs, tvecs, fps, cutoff_hz)
    view = np.tile(np.eye(4), (len(pts), 1, 1))
    view[:, :3, :3] = rmats
    view[:, :3, 3] = t_s
    local = np.empty(pts.shape, np.float64)
    rigid = fm.RIGID_POINTS
    for i, p in enumerate(pts):
        s, r, t = umeyama(shape[rigid], p[rigid].astype(np.float64))
        local[i] = (p - t) @ r / s
    k = intrinsics(focal, size)
    cam = np.einsum("tij,nj->tni", rmats, shape[rigid]) + t_s[:, None, :]
    proj = cam @ k.T
    uv = proj[..., :2] / proj[..., 2:]
    err = float(np.median(np.linalg.norm(uv - pts[:, rigid, :2], axis=-1)))
    return PoseFit(view.astype(np.float32), focal, fitted, shape.astype(np.float32), local.astype(np.float32), err)


def _dist(p: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(p[:, i] - p[:, j], axis=-1)


def lip_coefficients(tracks: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """The lip-shape coefficients `names` (EXPRESSION_NAMES) of every frame of a dataset's tracks → [T, C]."""
    unknown = [n for n in names if n not in EXPRESSION_NAMES]
    if unknown:
        raise InputError(f"lip coefficient {unknown[0]!r} is not one of {', '.join(EXPRESSION_NAMES)}")
    expression = tracks["expression"]
    if expression.ndim != 2 or expression.shape[1] < len(EXPRESSION_NAMES):
        raise InputError(f"tracks' expression has shape {list(expression.shape)}, not [T, {len(EXPRESSION_NAMES)}]")
    return expression[:, [EXPRESSION_NAMES.index(n) for n in names]].astype(np.float32)


# Floor of a lip coefficient's spread used to standardise it (1 % of the eye-corner distance): a clip whose
# mouth barely moves must not have its tracking noise blown up to unit size.
MIN_LIP_STD = 0.01


def lip_standardisation(lips: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [C] and floored standard deviation [C] of lip coefficients `lips` [T, C] over `frames` [F]: people
    differ in resting shape and range, and a target that kept those would teach audio nets to recognise voices
    rather than articulation."""
    sel = lips[frames]
    return sel.mean(0).astype(np.float32), np.maximum(sel.std(0), MIN_LIP_STD).astype(np.float32)


def face_signals(local: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame signals from head-frame landmarks `local` [T, 478, 3]: blink [T] in [0, 1] (1 = closed),
    mouth_open [T] (inner-lip gap over outer-eye-corner distance), expression [T, 8] (EXPRESSION_NAMES)."""
    eye = _dist(local, fm.RIGHT_EYE_OUTER, fm.LEFT_EYE_OUTER)

    def ear(outer, inner, lids):
        return sum(_dist(local, u, lo) for u, lo in lids) / (2 * _dist(local, outer, inner))

    ear_r = ear(fm.RIGHT_EYE_OUTER, fm.RIGHT_EYE_INNER, fm.RIGHT_EYE_LIDS)
    ear_l = ear(fm.LEFT_EYE_OUTER, fm.LEFT_EYE_INNER, fm.LEFT_EYE_LIDS)
    ear_m = (ear_r + ear_l) / 2
    open_level = np.percentile(ear_m, 90)
    blink = np.clip((open_level - ear_m) / (0.6 * open_level), 0.0, 1.0)
    mouth_open = _dist(local, fm.UPPER_LIP_INNER, fm.LOWER_LIP_INNER) / eye
    width = _dist(local, fm.MOUTH_RIGHT, fm.MOUTH_LEFT) / eye
    lip_mid_y = (local[:, fm.UPPER_LIP_INNER, 1] + local[:, fm.LOWER_LIP_INNER, 1]) / 2
    smile = (lip_mid_y - (local[:, fm.MOUTH_RIGHT, 1] + local[:, fm.MOUTH_LEFT, 1]) / 2) / eye
    brow_r = _dist(local, fm.RIGHT_BROW, fm.RIGHT_EYE_TOP) / eye
    brow_l = _dist(local, fm.LEFT_BROW, fm.LEFT_EYE_TOP) / eye
    jaw = _dist(local, fm.NOSE_TIP, fm.CHIN) / eye
    expression = np.stack([mouth_open, width, smile, ear_r, ear_l, brow_r, brow_l, jaw], 1)
    return {"blink": blink.astype(np.float32), "mouth_open": mouth_open.astype(np.float32),
            "expression": expression.astype(np.float32)}
