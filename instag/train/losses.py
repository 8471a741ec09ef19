"""Training losses: photometric (L1 + D-SSIM, masked), negative contrast between identities' residual motion,
geometry prior (scale-invariant depth, normal cosine) and small regularisers.

Images are [H, W, C] as the rasterizer returns them; masks are [H, W, 1] in [0, 1] (soft masks weigh pixels).
Every loss returns a scalar tensor; an empty mask gives 0 (still in the graph) rather than NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from instag.kernels.blur import gaussian_taps, separable_blur
from instag.train.init import project

SSIM_C1 = 0.01**2  # SSIM stabilisers for images in [0, 1] (Wang et al. 2004)
SSIM_C2 = 0.03**2
EPS = 1e-8


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """values: [H, W, C]; mask: [H, W, 1] or None → mean over the masked pixels and channels."""
    if mask is None:
        return values.mean()
    weights = mask.expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(EPS)


def l1_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """pred, target: [H, W, C]; mask: [H, W, 1] → mean |pred − target| over the mask."""
    return _masked_mean((pred - target).abs(), mask)


def ssim_map(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """pred, target: [H, W, C] in [0, 1] → per-pixel SSIM [H, W, C] (Gaussian window, zero padding as 3DGS)."""
    c = pred.shape[-1]
    x, y = pred.permute(2, 0, 1), target.permute(2, 0, 1)  # [C, H, W]
    # The five local moments are blurred in one call, the Gaussian as a column pass then a row pass: the 2D window's
    # sums in 2·window taps a pixel instead of window² (benchmarks/train_ssim_cpu.md), in C++ on the CPU.
    moments = torch.cat([x, y, x * x, y * y, x * y])  # [5C, H, W]
    taps = gaussian_taps(window, sigma, pred.dtype, pred.device)
    mu_x, mu_y, xx, yy, xy = separable_blur(moments, taps).split(c)  # each [C, H, W]
    var_x = xx - mu_x**2
    var_y = yy - mu_y**2
    cov = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (num / den).permute(1, 2, 0)


def dssim_loss(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, window: int = 11, sigma: float = 1.5
) -> Tensor:
    """Structural dissimilarity (1 − SSIM) / 2 averaged over the mask; 0 for identical images."""
    return _masked_mean((1.0 - ssim_map(pred, target, window, sigma)) / 2.0, mask)


def photometric_loss(
    pred: Tensor,  # [H, W, C]
    target: Tensor,  # [H, W, C]
    mask: Tensor | None,  # [H, W, 1]
    lambda_dssim: float,
    window: int = 11,
    sigma: float = 1.5,
) -> Tensor:
    """(1 − λ) L1 + λ D-SSIM, the 3DGS photometric loss, restricted to `mask` (e.g. one branch's region)."""
    l1 = l1_loss(pred, target, mask)
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * dssim_loss(pred, target, mask, window, sigma)


def negative_contrast_loss(current: Tensor, others: Tensor) -> Tensor:
    """Push one identity's residual motion away from the others' (identity-free pre-training).

    current: [N, 3] this identity's residual Δμ at some points and conditions; others: [K, N, 3] the other
    identities' personalized fields evaluated at the same points and conditions. Loss = mean over K and N of
    max(0, ⟨current, other⟩): aligned residuals mean motion shared by identities that belongs in the UMF, so they
    are penalised; orthogonal or opposite ones are not. The others are detached, so each identity's field is
    only moved by its own term.
    """
    if others.shape[0] == 0:
        return current.sum() * 0.0
    dots = (current.unsqueeze(0) * others.detach()).sum(dim=-1)  # [K, N]
    return dots.clamp_min(0.0).mean()


def scale_invariant_depth_loss(pred: Tensor, prior: Tensor, mask: Tensor | None = None) -> Tensor:
    """pred, prior: [H, W, 1]; mask: [H, W, 1] → mean squared residual after the least-squares fit a·pred + b ≈ prior.

    The prior (from a tracked face mesh) has its own unknown scale and offset, so only the shape of the rendered
    depth is compared; scaling or shifting `pred` leaves the loss unchanged.
    """
    w = torch.ones_like(pred) if mask is None else mask.expand_as(pred)
    total = w.sum().clamp_min(EPS)
    mp, mt = (w * pred).sum() / total, (w * prior).sum() / total
    dp, dt = pred - mp, prior - mt
    a = (w * dp * dt).sum() / (w * dp * dp).sum().clamp_min(EPS)
    residual = a * dp - dt
    return (w * residual**2).sum() / total


def normal_cosine_loss(pred: Tensor, prior: Tensor, mask: Tensor | None = None) -> Tensor:
    """pred, prior: [H, W, 3] normals (any length) → mean (1 − cos) over the mask."""
    cos = F.cosine_similarity(pred, prior, dim=-1, eps=EPS).unsqueeze(-1)  # [H, W, 1]
    return _masked_mean(1.0 - cos, mask)


def lip_landmark_loss(
    lips_xyz: Tensor,  # [L, 3] deformed lip vertices, world
    viewmat: Tensor,  # [4, 4] world → camera (OpenCV)
    K: Tensor,  # [3, 3]
    tracked: Tensor,  # [L, 2] the frame's tracked lip landmarks, pixels
    size: int,  # image side, pixels
) -> Tensor:
    """Mean distance, in image sides, between the projected lip shape and the tracked one, both centred.

    Centring removes the small head-pose errors of the rigid track (they shift all lip points alike), so what is
    compared is how the lips open, close and stretch: the part of the motion that audio has to explain.
    """
    pix, _ = project(lips_xyz, viewmat, K)
    pred = pix - pix.mean(dim=0)
    target = tracked - tracked.mean(dim=0)
    return (pred - target).norm(dim=-1).mean() / size


def lip_depth_loss(
    lips_xyz: Tensor,  # [N, 3] deformed lip Gaussian means, world (canonical head frame, z away from the camera)
    mesh_lips: Tensor,  # [L, 3] the face mesh's lip vertices, world
) -> Tensor:
    """Squared gap between the lip Gaussians' mean depth and the mesh lips', in lip widths.

    Near-frontal training views cannot see how deep the lips sit, and a motion field pre-trained on other people
    can carry them there: the shipped UMF moved new people's lips 8–10 mm into the face, so when the head turns
    they are drawn beside the real ones. The tracked mesh knows the depth; this holds the lips to it."""
    return ((lips_xyz[:, 2].mean() - mesh_lips[:, 2].mean()) / lip_width(mesh_lips)).square()


def lip_width(mesh_lips: Tensor) -> Tensor:
    """mesh_lips: [L, 3] → the lips' extent in x (world units): the length unit of the depth-placement losses."""
    return (mesh_lips[:, 0].max() - mesh_lips[:, 0].min()).clamp_min(EPS)


def depth_offset_loss(pred: Tensor, prior: Tensor, mask: Tensor, unit: Tensor) -> Tensor:
    """pred, prior: [H, W, 1] camera z; mask: [H, W, 1] → squared gap between their mean depths over the mask,
    in `unit` (a length, e.g. `lip_width`).

    `scale_invariant_depth_loss` compares shapes only, so a face drawn as a whole a few millimetres too deep costs
    it nothing, and near-frontal views barely see it either; but when the head turns, that face is drawn beside
    the real one (a fixed UMF left new people's faces 6–7 mm too deep: 1.5 mm aside at a 13° turn). The prior is
    rendered from the tracked mesh in the training camera itself, so its depth is not only a shape: this holds
    the surface there."""
    w = mask.expand_as(pred)
    gap = (w * (pred - prior)).sum() / w.sum().clamp_min(EPS)
    return (gap / unit).square()


def motion_regulariser(*d_means: Tensor) -> Tensor:
    """Mean squared displacement over all given [N_i, 3] offsets: motion stays small where nothing asks for it."""
    return torch.cat([d.reshape(-1, 3) for d in d_means]).pow(2).sum(dim=-1).mean()


def aligner_regulariser(offsets: Tensor, scales: Tensor) -> Tensor:
    """offsets, scales: [N, 3] from the motion aligner → distance from the identity (0 offset, unit scale)."""
    return offsets.pow(2).sum(dim=-1).mean() + (scales - 1.0).pow(2).sum(dim=-1).mean()


def anisotropy_regulariser(log_scales: Tensor, max_ratio: float) -> Tensor:
    """log_scales: [N, 3] → mean excess of log(largest / smallest axis) over log(max_ratio): no needle Gaussians."""
    spread = log_scales.max(dim=-1).values - log_scales.min(dim=-1).values
    return (spread - math.log(max_ratio)).clamp_min(0.0).mean()
