"""The dataset dir (DESIGN §4): layout, the version stamp, and a memory-light reader that refuses unknown versions.

Layout: meta.json, frames/NNNNNN.jpg, labels/NNNNNN.png, background.png, tracks.npz, audio.wav,
audio/<kind>.npy, geometry/depth/NNNNNN.png (uint16, metres × depth_scale, 0 = no face),
geometry/normal/NNNNNN.png (RGB = camera-space normal mapped to [0, 255], 0 = no face),
geometry/face_mesh.ply (the subject's rigid face shape in world units, its triangles and vertex normals; datasets
written before it carry geometry/face_mesh.npz, which is still read).
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import trimesh

import instag
from instag.data.facemesh import N_LANDMARKS
from instag.data.geometry import DEPTH_SCALE
from instag.data.labels import LABELS
from instag.data.pose import EXPRESSION_NAMES
from instag.errors import InputError
from instag.media.image import read_image
from instag.versioned import read_versioned_json

FORMAT = "instag-dataset"
FORMAT_VERSION = 1
TRACK_KEYS = ("viewmats", "landmarks", "blink", "expression", "mouth_open")
MESH_PLY = "geometry/face_mesh.ply"
MESH_NPZ = "geometry/face_mesh.npz"  # the mesh of datasets written before the PLY (and of ones whose meta names none)


def frame_name(i: int) -> str:
    return f"{i:06d}"


def _read_image(path: Path, size: int, flags: int) -> np.ndarray:
    """The dataset's size² image at `path`, its header checked before decoding (`media.image.read_image`)."""
    img = read_image(path, size, flags)
    if img is None:
        raise InputError(f"{path}: missing, undecodable or not a {size}x{size} image")
    return img


class Dataset:
    """A dataset dir opened for reading. Frames, labels and priors load one at a time, on request."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta

    @property
    def n_frames(self) -> int:
        return int(self.meta["frame_count"])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def size(self) -> int:
        return int(self.meta["image_size"][0])

    @property
    def intrinsics(self) -> np.ndarray:
        """K [3, 3] float64 of the frames (pixel centres at +0.5)."""
        k = self.meta["intrinsics"]
        return np.array([[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1]], dtype=np.float64)

    @property
    def train_indices(self) -> np.ndarray:
        a, b = self.meta["split"]["train"]
        return np.arange(a, b)

    @property
    def test_indices(self) -> np.ndarray:
        a, b = self.meta["split"]["test"]
        return np.arange(a, b)

    def frame(self, i: int) -> np.ndarray:
        """RGB [S, S, 3] uint8."""
        return _read_image(self.path / "frames" / f"{frame_name(i)}.jpg", self.size, cv2.IMREAD_COLOR)[..., ::-1].copy()

    def label(self, i: int) -> np.ndarray:
        """Label map [S, S] uint8 (ids in meta['labels'])."""
        return _read_image(self.path / "labels" / f"{frame_name(i)}.png", self.size, cv2.IMREAD_UNCHANGED)

    def depth(self, i: int) -> np.ndarray:
        """Face depth prior [S, S] float32 in world units (camera z), 0 where there is no face."""
        raw = _read_image(self.path / "geometry" / "depth" / f"{frame_name(i)}.png", self.size, cv2.IMREAD_UNCHANGED)
        return raw.astype(np.float32) / float(self.meta["geometry"]["depth_scale"])

    def normal(self, i: int) -> np.ndarray:
        """Face normal prior [S, S, 3] float32, unit camera-space normals, 0 where there is no face."""
        raw = _read_image(self.path / "geometry" / "normal" / f"{frame_name(i)}.png", self.size, cv2.IMREAD_COLOR)[..., ::-1]
        n = raw.astype(np.float32) / 127.5 - 1.0
        n[~np.any(raw != 0, axis=-1)] = 0.0
        return n

    def background(self) -> np.ndarray:
        """Background plate RGB [S, S, 3] uint8."""
        return _read_image(self.path / "background.png", self.size, cv2.IMREAD_COLOR)[..., ::-1].copy()

    @functools.cached_property
    def tracks(self) -> dict[str, np.ndarray]:
        """viewmats [T, 4, 4], landmarks [T, 478, 2], blink [T], expression [T, E], mouth_open [T]."""
        try:
            with np.load(self.path / "tracks.npz", allow_pickle=False) as z:
                return {k: z[k] for k in TRACK_KEYS}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a damaged npz is a bad zip
            raise InputError(f"{self.path / 'tracks.npz'}: unreadable or incomplete tracks ({exc})") from exc

    def audio_features(self, kind: str) -> np.ndarray:
        """Features [T, K, D] float32 of `kind` (memory-mapped)."""
        if kind not in self.meta["audio"]["features"]:
            raise InputError(f"{self.path}: no '{kind}' audio features (has {', '.join(self.meta['audio']['features'])})")
        try:
            return np.load(self.path / "audio" / f"{kind}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path / 'audio' / f'{kind}.npy'}: unreadable ({exc})") from exc

    def audio(self) -> tuple[np.ndarray, int]:
        """The clip's audio [N] float32 mono and its sample rate."""
        import soundfile

        try:
            data, sr = soundfile.read(self.path / "audio.wav", dtype="float32", always_2d=False)
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{self.path / 'audio.wav'}: unreadable ({exc})") from exc
        return data, sr

    def face_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """The subject's rigid face shape: vertices [478, 3] float32 (world) and triangles [F, 3] int64."""
        rel = self.meta.get("geometry", {}).get("mesh", MESH_NPZ)
        if rel not in (MESH_PLY, MESH_NPZ):  # meta.json is input: it names one of the layout's files, no other
            raise InputError(f"{self.path / 'meta.json'}: geometry.mesh {rel!r} is not {MESH_PLY} or {MESH_NPZ}")
        path = self.path / rel
        try:
            if rel == MESH_PLY:
                with open(path, "rb") as f:
                    mesh = trimesh.load(f, file_type="ply", process=False, force="mesh")
                verts, tris = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)
            else:
                with np.load(path, allow_pickle=False) as z:
                    verts, tris = z["vertices"], z["triangles"].astype(np.int64)
        except Exception as exc:  # a damaged file fails inside the parser, in whatever way its bytes lead it
            raise InputError(f"{path}: unreadable face mesh ({type(exc).__name__}: {exc})") from exc
        if (verts.shape != (N_LANDMARKS, 3) or not np.isfinite(verts).all() or tris.ndim != 2
                or tris.shape[1] != 3 or len(tris) == 0 or tris.min() < 0 or tris.max() >= N_LANDMARKS):
            raise InputError(f"{path}: face mesh has vertices {verts.shape} and triangles {tris.shape}, expected "
                             f"[{N_LANDMARKS}, 3] finite vertices and [F, 3] indices below {N_LANDMARKS}")
        return verts, tris


def write_face_mesh(root: Path, verts: np.ndarray, tris: np.ndarray) -> None:
    """Write the subject's rigid face shape `verts` [478, 3] (world, metres) with triangles `tris` [F, 3] as a
    binary PLY with vertex normals (MESH_PLY under the dataset dir `root`), which mesh viewers open."""
    mesh = trimesh.Trimesh(verts, tris, process=False)  # process=False keeps the iris points, which no triangle uses
    (root / MESH_PLY).write_bytes(trimesh.exchange.ply.export_ply(mesh, vertex_normal=True))


def write_meta(root: Path, *, n_frames: int, fps: float, size: int, focal: float, focal_fitted: bool,
               n_train: int, source: dict[str, Any], crop_box: dict[str, Any], audio: dict[str, Any],
               tracking: dict[str, Any], preprocess: dict[str, Any]) -> None:
    """Write `root`/meta.json, the fields `Dataset` reads: the version stamp, frame count and rate, the square
    image side `size` and its pinhole camera (focal in pixels, principal point at the centre, pixel centres at
    +0.5), the train split (frames [0, n_train), the rest tests) and the layout's fixed names; then what was
    measured (`source` clip, `crop_box` in it, `audio`, `tracking`) and the `preprocess` settings."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "instag_version": instag.__version__,
        "source": source,
        "fps": fps,
        "frame_count": n_frames,
        "image_size": [size, size],
        "intrinsics": {"fx": focal, "fy": focal, "cx": size / 2, "cy": size / 2, "width": size, "height": size,
                       "pixel_centre_offset": 0.5, "focal_fitted": focal_fitted},
        "camera": "viewmats map world to camera, OpenCV axes (x right, y down, z forward); world is the "
                  "subject's head frame in metres",
        "crop_box": crop_box,
        "split": {"train": [0, n_train], "test": [n_train, n_frames]},
        "audio": audio,
        "labels": LABELS,
        "expression_names": list(EXPRESSION_NAMES),
        "geometry": {"depth_scale": DEPTH_SCALE, "depth": "geometry/depth", "normal": "geometry/normal",
                     "mesh": MESH_PLY},
        "tracking": tracking,
        "preprocess": preprocess,
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_dataset(path: str | Path) -> Dataset:
    """Open a dataset dir, checking its format and version (FormatVersionError for versions this code does not know)."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise InputError(f"{path}: not a dataset dir (no meta.json)")
    return Dataset(path, read_versioned_json(meta_path, FORMAT, FORMAT_VERSION, "dataset"))


def validate_dataset(ds: Dataset) -> None:
    """Check every file the format promises is present and consistent; InputError naming the first problem."""
    t, s = ds.n_frames, ds.size
    tr = ds.tracks
    expect = {"viewmats": (t, 4, 4), "landmarks": (t, 478, 2), "blink": (t,), "mouth_open": (t,)}
    for key, shape in expect.items():
        if tr[key].shape != shape or not np.isfinite(tr[key]).all():
            raise InputError(f"{ds.path / 'tracks.npz'}: {key} has shape {tr[key].shape} (expected {shape}) or non-finite values")
    if tr["expression"].ndim != 2 or tr["expression"].shape[0] != t:
        raise InputError(f"{ds.path / 'tracks.npz'}: expression has shape {tr['expression'].shape}, expected [{t}, E]")
    for sub, ext in (("frames", "jpg"), ("labels", "png"), ("geometry/depth", "png"), ("geometry/normal", "png")):
        names = sorted(p.name for p in (ds.path / sub).glob(f"*.{ext}"))
        if names != [f"{frame_name(i)}.{ext}" for i in range(t)]:
            raise InputError(f"{ds.path / sub}: expected {t} files {frame_name(0)}.{ext}…, found {len(names)}")
    ds.face_mesh()
    for img in (ds.frame(0), ds.label(t - 1), ds.depth(0), ds.background()):
        if img.shape[:2] != (s, s):
            raise InputError(f"{ds.path}: an image is {img.shape[:2]}, expected {s}×{s}")
    for kind in ds.meta["audio"]["features"]:
        feats = ds.audio_features(kind)
        if feats.ndim != 3 or feats.shape[0] != t:
            raise InputError(f"{ds.path / 'audio' / f'{kind}.npy'}: shape {feats.shape}, expected [{t}, K, D]")
    audio, sr = ds.audio()
    if sr != ds.meta["audio"]["sample_rate"] or abs(len(audio) - round(t / ds.fps * sr)) > 1:
        raise InputError(f"{ds.path / 'audio.wav'}: {len(audio)} samples at {sr} Hz do not span {t} frames")
    a, b = ds.meta["split"]["train"]
    c, d = ds.meta["split"]["test"]
    if not (a == 0 and b == c and d == t):
        raise InputError(f"{ds.path / 'meta.json'}: split {ds.meta['split']} does not cover frames 0–{t - 1}")
