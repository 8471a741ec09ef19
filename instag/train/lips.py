"""The lip stage: the UMF's audio nets and articulation head learn audio → lip shape from tracked landmarks alone.

No rendering is needed, so it runs over every clip there is, in batches that mix people, before pre-training's
photometric stages (which then keep these nets fixed). Trained inside the photometric loop instead, one person's
frames a step, the head of `mel_v3` fitted its 10 voices (r 0.9) and generalised poorly (r 0.2 on new people).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from instag.config.model import ModelConfig
from instag.data.dataset import load_dataset
from instag.data.pose import lip_coefficients, lip_standardisation
from instag.errors import InputError
from instag.motion.audio import frame_audio_windows
from instag.motion.fields import AUDIO_CODE_CHUNK, UniversalMotionField
from instag.stats import ridge_from_moments, ridge_moments
from instag.train.recipe import LipStageConfig


@dataclass
class LipClip:
    """One person's audio features and tracked lip shape, standardised over the frames used."""

    name: str
    features: Tensor  # [T, K, D]
    lips: Tensor  # [T, C] standardised
    frames: np.ndarray  # [F] the frames to learn from (a dataset's training split)


def load_lip_clip(path: str | Path, audio_feature: str, cfg: ModelConfig) -> LipClip:
    """A dataset dir's features of kind `audio_feature` and its lip shape (`cfg.lip_coeffs`) over its training
    frames."""
    ds = load_dataset(path)
    feats = torch.from_numpy(np.array(ds.audio_features(audio_feature), dtype=np.float32))
    if feats.shape[2] != cfg.audio.feature_dim:
        raise InputError(f"{ds.path}: '{audio_feature}' features have {feats.shape[2]} channels, the recipe's "
                         f"model.audio.feature_dim is {cfg.audio.feature_dim}")
    lips = lip_coefficients(ds.tracks, cfg.lip_coeffs)
    train = ds.train_indices
    mean, std = lip_standardisation(lips, train)
    return LipClip(ds.path.name, feats, torch.from_numpy(((lips - mean) / std).astype(np.float32)), train)


def lip_audio_nets(umf: UniversalMotionField) -> list[torch.nn.Module]:
    """What the lip stage trains: the audio encoder, its smoothing attention and the articulation head."""
    if umf.articulation is None:
        raise InputError("the lip stage needs model.articulation on")
    return [umf.audio_encoder, umf.audio_smoother, umf.articulation]


def predict_lips(umf: UniversalMotionField, clip: LipClip, cfg: ModelConfig,
                 frames: np.ndarray | None = None) -> Tensor:
    """The head's lip shape [F, C] for `frames` of `clip` (all frames when None), without gradients."""
    ts = range(len(clip.lips)) if frames is None else frames
    with torch.no_grad():
        return umf.clip_lips(clip.features, [int(t) for t in ts], cfg.audio)[1]


def fit_lip_predictor(umf: UniversalMotionField, clips: list[LipClip], cfg: ModelConfig, stage: LipStageConfig,
                      seed: int, progress: Callable[[int, float], None] | None = None) -> list[float]:
    """`stage.steps` AdamW steps on the mean squared error of the predicted lip shape, each over `stage.batch`
    frames drawn from people chosen uniformly (a long clip must not outweigh a short one); the learning rate
    follows a cosine to zero. Returns the loss of every step; `progress(step, loss)` after each."""
    nets = lip_audio_nets(umf)
    params = [p for net in nets for p in net.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(stage.steps):
        for g in opt.param_groups:
            g["lr"] = stage.lr * 0.5 * (1 + math.cos(math.pi * step / stage.steps))
        who = torch.randint(len(clips), (stage.batch,), generator=gen).tolist()
        windows, targets = [], []
        for i in who:
            c = clips[i]
            t = int(c.frames[int(torch.randint(len(c.frames), (1,), generator=gen))])
            windows.append(frame_audio_windows(c.features, t, cfg.audio))
            targets.append(c.lips[t])
        pred = umf.articulation(umf.audio_codes(torch.stack(windows)))
        loss = (pred - torch.stack(targets)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, losses[-1])
    for p in params:
        p.requires_grad_(False)
    return losses


def fit_lip_readout(umf: UniversalMotionField, clips: list[LipClip], cfg: ModelConfig, alpha: float) -> None:
    """Fit the UMF's lip read-out (`motion.audio.LipReadout`) in closed form: a ridge regression of strength `alpha`
    (`stats.ridge_from_moments`) from every clip's training frames to their tracked lip shape, over all of them at
    once; its buffers are set and it takes part from then on."""
    readout = umf.lip_readout
    if readout is None:
        raise InputError("the lip read-out needs model.articulation and model.lip_readout on")
    if not clips:
        raise InputError("the lip read-out needs at least one clip to fit")
    total: dict[str, np.ndarray] = {}
    for c in clips:
        frames = [int(t) for t in c.frames]
        for i in range(0, len(frames), AUDIO_CODE_CHUNK):
            chunk = frames[i:i + AUDIO_CODE_CHUNK]
            windows = torch.stack([frame_audio_windows(c.features, t, cfg.audio) for t in chunk])
            m = ridge_moments(readout.inputs(windows).numpy(), c.lips[chunk].numpy())
            total = {k: total.get(k, 0) + v for k, v in m.items()}
    mean, scale, weights, bias = ridge_from_moments(total, (alpha,))
    dev = readout.weight.device
    with torch.no_grad():
        for name, value in (("in_mean", mean), ("in_scale", scale), ("weight", weights[alpha]), ("bias", bias)):
            getattr(readout, name).copy_(torch.from_numpy(value).to(dev, torch.float32))
        readout.fitted.fill_(1.0)
