"""One training frame: render an identity under its frame condition and add up the losses the stage asks for."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from instag.config.model import ModelConfig
from instag.gaussians.field import GaussianField, Region
from instag.motion.fields import PersonalizedField
from instag.motion.model import MotionModel
from instag.render.avatar import AvatarRender, FrameCondition, render_avatar
from instag.train import losses as L
from instag.train.frames import FrameTarget, IdentityFrames
from instag.train.recipe import LossConfig
from instag.train.schedules import Stage


@dataclass
class Identity:
    """One person being trained: its frames, its two Gaussian fields and (pre-training) its residual field."""

    name: str
    frames: IdentityFrames
    face: GaussianField
    mouth: GaussianField
    face_extent: float  # fixed at initialisation: densification thresholds and the means' learning rate
    mouth_extent: float
    personalized: PersonalizedField | None = None


def frame_loss(
    identity: Identity,
    motion: MotionModel,
    t: int,
    stage: Stage,
    cfg: ModelConfig,
    tl: LossConfig,
    others: list[PersonalizedField],
    gen: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor], AvatarRender]:
    """Total loss of frame `t`, its named terms and the total as "loss" (detached scalars, for the log: reading them
    waits for the device, so the loop reads them only when it logs) and the render (for densification).
    `gen` draws the extra frames of the articulation term (none without it)."""
    frames = identity.frames
    cond = frames.condition(t, cfg.audio)
    gt = frames.target(t)
    shaping = stage.face and not stage.colors_only
    lips = tl.lambda_lips > 0 and shaping
    out = render_avatar(identity.face, identity.mouth, motion, cond, personalized=identity.personalized,
                        geometry=stage.geometry, backend=cfg.backend,
                        probe_xyz=frames.lip_vertices if lips else None)
    if out.face.raster.means2d.requires_grad:
        out.face.raster.means2d.retain_grad()
    if out.mouth.raster.means2d.requires_grad:
        out.mouth.raster.means2d.retain_grad()
    terms = photometric_terms(out, gt, stage, tl)
    terms |= geometry_terms(out, gt, frames, stage, tl)
    terms |= lip_terms(identity, motion, out, cond, t, stage, cfg, tl, gen, lips)
    terms |= regularisers(identity, out, stage, tl)
    terms |= contrast_terms(identity, out, stage, tl, others)
    total = sum(terms.values())
    logged = {k: v.detach() for k, v in terms.items()} | {"loss": total.detach()}
    return total, logged, out


def photometric_terms(out: AvatarRender, gt: FrameTarget, stage: Stage, tl: LossConfig) -> dict[str, Tensor]:
    """(1 − λ) L1 + λ D-SSIM over the stage's region (the mouth's own weighted term with it), and the head's
    silhouette against the face branch's alpha."""
    # One L1 map and one SSIM map serve every masked term, without recomputing the SSIM convolutions per mask.
    l1_map = (out.image - gt.image).abs()
    dssim = (1.0 - L.ssim_map(out.image, gt.image, tl.ssim_window, tl.ssim_sigma)) / 2.0
    photo_map = (1.0 - tl.lambda_dssim) * l1_map + tl.lambda_dssim * dssim  # [H, W, 3]

    def photo(mask: Tensor | None) -> Tensor:
        if mask is None:
            return photo_map.mean()
        w = mask.expand_as(photo_map)
        return (photo_map * w).sum() / w.sum().clamp_min(L.EPS)

    terms: dict[str, Tensor] = {}
    if stage.region == "full":
        terms["photo"] = photo(None)
        if tl.lambda_mouth > 0 and stage.mouth:
            terms["mouth"] = tl.lambda_mouth * photo(gt.mouth)
    elif stage.region == "no_mouth":
        terms["photo"] = photo(1.0 - gt.mouth)
    else:
        terms["photo"] = photo(gt.mouth)
    if stage.face and not stage.colors_only and tl.lambda_alpha > 0:
        terms["alpha"] = tl.lambda_alpha * L.l1_loss(out.face.alpha, gt.head)
    return terms


def geometry_terms(out: AvatarRender, gt: FrameTarget, frames: IdentityFrames, stage: Stage,
                   tl: LossConfig) -> dict[str, Tensor]:
    """The depth and normal priors on the face, and the lips' depth offset, in stages with the geometry prior."""
    if not (stage.geometry and out.depth is not None):
        return {}
    terms = {"depth": tl.lambda_depth * L.scale_invariant_depth_loss(out.depth, gt.depth, gt.face),
             "normal": tl.lambda_normal * L.normal_cosine_loss(out.normal, gt.normal, gt.face)}
    if tl.lambda_depth_offset > 0:
        terms["depth_offset"] = tl.lambda_depth_offset * L.depth_offset_loss(
            out.depth, gt.depth, gt.face, L.lip_width(frames.lip_vertices))
    return terms


def lip_terms(identity: Identity, motion: MotionModel, out: AvatarRender, cond: FrameCondition, t: int, stage: Stage,
              cfg: ModelConfig, tl: LossConfig, gen: torch.Generator | None, lips: bool) -> dict[str, Tensor]:
    """The moved lip vertices against the tracked landmarks (`lips`: the render probed them), the lip Gaussians'
    depth against the mesh's, and the UMF's predicted lip shape against the tracked one."""
    frames, m = identity.frames, out.motion
    shaping = stage.face and not stage.colors_only
    terms: dict[str, Tensor] = {}
    if lips:
        terms["lips"] = tl.lambda_lips * L.lip_landmark_loss(
            frames.lip_vertices + m.probe_d_means, cond.viewmat, cond.K, frames.lip_landmarks[t], frames.size)
    # Gathered by cached indices, whose count the host knows: a boolean mask would wait for the device every step.
    lip = identity.face.region_index(Region.LIPS) if tl.lambda_lip_depth > 0 and shaping else None
    if lip is not None and len(lip) > 0:  # pruning could, in principle, leave no lip Gaussian
        terms["lip_depth"] = tl.lambda_lip_depth * L.lip_depth_loss(
            identity.face.means[lip] + m.face.d_means[lip], frames.lip_vertices)
    if m.lip_shape is not None and m.lip_shape.requires_grad and tl.lambda_articulation > 0:
        terms["articulation"] = tl.lambda_articulation * articulation_loss(
            m.lip_shape, motion, frames, t, cfg, tl, gen)
    return terms


def regularisers(identity: Identity, out: AvatarRender, stage: Stage, tl: LossConfig) -> dict[str, Tensor]:
    """Small motion, bounded anisotropy and (with the aligner training) a near-identity aligner."""
    if stage.colors_only:
        return {}
    m = out.motion
    terms = {"reg_motion": tl.lambda_motion * L.motion_regulariser(m.face.d_means, m.mouth_d_means),
             "reg_aniso": tl.lambda_anisotropy * L.anisotropy_regulariser(
                 torch.cat([identity.face.log_scales, identity.mouth.log_scales]), tl.max_anisotropy)}
    if stage.aligner and m.aligner_offsets is not None:
        terms["reg_aligner"] = tl.lambda_aligner * L.aligner_regulariser(m.aligner_offsets, m.aligner_scales)
    return terms


def contrast_terms(identity: Identity, out: AvatarRender, stage: Stage, tl: LossConfig,
                   others: list[PersonalizedField]) -> dict[str, Tensor]:
    """Pre-training's negative contrast: this identity's residual motion pushed away from the other identities'
    residual fields at the same points and conditions."""
    m = out.motion
    if not (stage.contrast and identity.personalized is not None and others and m.residual_face_d_means is not None):
        return {}
    with torch.no_grad():
        code, expr, hook = m.audio_code.detach(), m.face_condition.detach(), m.hook_code.detach()
        face_xyz, mouth_xyz = identity.face.means.detach(), identity.mouth.means.detach()
        other_face = torch.stack([p.face_motion(face_xyz, code, expr).d_means for p in others])
        other_mouth = torch.stack([p.mouth_motion(mouth_xyz, code, hook) for p in others])
    return {"contrast": tl.lambda_contrast * (
        L.negative_contrast_loss(m.residual_face_d_means, other_face)
        + L.negative_contrast_loss(m.residual_mouth_d_means, other_mouth))}


def articulation_loss(predicted: Tensor, motion: MotionModel, frames: IdentityFrames, t: int, cfg: ModelConfig,
                      tl: LossConfig, gen: torch.Generator | None) -> Tensor:
    """Mean squared error of the UMF's predicted lip shape (`predicted` [C]: frame `t`'s, from the render's
    motion) on frame `t` and `tl.articulation_batch` training frames drawn with `gen`, against the tracked one."""
    ts = [t]
    if gen is not None and tl.articulation_batch > 0:
        train = frames.train_indices
        # The draw is the host's (a CPU generator): read as one array, not a tensor element at a time.
        ts += train[torch.randint(len(train), (tl.articulation_batch,), generator=gen).numpy()].tolist()
    if len(ts) > 1:
        windows = frames.audio_windows(ts[1:], cfg.audio)  # [B - 1, smooth_window, window, feature_dim]
        predicted = torch.cat([predicted.reshape(1, -1), motion.predicted_lips(motion.umf.audio_codes(windows),
                                                                               windows)])
    return (predicted.reshape(len(ts), -1) - frames.tracked_lips(ts)).square().mean()


def accumulate_densify(identity: Identity, out: AvatarRender, stage: Stage) -> None:
    """Add this view's screen-space gradients to the densification statistics of the branches that train."""
    size = identity.frames.size
    for train, field, branch in ((stage.face, identity.face, out.face), (stage.mouth, identity.mouth, out.mouth)):
        grad = branch.raster.means2d.grad
        if train and grad is not None:
            field.accumulate_densify_stats(grad, branch.raster.radii, size, size)
