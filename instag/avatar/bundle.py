"""The avatar dir (DESIGN §4), written by adaptation and read by everything that renders.

    avatar.json         format + version, recipe, audio feature kind and shape, image size, intrinsics, fps,
                        provenance, Gaussian counts, the motion's per-person calibration (speaker code, opening
                        bias; absent in avatars made before it: none and 0)
    model.safetensors   face.* and mouth.* (Gaussians), motion.* (UMF, hook, aligner incl. the audio nets)
    drive.npz           the clip's poses, blinks, expressions, mouth opening, frame indices, crop box (replay)
    background.png      background plate
    torso/NNNNNN.png    the clip's neck/torso pixels per frame (RGBA), replayed under the rendered head

No pickle anywhere: weights are safetensors, metadata JSON, arrays npz loaded with allow_pickle=False. A file that
does not validate is refused with an `InputError` naming it; an unknown version with a `FormatVersionError`.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from instag.atomic import atomic_dir
from instag.config.model import ModelConfig
from instag.config.recipe import from_dict
from instag.errors import InputError
from instag.gaussians.field import GaussianField
from instag.media.image import read_image
from instag.motion.model import MotionModel, MotionPoints
from instag.render.avatar import AvatarRender, FrameCondition, render_avatar
from instag.render.plate import over_head, over_plate
from instag.render.views import ViewRange, view_range, view_range_from
from instag.versioned import read_versioned_json

AVATAR_FORMAT = "instag-avatar"
AVATAR_VERSION = 1
DRIVE_KEYS = ("viewmats", "blink", "expression", "mouth_open", "frame_index", "crop_box")
# Bounds of what avatar.json and drive.npz may state (an avatar is rendered at most 8192² and a clip replays at most
# a day of frames); beyond them the numbers are tampered, not recorded.
MAX_FPS = 1000.0
MAX_IMAGE_SIZE = 8192
MAX_FRAME_INDEX = 24 * 3600 * 1000


@dataclass
class Avatar:
    path: Path
    meta: dict[str, Any]
    cfg: ModelConfig
    face: GaussianField
    mouth: GaussianField
    motion: MotionModel
    drive: dict[str, np.ndarray]
    plate: np.ndarray  # [S, S, 3] uint8
    view: ViewRange  # the angles it can be shown from (avatar.json's view_range)
    # The motion's frame-independent terms of the (fixed) canonical Gaussians, computed on the first render on a
    # device; about a fifth of a CPU frame's time otherwise.
    _points: MotionPoints | None = field(default=None, init=False, repr=False)

    @property
    def size(self) -> int:
        return int(self.meta["image_size"][0])

    def to(self, device: torch.device) -> None:
        """Move the model (both branches' Gaussians and the motion) to `device`."""
        self.face, self.mouth, self.motion = (m.to(device) for m in (self.face, self.mouth, self.motion))
        self._points = None

    @property
    def K(self) -> Tensor:  # [3, 3]
        k = self.meta["intrinsics"]
        return torch.tensor([[k["fx"], 0.0, k["cx"]], [0.0, k["fy"], k["cy"]], [0.0, 0.0, 1.0]])

    @property
    def n_drive_frames(self) -> int:
        return int(self.drive["viewmats"].shape[0])

    def torso(self, i: int) -> np.ndarray:
        """RGBA [S, S, 4] uint8 torso layer of the clip's i-th frame (cycled)."""
        idx = int(self.drive["frame_index"][i % self.n_drive_frames])
        path = self.path / "torso" / f"{idx:06d}.png"
        img = read_image(path, self.size, cv2.IMREAD_UNCHANGED)
        if img is None or img.shape != (self.size, self.size, 4):
            raise InputError(f"{path}: missing or not a {self.size}² RGBA torso layer")
        return img[..., [2, 1, 0, 3]]

    def layers(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The clip's i-th frame (cycled) under and over the head: the plate with its torso [S, S, 3] uint8, and
        what its torso layer draws over the head, RGBA [S, S, 4] uint8 or None (`render.plate.over_head`)."""
        layer = self.torso(i)
        return over_plate(self.plate, layer), over_head(layer)

    @torch.no_grad()
    def render(self, cond: FrameCondition) -> AvatarRender:
        if self._points is None or self._points.face.base.device != self.face.means.device:
            self._points = self.motion.points(self.face.means, self.mouth.means)
        return render_avatar(self.face, self.mouth, self.motion, cond, backend=self.cfg.backend, points=self._points)


def save_avatar(
    path: Path,
    meta: dict[str, Any],  # recipe, audio_feature, audio_feature_shape, image_size, intrinsics, fps, provenance
    face: GaussianField,
    mouth: GaussianField,
    motion: MotionModel,
    drive: dict[str, np.ndarray],
    plate: np.ndarray,  # [S, S, 3] uint8
    torso: dict[int, np.ndarray],  # frame index → RGBA [S, S, 4] uint8
    force: bool = False,
) -> None:
    """Write the avatar dir atomically (nothing is left behind on error)."""
    missing = [k for k in DRIVE_KEYS if k not in drive]
    if missing:
        raise ValueError(f"drive arrays lack {missing}")
    tensors = {f"face.{k}": v for k, v in face.state_dict().items()}
    tensors |= {f"mouth.{k}": v for k, v in mouth.state_dict().items()}
    tensors |= {f"motion.{k}": v for k, v in motion.state_dict().items()}
    code = motion.speaker_code
    doc = {"format": AVATAR_FORMAT, "format_version": AVATAR_VERSION, **meta,
           "gaussians": {"face": face.num_gaussians, "mouth": mouth.num_gaussians},
           "motion_calibration": {"speaker_code": None if code is None else code.cpu().tolist(),
                                  "lip_bias": motion.lip_bias.cpu().tolist(),
                                  "lip_gain": motion.lip_gain.cpu().tolist()}}
    with atomic_dir(path, force=force) as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
                  str(tmp / "model.safetensors"))
        np.savez(tmp / "drive.npz", **{k: np.asarray(drive[k]) for k in DRIVE_KEYS})
        cv2.imwrite(str(tmp / "background.png"), plate[..., ::-1])
        (tmp / "torso").mkdir()
        for idx, layer in torso.items():
            cv2.imwrite(str(tmp / "torso" / f"{idx:06d}.png"), layer[..., [2, 1, 0, 3]])
        (tmp / "avatar.json").write_text(json.dumps(doc, indent=2) + "\n")


def read_avatar_meta(path: Path) -> dict[str, Any]:
    """avatar.json, checked for format and version."""
    meta_path = Path(path) / "avatar.json"
    if not meta_path.is_file():
        raise InputError(f"{path}: not an avatar dir (no avatar.json)")
    return read_versioned_json(meta_path, AVATAR_FORMAT, AVATAR_VERSION, "avatar")


def load_avatar(path: str | Path) -> Avatar:
    """The avatar dir at `path`, every file validated first (`InputError` naming the file and what is wrong):
    a tampered avatar is refused before anything is built from it or rendered."""
    path = Path(path)
    meta = read_avatar_meta(path)
    where = path / "avatar.json"
    _check_meta(meta, where)
    try:
        # Avatars written before the loss weights moved to the recipe's own `loss` carry them in the model; those
        # written before the lip read-outs have none.
        model = {"lip_readout": False, "live_readout": False} | {k: v for k, v in meta["recipe"]["model"].items() if k != "loss"}
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{where}: no recipe.model") from exc
    cfg = from_dict(ModelConfig, model, where=f"{where}: recipe.model")
    model_path = path / "model.safetensors"
    tensors = _load_tensors(model_path)
    face = _gaussians(tensors, "face", model_path)
    mouth = _gaussians(tensors, "mouth", model_path)
    motion = _motion(cfg, {k[7:]: v for k, v in tensors.items() if k.startswith("motion.")}, model_path, where)
    _load_calibration(motion, meta.get("motion_calibration"), cfg, where)
    drive = _load_drive(path / "drive.npz")
    absent = [int(i) for i in np.unique(drive["frame_index"]) if not (path / "torso" / f"{int(i):06d}.png").is_file()]
    if absent:
        raise InputError(f"{path / 'drive.npz'}: replays clip frame {absent[0]}, which has no torso layer in "
                         f"{path / 'torso'}")
    size = int(meta["image_size"][0])
    plate = read_image(path / "background.png", size, cv2.IMREAD_COLOR)
    if plate is None or plate.shape != (size, size, 3):
        raise InputError(f"{path / 'background.png'}: missing, undecodable or not {size}² pixels")
    for module in (face, mouth, motion):
        module.eval()
        module.requires_grad_(False)
    # Avatars written before view_range was recorded: their drive.npz holds the same training views.
    view = view_range_from(meta["view_range"], str(where)) if "view_range" in meta else view_range(drive["viewmats"])
    return Avatar(path, meta, cfg, face, mouth, motion, drive, plate[..., ::-1].copy(), view)


def _check_meta(meta: dict[str, Any], where: Path) -> None:
    """The numbers of avatar.json that rendering sizes things by: fps, image size, intrinsics."""
    try:
        fps = float(meta["fps"])
        size = [int(v) for v in meta["image_size"]]
        k = {name: float(meta["intrinsics"][name]) for name in ("fx", "fy", "cx", "cy")}
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{where}: fps, image_size or intrinsics missing or malformed ({exc})") from exc
    if not 0 < fps <= MAX_FPS:
        raise InputError(f"{where}: fps {fps} is not in (0, {MAX_FPS:g}]")
    if len(size) != 2 or size[0] != size[1] or not 16 <= size[0] <= MAX_IMAGE_SIZE:
        raise InputError(f"{where}: image_size {size} is not a square side in 16..{MAX_IMAGE_SIZE}")
    if not all(np.isfinite(v) for v in k.values()) or k["fx"] <= 0 or k["fy"] <= 0:
        raise InputError(f"{where}: intrinsics {k} are not finite with positive focal lengths")


def _load_tensors(model_path: Path) -> dict[str, Tensor]:
    if not model_path.is_file():
        raise InputError(f"{model_path}: missing or not a regular file")
    try:
        tensors = load_file(str(model_path))
    except (OSError, SafetensorError, ValueError) as exc:
        raise InputError(f"{model_path}: not a valid safetensors file ({exc})") from exc
    for name, value in tensors.items():
        # NaN or inf weights would only render garbage (and once read outside a kernel's table).
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InputError(f"{model_path}: tensor {name} holds non-finite values (NaN or inf)")
    return tensors


def _gaussians(tensors: dict[str, Tensor], branch: str, model_path: Path) -> GaussianField:
    p = branch + "."
    try:
        return GaussianField.from_tensors({k[len(p):]: v for k, v in tensors.items() if k.startswith(p)})
    except InputError as exc:
        raise InputError(f"{model_path}: {branch} branch: {exc}") from exc


def _motion(cfg: ModelConfig, tensors: dict[str, Tensor], model_path: Path, where: Path) -> MotionModel:
    """The motion model of the recipe with the file's weights. Its shapes are compared on the meta device first,
    so an absurd size in avatar.json (a 2^30 table, a 10^9-wide layer) is refused without allocating it."""
    try:
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in MotionModel(cfg, with_aligner=True).state_dict().items()}
    except (ValueError, RuntimeError, TypeError, OverflowError) as exc:
        raise InputError(f"{where}: recipe.model does not describe a motion model ({exc})") from exc
    found = {k: v.shape for k, v in tensors.items()}
    if found != shapes:
        diff = sorted(k for k in shapes.keys() | found.keys() if shapes.get(k) != found.get(k))
        k = diff[0]
        raise InputError(f"{model_path}: motion weights do not fit the recipe in avatar.json ({len(diff)} tensors "
                         f"differ; motion.{k}: {_shape(found.get(k))} in the file, {_shape(shapes.get(k))} "
                         f"by the recipe)")
    motion = MotionModel(cfg, with_aligner=True)
    motion.load_state_dict(tensors)
    return motion


def _shape(shape: torch.Size | None) -> str:
    return "absent" if shape is None else str(list(shape))


def _load_drive(drive_path: Path) -> dict[str, np.ndarray]:
    """drive.npz, checked for the shapes replay indexes by: T ≥ 1 frames of viewmats [T, 4, 4], blink [T],
    expression [T, E], mouth_open [T], frame_index [T] (non-negative), crop_box [3]; floats finite."""
    if not drive_path.is_file():
        raise InputError(f"{drive_path}: missing or not a regular file")
    try:
        with np.load(drive_path, allow_pickle=False) as z:
            drive = {k: z[k] for k in DRIVE_KEYS}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{drive_path}: unreadable or incomplete ({exc})") from exc
    t = drive["viewmats"].shape[0] if drive["viewmats"].ndim == 3 else 0
    want = {"viewmats": (t, 4, 4), "blink": (t,), "mouth_open": (t,), "frame_index": (t,), "crop_box": (3,)}
    bad = [k for k, shape in want.items() if drive[k].shape != shape]
    if drive["expression"].ndim != 2 or drive["expression"].shape[0] != t:
        bad.append("expression")
    if t == 0 or bad:
        raise InputError(f"{drive_path}: {', '.join(bad) or 'viewmats'} malformed or no frames (shapes "
                         f"{ {k: list(v.shape) for k, v in drive.items()} })")
    for k, v in drive.items():
        if not (np.issubdtype(v.dtype, np.number) and np.isfinite(v).all()):
            raise InputError(f"{drive_path}: {k} is not numeric or holds non-finite values")
    if drive["frame_index"].min() < 0 or drive["frame_index"].max() > MAX_FRAME_INDEX:
        raise InputError(f"{drive_path}: frame_index outside 0..{MAX_FRAME_INDEX}")
    return drive


def _load_calibration(motion: MotionModel, doc: Any, cfg: ModelConfig, where: Path) -> None:
    if doc is None:
        return
    try:
        code = doc["speaker_code"]
        if "lip_bias" in doc:
            bias, gain = doc["lip_bias"], doc["lip_gain"]
        else:  # avatars whose head read the opening alone; the oldest of them moved the mouth unscaled
            bias, gain = [float(doc["opening_bias"])], [float(doc.get("opening_gain", 1.0))]
        bias = torch.tensor(bias, dtype=torch.float32)
        gain = torch.tensor(gain, dtype=torch.float32)
        n = len(cfg.lip_coeffs)
        if bias.shape != (n,) or gain.shape != (n,):
            raise ValueError(f"lip_bias / lip_gain have shapes {list(bias.shape)} / {list(gain.shape)}, not [{n}]")
        if code is not None:
            code = torch.tensor(code, dtype=torch.float32)
            if code.shape != (cfg.audio.code_dim,):
                raise ValueError(f"speaker_code has shape {tuple(code.shape)}, not ({cfg.audio.code_dim},)")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: motion_calibration is malformed ({exc})") from exc
    if not torch.isfinite(bias).all() or not torch.isfinite(gain).all() or (
            code is not None and not torch.isfinite(code).all()):
        raise InputError(f"{where}: motion_calibration holds a non-finite value")
    motion.set_calibration(code, bias, gain)
