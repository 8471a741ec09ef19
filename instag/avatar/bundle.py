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
from instag.avatar.drive import over_plate
from instag.config.model import ModelConfig
from instag.config.recipe import from_dict
from instag.errors import InputError
from instag.gaussians.field import GaussianField
from instag.motion.model import MotionModel, MotionPoints
from instag.render.avatar import AvatarRender, FrameCondition, render_avatar
from instag.versioned import read_versioned_json

AVATAR_FORMAT = "instag-avatar"
AVATAR_VERSION = 1
DRIVE_KEYS = ("viewmats", "blink", "expression", "mouth_open", "frame_index", "crop_box")


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
    # The motion's frame-independent terms of the (fixed) canonical Gaussians, computed on the first render on a
    # device; about a fifth of a CPU frame's time otherwise.
    _points: MotionPoints | None = field(default=None, init=False, repr=False)

    @property
    def size(self) -> int:
        return int(self.meta["image_size"][0])

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
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None or img.shape != (self.size, self.size, 4):
            raise InputError(f"{path}: missing or not a {self.size}² RGBA torso layer")
        return img[..., [2, 1, 0, 3]]

    def background(self, i: int) -> np.ndarray:
        """Plate with the clip's i-th torso frame (cycled) [S, S, 3] uint8."""
        return over_plate(self.plate, self.torso(i))

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
    path = Path(path)
    meta = read_avatar_meta(path)
    try:
        cfg = from_dict(ModelConfig, meta["recipe"]["model"], where=f"{path / 'avatar.json'}: recipe.model")
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path / 'avatar.json'}: no recipe.model") from exc
    model_path = path / "model.safetensors"
    try:
        tensors = load_file(str(model_path))
    except (OSError, SafetensorError, ValueError) as exc:
        raise InputError(f"{model_path}: not a valid safetensors file ({exc})") from exc
    face = GaussianField.from_tensors({k[5:]: v for k, v in tensors.items() if k.startswith("face.")})
    mouth = GaussianField.from_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("mouth.")})
    motion = MotionModel(cfg, with_aligner=True)
    try:
        motion.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("motion.")})
    except RuntimeError as exc:
        raise InputError(f"{model_path}: motion weights do not fit the recipe in avatar.json ({exc})") from exc
    _load_calibration(motion, meta.get("motion_calibration"), cfg, path / "avatar.json")
    try:
        with np.load(path / "drive.npz", allow_pickle=False) as z:
            drive = {k: z[k] for k in DRIVE_KEYS}
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path / 'drive.npz'}: unreadable or incomplete ({exc})") from exc
    plate = cv2.imread(str(path / "background.png"), cv2.IMREAD_COLOR)
    if plate is None:
        raise InputError(f"{path / 'background.png'}: missing or undecodable")
    for module in (face, mouth, motion):
        module.eval()
        module.requires_grad_(False)
    return Avatar(path, meta, cfg, face, mouth, motion, drive, plate[..., ::-1].copy())


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
