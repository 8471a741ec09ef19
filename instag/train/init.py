"""Canonical Gaussians of one identity from its dataset dir: face on the tracked mesh, hair lifted from the first
training frame, the mouth interior as a thin slab behind the lips of the most open training frame.

All points are in the head frame (world coordinates of the dataset's viewmats). Randomness comes from the
caller's generator only, so a seed fixes the initialisation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from instag.config.model import AudioConfig, GaussianConfig
from instag.gaussians.field import GaussianField, Region
from instag.motion.model import MotionModel
from instag.train.frames import IdentityFrames
from instag.train.recipe import InitConfig

MOUTH_DEPTH_BEHIND_LIPS = 0.008  # metres: the mouth interior slab sits this far behind the lips
MOUTH_SLAB_THICKNESS = 0.006


def sample_mesh(vertices: Tensor, triangles: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """n points [n, 3] uniformly (by area) on the triangle mesh vertices [V, 3], triangles [F, 3]."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    area = torch.linalg.cross(b - a, c - a).norm(dim=-1)
    idx = torch.multinomial(area, n, replacement=True, generator=gen)
    u, v = torch.rand(n, generator=gen), torch.rand(n, generator=gen)
    su = u.sqrt()
    w0, w1, w2 = 1 - su, su * (1 - v), su * v
    return w0[:, None] * a[idx] + w1[:, None] * b[idx] + w2[:, None] * c[idx]


def project(points: Tensor, viewmat: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """points [N, 3] world → (pixel coordinates [N, 2] with centres at +0.5, camera z [N])."""
    cam = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:3], cam[:, 2]


def unproject(uv: Tensor, z: Tensor, viewmat: Tensor, K: Tensor) -> Tensor:
    """pixel coordinates [N, 2] at camera depths z [N] → world points [N, 3]."""
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    cam = torch.stack([x, y, z], dim=-1)
    return (cam - viewmat[:3, 3]) @ viewmat[:3, :3]


def _lookup(img: np.ndarray, uv: Tensor) -> np.ndarray:
    """Nearest-pixel values of img [S, S, ...] at pixel coordinates uv [N, 2] (clamped to the image)."""
    s = img.shape[0]
    ij = uv.floor().long().clamp(0, s - 1).numpy()
    return img[ij[:, 1], ij[:, 0]]


def _pixels(mask: np.ndarray, n: int, gen: torch.Generator) -> Tensor:
    """n random sub-pixel positions [n, 2] inside the True pixels of mask [S, S] (with replacement)."""
    ys, xs = np.nonzero(mask)
    pick = torch.randint(0, len(ys), (n,), generator=gen)
    base = torch.from_numpy(np.stack([xs, ys], 1).astype(np.float32))[pick]
    return base + torch.rand(n, 2, generator=gen)


def init_gaussians(frames: IdentityFrames, cfg: InitConfig, gcfg: GaussianConfig,
                   gen: torch.Generator) -> tuple[GaussianField, GaussianField]:
    """(face field incl. lips and hair, mouth-interior field) for one identity."""
    ids = frames.ids
    ref = int(frames.train_indices[0])
    view, K = frames.viewmats[ref], frames.K
    image, label = frames.frame_uint8(ref), frames.label(ref)

    verts, tris = frames.ds.face_mesh()
    face_pts = sample_mesh(torch.from_numpy(verts.astype(np.float32)), torch.from_numpy(tris.astype(np.int64)),
                           cfg.face_points, gen)
    uv, _ = project(face_pts, view, K)
    face_rgb = _lookup(image, uv)
    is_lip = _lookup(label, uv) == ids["lips"]
    region = [torch.where(torch.from_numpy(is_lip), int(Region.LIPS), int(Region.FACE))]
    points, colors = [face_pts], [face_rgb]

    hair = label == ids["hair"]
    if cfg.hair_points > 0 and hair.any():
        uv = _pixels(hair, cfg.hair_points, gen)
        z = torch.full((cfg.hair_points,), float(view[2, 3]) + cfg.hair_depth_offset)
        points.append(unproject(uv, z, view, K))
        colors.append(_lookup(image, uv))
        region.append(torch.full((cfg.hair_points,), int(Region.FACE)))

    face = GaussianField.from_points(
        torch.cat(points), torch.from_numpy(np.concatenate(colors).astype(np.float32) / 255.0), gcfg,
        region=torch.cat(region),
    )
    return face, _init_mouth(frames, cfg, gcfg, gen)


def _init_mouth(frames: IdentityFrames, cfg: InitConfig, gcfg: GaussianConfig,
                gen: torch.Generator) -> GaussianField:
    ids = frames.ids
    train = frames.train_indices
    t = int(train[np.argmax(frames.lips[train, 0])])  # the widest open mouth
    view, K = frames.viewmats[t], frames.K
    image, label = frames.frame_uint8(t), frames.label(t)
    inside = label == ids["mouth_interior"]
    lips = label == ids["lips"]
    region = inside if inside.any() else lips
    if not region.any():  # no mouth labelled at all: a small patch at the image centre
        region = np.zeros_like(inside)
        c = label.shape[0] // 2
        region[c - 2 : c + 2, c - 2 : c + 2] = True
    n = max(cfg.mouth_points, 1)
    uv = _pixels(region, n, gen)
    depth = frames.depth(t)
    near = depth[lips & (depth > 0)]
    lip_z = float(np.median(near)) if near.size else float(view[2, 3]) - 0.05
    z = lip_z + MOUTH_DEPTH_BEHIND_LIPS + torch.rand(n, generator=gen) * MOUTH_SLAB_THICKNESS
    rgb = _lookup(image, uv) if inside.any() else np.full((n, 3), 60, np.uint8)
    return GaussianField.from_points(
        unproject(uv, z, view, K), torch.from_numpy(rgb.astype(np.float32) / 255.0), gcfg,
        region=torch.full((n,), int(Region.MOUTH)),
    )


MEAN_MOTION_FRAMES = 16  # training frames, evenly spaced, whose motion the placement cancels
PLACEMENT_STEPS = 300  # Adam steps of `cancel_mean_motion`
PLACEMENT_LR = 1e-3  # world units (1 mm) per step


def cancel_mean_motion(face: GaussianField, mouth: GaussianField, motion: MotionModel, frames: IdentityFrames,
                       audio_cfg: AudioConfig) -> tuple[float, float]:
    """Move the canonical Gaussians in place so that, moved by `motion` on the training frames, they sit where
    `init_gaussians` put them (on the tracked mesh); the face's log scales take minus the motion's mean change.
    → the mean distance (world units) between moved and placed Gaussians (before, after).

    Pre-training lets canonical positions and motion trade any offset, and a pre-trained UMF keeps the offsets
    it settled on: the shipped one moves a new face 15 mm on average, mostly backwards. Starting there,
    near-frontal training views barely pull the Gaussians forward again (the photometric loss hardly sees
    depth), so they end up millimetres behind the face and are drawn beside it when the head turns. The field
    varies too fast in space for a fixed-point inversion (x ← target − d(x) stalls at 9 mm), so the canonical
    positions are fitted by gradient descent, a frame of the set a step."""
    train = [int(t) for t in frames.train_indices]
    picks = np.linspace(0, len(train) - 1, min(MEAN_MOTION_FRAMES, len(train))).round().astype(int)
    # The frames' own audio, their mean expression and mean (standardised: 0) lip shape: the motion that stays.
    dev = face.means.device
    windows = frames.audio_windows([train[i] for i in picks], audio_cfg)  # [K, smooth_window, window, feature_dim]
    expression = frames.expressions[train].mean(dim=0).to(dev)
    lip_shape = torch.zeros(frames.lips.shape[1], device=dev)
    lips = face.region_index(Region.LIPS)
    target = torch.cat([face.means, mouth.means]).detach()
    n = face.num_gaussians
    x = target.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=PLACEMENT_LR)

    def moved(i: int) -> tuple[Tensor, Tensor]:
        m = motion(x[:n], lips, x[n:], windows[i % len(windows)], expression, lip_shape=lip_shape)
        return torch.cat([x[:n] + m.face.d_means, x[n:] + m.mouth_d_means]), m.face.d_log_scales

    with torch.no_grad():
        before = float((moved(0)[0] - target).norm(dim=-1).mean())
    for step in range(PLACEMENT_STEPS):
        gap = (moved(step)[0] - target).square().sum(dim=-1).mean()
        # Gradients for the positions only: the motion's own parameters (trainable from scratch) are left alone.
        (x.grad,) = torch.autograd.grad(gap, x)
        opt.step()
    with torch.no_grad():
        after, d_scales = 0.0, torch.zeros_like(face.log_scales)
        for i in range(len(windows)):
            pos, d_log_scales = moved(i)
            after += float((pos - target).norm(dim=-1).mean()) / len(windows)
            d_scales += d_log_scales / len(windows)
        face.means.copy_(x[:n])
        mouth.means.copy_(x[n:])
        face.log_scales.sub_(d_scales)
    return before, after
