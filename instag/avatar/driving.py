"""Driving an avatar with new audio: audio → per-frame features → `FrameCondition`s, with the clip's head pose,
blink and torso replayed in ping-pong order (forward, then backward, …) so there is never a jump at the loop
point: consecutive output frames always use neighbouring clip frames."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from instag.audio import features as af
from instag.avatar.bundle import Avatar
from instag.avatar.rest import LipRest, lip_rest
from instag.errors import InputError
from instag.media.audio import FEATURE_RATE
from instag.motion.audio import frame_audio_windows
from instag.render.avatar import FrameCondition, expression_matrix

LAYER_CACHE_BYTES = 256 << 20  # the decoded layers one DriveLayers keeps


def pingpong_index(i: int, n: int) -> int:
    """Clip frame replayed at output frame `i` for a clip of `n` frames: 0, 1, …, n−1, n−2, …, 1, 0, 1, …"""
    if n <= 1:
        return 0
    period = 2 * (n - 1)
    k = i % period
    return k if k < n else period - k


def frame_count(duration_s: float, fps: float) -> int:
    """Output frames for audio of `duration_s`: the nearest whole number (≥ 1), so the video's duration is the
    audio's within half a frame."""
    return max(1, int(round(duration_s * fps)))


def audio_features(avatar: Avatar, mono16k: np.ndarray, n_frames: int, audio_model: str | None = None) -> Tensor:
    """Features [n_frames, K, D] of 16 kHz mono audio `mono16k` [N] of the kind and shape the avatar was trained
    on (meta audio_feature, audio_feature_shape)."""
    kind = avatar.meta["audio_feature"]
    k, d = (int(v) for v in avatar.meta["audio_feature_shape"])
    fps = float(avatar.meta["fps"])
    audio = mono16k if mono16k.size else np.zeros(1, np.float32)
    if kind not in af.KINDS:
        raise InputError(f"{avatar.path}: unknown audio feature kind '{kind}'")
    if kind in ("hubert", "wav2vec2") and not audio_model:
        raise InputError(f"{avatar.path}: the avatar is driven by {kind} features; pass --audio-model "
                         f"pointing to the local {kind} model directory it was trained with")
    front = af.load_front_end(kind, None if audio_model is None else str(audio_model))
    feats = af.compute_features(kind, front, audio, fps, n_frames, n_mels=d)
    if feats.shape[1:] != (k, d):
        raise InputError(f"{avatar.path}: '{kind}' features come out {list(feats.shape[1:])} per frame, the avatar "
                         f"was trained on {[k, d]} (a different feature model?)")
    return torch.from_numpy(feats)


def audio_driver(avatar: Avatar, mono16k: np.ndarray, n_frames: int, audio_model: str | None = None,
                 size: int | None = None, device: torch.device | str = "cpu",
                 features: Tensor | None = None, layers: DriveLayers | None = None,
                 rest_without_voice: bool = True) -> Driver:
    """The Driver of 16 kHz mono `mono16k` [N] over `n_frames` output frames: its features (`audio_features`, unless
    given [n_frames, K, D]) and where nobody speaks for long, its lips' rest (`rest.rest_weights`; with
    `rest_without_voice`, where no voice is heard as well as in silence)."""
    feats = audio_features(avatar, mono16k, n_frames, audio_model) if features is None else features
    rest = lip_rest(avatar, mono16k, FEATURE_RATE, n_frames, device, rest_without_voice)
    return Driver(avatar, feats, size, device, rest=rest, layers=layers)


class DriveLayers:
    """The clip's frames under and over the head (`Avatar.layers`) at `size`² on `device`, per drive row. One
    serves every Driver of an avatar at that size (a preview's idle loop, pauses and clips; a batch's jobs), so each
    torso layer is decoded once and held once. Safe to share between threads."""

    def __init__(self, avatar: Avatar, size: int, device: torch.device | str = "cpu") -> None:
        self.avatar = avatar
        self.size = int(size)
        if self.size < 16:
            raise InputError(f"--size {self.size}: must be at least 16")
        self.device = torch.device(device)
        self._kept: dict[int, tuple[Tensor, Tensor | None]] = {}  # drive row → its layers
        self._kept_bytes = 0
        self._lock = threading.Lock()

    def __call__(self, j: int) -> tuple[Tensor, Tensor | None]:
        """Drive row j's plate with torso [size, size, 3] and what it draws over the head [size, size, 4] (or None),
        uint8. Kept up to LAYER_CACHE_BYTES (a long clip's rows beyond that are re-read), so memory does not
        grow with the audio."""
        got = self._kept.get(j)
        if got is not None:
            return got
        imgs = [img if img is None or img.shape[0] == self.size
                else cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
                for img in self.avatar.layers(j)]
        got = tuple(None if img is None else torch.from_numpy(np.ascontiguousarray(img)).to(self.device)
                    for img in imgs)
        nbytes = sum(img.nbytes for img in imgs if img is not None)
        with self._lock:
            if j not in self._kept and self._kept_bytes + nbytes <= LAYER_CACHE_BYTES:
                self._kept[j] = got
                self._kept_bytes += nbytes
        return got


@dataclass
class DrivenFrame:
    index: int  # output frame
    clip_frame: int  # the clip's frame (dataset index) whose pose, blink and torso are replayed
    cond: FrameCondition


class Driver:
    """Conditions for each output frame of one audio: its features, the replayed pose/blink/torso, rendered at
    `size`² (the avatar's own size by default; intrinsics and background scale with it)."""

    def __init__(self, avatar: Avatar, features: Tensor, size: int | None = None,
                 device: torch.device | str = "cpu", rest: LipRest | None = None,
                 layers: DriveLayers | None = None) -> None:
        """rest: the lips through the audio's long silences (`rest.lip_rest`); None: as the audio predicts.
        layers: the clip's layers shared with other Drivers of this avatar, size and device (None: its own)."""
        self.avatar = avatar
        self.device = torch.device(device)
        self.features = features.to(self.device)  # [T, K, D]
        self.rest = rest
        self.size = int(size or avatar.size)
        if layers is None:
            layers = DriveLayers(avatar, self.size, self.device)
        elif layers.avatar is not avatar or (layers.size, layers.device) != (self.size, self.device):
            raise ValueError(f"shared layers of {layers.size}² on {layers.device} for a {self.size}² Driver on "
                             f"{self.device}, or of another avatar")
        self._layers = layers
        scale = self.size / avatar.size
        K = avatar.K.clone()
        K[:2] *= scale
        self.K = K.to(self.device)
        viewmats = np.asarray(avatar.drive["viewmats"], np.float32)
        self.viewmats = torch.from_numpy(viewmats).to(self.device)  # [C, 4, 4]
        expressions = expression_matrix(avatar.drive, avatar.cfg.expression_dim)
        self.expressions = torch.from_numpy(expressions).to(self.device)  # [C, E]

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])

    def drive_index(self, i: int) -> int:
        """Row of the avatar's drive arrays replayed at output frame `i`."""
        return pingpong_index(i, self.avatar.n_drive_frames)

    def layers(self, j: int) -> tuple[Tensor, Tensor | None]:
        """Drive frame j under and over the head, float in [0, 1]: the plate with its torso [size, size, 3], and
        what its torso layer draws over the head (the clip's own hair at the head's cut) [size, size, 4] or None."""
        bg, fg = self._layers(j)
        return bg.float() / 255.0, None if fg is None else fg.float() / 255.0

    def condition(self, i: int) -> DrivenFrame:
        j = self.drive_index(i)
        windows = frame_audio_windows(self.features, i, self.avatar.cfg.audio)
        background, foreground = self.layers(j)
        cond = FrameCondition(
            audio_windows=windows,
            expression=self.expressions[j],
            viewmat=self.viewmats[j],
            K=self.K,
            width=self.size,
            height=self.size,
            background=background,
            lip_shape=None if self.rest is None else self.rest.lips(i, windows),
            foreground=foreground,
        )
        return DrivenFrame(i, int(self.avatar.drive["frame_index"][j]), cond)

    def __iter__(self) -> Iterator[DrivenFrame]:
        for i in range(self.n_frames):
            yield self.condition(i)


def to_uint8(image: Tensor) -> np.ndarray:
    """[H, W, 3] float in [0, 1] → uint8 (rounded)."""
    return (image.clamp(0, 1) * 255.0).round_().to(torch.uint8).cpu().numpy()
