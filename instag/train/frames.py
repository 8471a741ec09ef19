"""`IdentityFrames`: what training needs from one dataset dir, loaded lazily and cached at 8/16 bits.

Frames, labels and priors are read on first use and kept as uint8 / float16 (never the whole clip at float32);
a byte budget bounds the cache for long clips (beyond it frames are re-read from disk each time). Targets are
converted to float tensors one frame at a time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from instag.config.model import ModelConfig
from instag.data import facemesh as fm
from instag.data.dataset import Dataset
from instag.data.pose import lip_coefficients, lip_standardisation
from instag.errors import InputError
from instag.motion.audio import frame_audio_windows
from instag.render.avatar import FrameCondition, expression_matrix
from instag.render.plate import paste_torso

DEFAULT_CACHE_BYTES = 2 << 30


@dataclass
class FrameTarget:
    """Ground truth of one frame, float tensors."""

    image: Tensor  # [H, W, 3] in [0, 1]
    head: Tensor  # [H, W, 1] face skin, lips and hair (the face branch's pixels)
    mouth: Tensor  # [H, W, 1] mouth interior (the mouth branch's pixels)
    face: Tensor  # [H, W, 1] face skin and lips where the depth prior exists (geometry prior mask)
    depth: Tensor  # [H, W, 1] prior camera z, 0 where none
    normal: Tensor  # [H, W, 3] prior camera-space normals, 0 where none


class IdentityFrames:
    """One identity's dataset dir as training tensors (lazy, cached)."""

    def __init__(self, ds: Dataset, audio_kind: str, expression_dim: int,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, device: torch.device | str = "cpu",
                 lip_coeffs: tuple[str, ...] = ("mouth_open",)) -> None:
        self.ds = ds
        self.device = torch.device(device)
        self.size = ds.size
        labels = ds.meta["labels"]
        try:
            self.ids = {k: int(labels[k]) for k in ("face_skin", "lips", "mouth_interior", "hair", "neck_torso")}
        except KeyError as exc:
            raise InputError(f"{ds.path / 'meta.json'}: labels lack {exc}") from exc
        self.features = torch.from_numpy(np.array(ds.audio_features(audio_kind), dtype=np.float32))  # [T, K, D]
        tracks = ds.tracks
        self.viewmats = torch.from_numpy(tracks["viewmats"].astype(np.float32))  # [T, 4, 4]
        self.expressions = torch.from_numpy(expression_matrix(tracks, expression_dim))  # [T, E]
        self.train_indices = ds.train_indices
        self.lips = lip_coefficients(tracks, lip_coeffs)  # [T, C]
        mean, std = lip_standardisation(self.lips, self.train_indices)
        # Standardised once: the articulation term reads a batch of frames every step.
        self._lips_z = torch.from_numpy((self.lips - mean) / std)  # [T, C] float32
        self.K = torch.from_numpy(ds.intrinsics.astype(np.float32))
        # On the device once: a step then copies in only its frame's own pixels, audio and lip shape.
        self._viewmats = self.viewmats.to(self.device)
        self._expressions = self.expressions.to(self.device)
        self._K = self.K.to(self.device)
        self.plate = ds.background()
        self._cache: dict[int, tuple[np.ndarray, ...]] = {}
        self._cache_bytes = 0
        self._budget = cache_bytes

    # Only the lip landmark loss needs these.
    @functools.cached_property
    def lip_vertices(self) -> Tensor:
        """The face mesh's lip vertices [L, 3] (`facemesh.LIP_INDICES` order), world."""
        verts = self.ds.face_mesh()[0][fm.LIP_INDICES]
        return torch.from_numpy(verts.astype(np.float32)).to(self.device)

    @functools.cached_property
    def lip_landmarks(self) -> Tensor:
        """Tracked lip landmarks [T, L, 2] (`facemesh.LIP_INDICES` order), pixels."""
        lms = self.ds.tracks["landmarks"][:, fm.LIP_INDICES]
        return torch.from_numpy(lms.astype(np.float32)).to(self.device)

    def _raw(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(frame uint8 [S,S,3], label uint8 [S,S], depth float16 [S,S], normal int8 [S,S,3])."""
        hit = self._cache.get(t)
        if hit is not None:
            return hit
        item = (
            self.ds.frame(t),
            self.ds.label(t),
            self.ds.depth(t).astype(np.float16),
            np.round(self.ds.normal(t) * 127.0).astype(np.int8),
        )
        size = sum(a.nbytes for a in item)
        if self._cache_bytes + size <= self._budget:
            self._cache[t] = item
            self._cache_bytes += size
        return item

    def frame_uint8(self, t: int) -> np.ndarray:
        return self._raw(t)[0]

    def label(self, t: int) -> np.ndarray:
        return self._raw(t)[1]

    def depth(self, t: int) -> np.ndarray:
        """Depth prior [S, S] float32 (camera z, 0 where none)."""
        return self._raw(t)[2].astype(np.float32)

    def background(self, t: int) -> np.ndarray:
        """Plate with frame t's torso [S, S, 3] uint8."""
        frame, label = self._raw(t)[:2]
        return paste_torso(self.plate, frame, label, self.ids["neck_torso"])

    def _to_device(self, x: Tensor) -> Tensor:
        """Host tensor `x` on the training device. To CUDA through dense pinned memory, without waiting: a blocking
        copy makes the host wait until the device has run all the work queued before it, and a copy from pageable
        or strided memory goes through a staging copy first."""
        if self.device.type == "cuda":
            return x.contiguous().pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def condition(self, t: int, audio_cfg) -> FrameCondition:
        return FrameCondition(
            audio_windows=self._to_device(frame_audio_windows(self.features, t, audio_cfg)),
            expression=self._expressions[t],
            viewmat=self._viewmats[t],
            K=self._K,
            width=self.size,
            height=self.size,
            background=self._to_device(torch.from_numpy(self.background(t))).float() / 255.0,
            lip_shape=self.tracked_lips([t])[0],
        )

    def audio_windows(self, ts: list[int], audio_cfg) -> Tensor:
        """The audio encoder's inputs of frames `ts`: [B, smooth_window, window, feature_dim]."""
        return self._to_device(torch.stack([frame_audio_windows(self.features, t, audio_cfg) for t in ts]))

    def tracked_lips(self, ts: list[int]) -> Tensor:
        """Tracked lip shape of frames `ts`, standardised over the training frames: [B, C] (the articulation
        head's units)."""
        return self._to_device(self._lips_z[ts])

    def target(self, t: int) -> FrameTarget:
        frame, label, depth, normal = self._raw(t)
        ids = self.ids
        # The masks are made on the device from the one label map copied in, not on the host a mask at a time.
        label_t = self._to_device(torch.from_numpy(label))

        def mask(*names: str) -> Tensor:
            m = functools.reduce(torch.logical_or, (label_t == ids[n] for n in names))
            return m.float()[..., None]

        depth_t = self._to_device(torch.from_numpy(depth)).float()[..., None]
        return FrameTarget(
            image=self._to_device(torch.from_numpy(frame)).float() / 255.0,
            head=mask("face_skin", "lips", "hair"),
            mouth=mask("mouth_interior"),
            face=mask("face_skin", "lips") * (depth_t > 0).float(),
            depth=depth_t,
            normal=self._to_device(torch.from_numpy(normal)).float() / 127.0,
        )


def training_frames(ds: Dataset, audio_kind: str, cfg: ModelConfig, device: torch.device) -> IdentityFrames:
    """`IdentityFrames` of `ds` for a model of `cfg`, whose audio nets must read as many channels as the
    dataset's `audio_kind` features have."""
    frames = IdentityFrames(ds, audio_kind, cfg.expression_dim, device=device, lip_coeffs=cfg.lip_coeffs)
    if frames.features.shape[2] != cfg.audio.feature_dim:
        raise InputError(f"{ds.path}: '{audio_kind}' features have {frames.features.shape[2]} channels, "
                         f"the recipe's model.audio.feature_dim is {cfg.audio.feature_dim}")
    return frames
