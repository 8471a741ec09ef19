"""The lip stage: the UMF's audio nets and articulation head learn audio → lip shape from tracked landmarks alone.

No rendering is needed, so it runs over every clip there is, in batches that mix people, before pre-training's
photometric stages (which then keep these nets fixed). Trained inside the photometric loop instead, one person's
frames a step, the head of `mel_v3` fitted its 10 voices (r 0.9) and generalised poorly (r 0.2 on new people).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from instag.audio import features as af
from instag.audio import live_context as lc
from instag.config.model import AudioConfig, ModelConfig
from instag.data.dataset import load_dataset
from instag.data.pose import lip_coefficients, lip_standardisation
from instag.errors import InputError
from instag.motion.audio import LipReadout, frame_audio_windows
from instag.motion.fields import AUDIO_CODE_CHUNK, LIVE_HEAD_WEIGHT, UniversalMotionField
from instag.stats import ridge_from_moments, ridge_moments
from instag.train.recipe import LipStageConfig


@dataclass
class LipClip:
    """One person's audio features and tracked lip shape, standardised over the frames used."""

    name: str
    features: Tensor  # [T, K, D]
    lips: Tensor  # [T, C] standardised
    frames: np.ndarray  # [F] the frames to learn from (a dataset's training split)
    path: Path  # the dataset dir


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
    return LipClip(ds.path.name, feats, torch.from_numpy(((lips - mean) / std).astype(np.float32)), train, ds.path)


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
    readout = _to_fit(umf.lip_readout, clips, "lip read-out", "model.articulation and model.lip_readout")
    total: dict[str, np.ndarray] = {}
    for c in clips:
        frames = [int(t) for t in c.frames]
        for i in range(0, len(frames), AUDIO_CODE_CHUNK):
            chunk = frames[i:i + AUDIO_CODE_CHUNK]
            windows = torch.stack([frame_audio_windows(c.features, t, cfg.audio) for t in chunk])
            total = _add_moments(total, readout.inputs(windows), c.lips[chunk])
    _set_ridge(readout, total, alpha)


def live_feature_model(clips: list[LipClip], kind: str) -> tuple[Any, str | None]:
    """The feature model that computes the live mode's `kind` features as every clip's own were computed, for the
    live read-out's fit: (the front end, None), or (None, why the live read-out cannot be fitted here). hubert and
    wav2vec2 come from a local model that pre-training is not given."""
    if kind not in ("mel", "whisper"):
        return None, f"'{kind}' features come from a local model that pre-training is not given"
    front = af.load_front_end(kind, None)
    want = af.feature_source(kind, front)
    for c in clips:
        ds = load_dataset(c.path)
        source = ds.meta.get("audio", {}).get("features", {}).get(kind, {}).get("source")
        if source != want:
            return None, f"{c.path}: its '{kind}' features came from {source!r}, the live mode computes {want!r}"
        if not (c.path / "audio.wav").is_file():
            return None, f"{c.path}: no audio.wav"
    return front, None


def fit_live_readout(umf: UniversalMotionField, clips: list[LipClip], cfg: ModelConfig, alpha: float, kind: str,
                     front: Any, progress: Callable[[int, int], None] | None = None) -> int:
    """Fit the UMF's live read-out (`UniversalMotionField.lip_readout_live`) as `fit_lip_readout` fits the
    read-out, on the features the preview's microphone mode computes for each training frame instead of the
    whole file's (`audio.live_context`, its default look-ahead, both positions of the CPU's feature hop);
    `front` from `live_feature_model`. Frames whose look-ahead runs past the clip are left out, as the preview
    never draws them. Then its `gain`: per lip coefficient, the median over the clips of how much more widely the
    UMF's file prediction spreads than its live one (the audio nets as they are). Returns how many frames it was
    fitted on; `progress(clips done, clips)`."""
    readout = _to_fit(umf.lip_readout_live, clips, "live read-out",
                      "model.articulation, model.lip_readout and model.live_readout")
    total: dict[str, np.ndarray] = {}
    spreads = []  # per clip: its frames' live read-out inputs, the head's live lip shape, the file prediction
    count = 0
    dev = next(umf.audio_encoder.parameters()).device  # windows are made on the CPU, the nets may be elsewhere
    for i, c in enumerate(clips):
        ds = load_dataset(c.path)
        audio, rate = ds.audio()
        if rate != lc.RATE:
            raise InputError(f"{c.path}: audio.wav is {rate} Hz, the live mode hears {lc.RATE}")
        inputs, heads, done = [], [], []
        with torch.no_grad():
            for group, windows in live_windows(audio, ds.fps, [int(t) for t in c.frames], len(c.features), kind,
                                               front, cfg.audio, c.features.shape[2]):
                inputs.append(readout.inputs(windows))
                heads.append(umf.articulation(umf.audio_codes(windows.to(dev))).cpu())
                done += group
            if done:
                x = torch.cat(inputs)
                total = _add_moments(total, x, c.lips[done])
                spreads.append((x, torch.cat(heads), umf.clip_lips(c.features, done, cfg.audio)[1].cpu()))
        count += len(done)
        if progress:
            progress(i + 1, len(clips))
    if not count:
        raise InputError("the live read-out has no frame to fit: every clip is shorter than its look-ahead")
    _set_ridge(readout, total, alpha)
    with torch.no_grad():
        live = [LIVE_HEAD_WEIGHT * head + (1 - LIVE_HEAD_WEIGHT) * readout.forward_inputs(x.to(dev)).cpu()
                for x, head, _ in spreads]
        ratios = [file.std(0) / lips.std(0) for lips, (_, _, file) in zip(live, spreads, strict=True) if len(lips) > 2]
        readout.gain.copy_(torch.stack(ratios).nanmedian(0).values.to(dev) if ratios else torch.ones_like(readout.gain))
    return count


def live_windows(audio: np.ndarray, fps: float, frames: list[int], clip_frames: int, kind: str, front: Any,
                 cfg: AudioConfig, feature_dim: int) -> Iterator[tuple[list[int], Tensor]]:
    """The audio windows the preview's microphone mode computes for `frames` of a clip whose `audio` [N] it heard
    from its start (`audio.live_context`: the default look-ahead, the CPU's feature hop): per context, the frames
    that share it and their windows [B, smooth_window, window, feature_dim]. Frames whose look-ahead runs past
    the clip's `clip_frames` frames are left out: the preview never draws them."""
    look, hop = lc.LOOKAHEAD_FRAMES, lc.CPU_FEATURE_HOP
    n_ctx = lc.context_frames(fps, cfg.smooth_window, look, hop)
    by_end: dict[int, list[int]] = {}
    for t in frames:
        if lc.context_end(t, look, hop) < clip_frames:
            by_end.setdefault(lc.context_end(t, look, hop), []).append(t)
    for last, group in by_end.items():
        end, n, start_s = lc.context_span(kind, last, n_ctx, fps)
        context = torch.from_numpy(lc.context_features(kind, front, lc.clip_window(audio, end, n), fps, n_ctx,
                                                       start_s, feature_dim))
        yield group, torch.stack([frame_audio_windows(context, n_ctx - 1 - (last - t), cfg) for t in group])


def _to_fit(readout: LipReadout | None, clips: list[LipClip], name: str, needs: str) -> LipReadout:
    """`readout`, or InputError where the model has none or there is nothing to fit it on."""
    if readout is None:
        raise InputError(f"the {name} needs {needs} on")
    if not clips:
        raise InputError(f"the {name} needs at least one clip to fit")
    return readout


def _add_moments(total: dict[str, np.ndarray], inputs: Tensor, lips: Tensor) -> dict[str, np.ndarray]:
    """`total` plus the ridge moments of read-out inputs [B, I] against lip shapes [B, C]."""
    m = ridge_moments(inputs.numpy(), lips.numpy())
    return {k: total.get(k, 0) + v for k, v in m.items()}


def _set_ridge(readout: LipReadout, total: dict[str, np.ndarray], alpha: float) -> None:
    """Solve the ridge of strength `alpha` from summed moments into `readout`'s buffers; it takes part from then on."""
    mean, scale, weights, bias = ridge_from_moments(total, (alpha,))
    dev = readout.weight.device
    with torch.no_grad():
        for name, value in (("in_mean", mean), ("in_scale", scale), ("weight", weights[alpha]), ("bias", bias)):
            getattr(readout, name).copy_(torch.from_numpy(value).to(dev, torch.float32))
        readout.fitted.fill_(1.0)
