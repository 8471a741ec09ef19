"""Avatar rendering: one frame's condition → motion of both branches → deformed Gaussians → rasterize → composite.

The face branch (face incl. lips) is drawn over the mouth-interior branch, which is drawn over the background
plate (with the clip's torso/neck already in it, provided by the caller). Each branch is rasterized over black,
so its image is premultiplied by its alpha and the composite is
    image = face + (1 − α_face) · (mouth + (1 − α_mouth) · background).
For the geometry prior the face branch also carries, as extra colour channels, each Gaussian's normal (its
shortest axis, turned towards the camera) so the rasterizer's alpha blending yields a normal map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from instag.errors import InputError
from instag.gaussians.field import GaussianField, Region, quat_to_rotmat
from instag.kernels.rasterize import RasterOutput, rasterize
from instag.motion.fields import PersonalizedField
from instag.motion.model import AvatarMotion, MotionModel, MotionPoints


@dataclass
class FrameCondition:
    """Everything that drives one rendered frame."""

    audio_windows: Tensor  # [smooth_window, window, feature_dim] audio features around this frame
    expression: Tensor  # [expression_dim] blink (⊕ expression) of this frame
    viewmat: Tensor  # [4, 4] world → camera, OpenCV axes
    K: Tensor  # [3, 3] intrinsics
    width: int
    height: int
    background: Tensor  # [H, W, 3] background plate with torso, or [3] a flat colour
    # [C] the tracked lip shape, standardised per person (training frames): the face branch's articulation input in
    # place of the UMF's prediction from the audio, and the prediction's target. None when driven by audio alone.
    lip_shape: Tensor | None = None
    # [H, W, 4] in [0, 1]: the replayed clip's own pixels drawn over the head with weight alpha (the hair band of
    # `render.plate.torso_layer`), or None. Only where the view is the replayed frame's, so never in an orbit.
    foreground: Tensor | None = None
    # audio_windows are the preview's live features (`audio.live_context`), which the UMF's live read-out reads.
    live_audio: bool = False


def expression_matrix(tracks: dict[str, np.ndarray], dim: int) -> np.ndarray:
    """Per-frame expression condition [T, dim]: blink, then the tracked expression signals, as many as fit."""
    blink = np.asarray(tracks["blink"], dtype=np.float32)[:, None]
    expr = np.asarray(tracks["expression"], dtype=np.float32)
    out = np.concatenate([blink, expr], axis=1)
    if out.shape[1] < dim:
        raise InputError(f"model.expression_dim {dim}: the tracks have only {out.shape[1]} expression signals")
    return out[:, :dim]


@dataclass
class BranchRender:
    image: Tensor  # [H, W, 3] colour premultiplied by alpha (rendered over black)
    alpha: Tensor  # [H, W, 1]
    raster: RasterOutput  # means2d (retain_grad for densification), radii, per-Gaussian depths


@dataclass
class AvatarRender:
    image: Tensor  # [H, W, 3] final composite
    face: BranchRender
    mouth: BranchRender
    depth: Tensor | None  # [H, W, 1] face-branch expected camera z (geometry=True only)
    normal: Tensor | None  # [H, W, 3] face-branch unit normals in camera space (geometry=True only)
    motion: AvatarMotion


def camera_center(viewmat: Tensor) -> Tensor:
    """viewmat: [4, 4] world → camera → the camera's position in world coordinates [3]."""
    rot, t = viewmat[:3, :3], viewmat[:3, 3]
    return -rot.T @ t


def gaussian_normals(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] (w, x, y, z)
    log_scales: Tensor,  # [N, 3]
    viewmat: Tensor,  # [4, 4]
) -> Tensor:
    """Unit normals [N, 3] in camera space: each Gaussian's shortest axis, flipped to face the camera.

    A flattened Gaussian is a surface element whose normal is its thinnest axis; which way it points is
    ambiguous, so the sign is chosen to face the viewer (negative dot product with the ray to it).
    """
    rot_cam = viewmat[:3, :3] @ quat_to_rotmat(quats)  # [N, 3, 3] axes in camera space as columns
    shortest = log_scales.argmin(dim=-1)  # [N]
    normals = rot_cam.gather(2, shortest.view(-1, 1, 1).expand(-1, 3, 1)).squeeze(-1)
    rays = means @ viewmat[:3, :3].T + viewmat[:3, 3]  # camera-space positions = rays from the camera
    facing = torch.where((normals * rays).sum(dim=-1, keepdim=True) > 0, -normals, normals)
    return facing


def _render_branch(
    field: GaussianField,
    means: Tensor,  # [N, 3] deformed
    log_scales: Tensor,  # [N, 3] deformed
    quats: Tensor,  # [N, 4] deformed
    cond: FrameCondition,
    extra: Tensor | None,  # [N, C'] channels rendered after the rgb ones
    backend: str,
) -> tuple[BranchRender, Tensor | None]:
    """→ (the branch's rgb render, its extra channels [H, W, C'] or None)."""
    colors = field.colors(means, camera_center(cond.viewmat))
    if extra is not None:
        colors = torch.cat([colors, extra], dim=-1)
    raster = rasterize(
        means,
        quats,
        log_scales.exp(),
        field.opacities,
        colors,
        cond.viewmat,
        cond.K,
        cond.width,
        cond.height,
        background=None,
        backend=backend,
    )
    rest = raster.image[..., 3:] if extra is not None else None
    return BranchRender(raster.image[..., :3], raster.alpha, raster), rest


def render_avatar(
    face: GaussianField,
    mouth: GaussianField,
    motion: MotionModel,
    cond: FrameCondition,
    personalized: PersonalizedField | None = None,
    geometry: bool = False,
    backend: str = "auto",
    probe_xyz: Tensor | None = None,  # [P, 3] canonical points whose motion `motion.probe_d_means` reports
    points: MotionPoints | None = None,  # `motion.points` of the canonical Gaussians (⊕ probes), if computed
) -> AvatarRender:
    """Render one frame of the avatar; with `geometry`, also the face branch's depth and normal maps."""
    m = motion(
        face.means,
        face.region_index(Region.LIPS),
        mouth.means,
        cond.audio_windows,
        cond.expression,
        personalized=personalized,
        probe_xyz=probe_xyz,
        lip_shape=cond.lip_shape,
        points=points,
        live_audio=cond.live_audio,
    )
    face_means = face.means + m.face.d_means
    face_log_scales = face.log_scales + m.face.d_log_scales
    face_quats = face.quats + m.face.d_quats
    normals = gaussian_normals(face_means, face_quats, face_log_scales, cond.viewmat) if geometry else None
    face_render, normal_sum = _render_branch(
        face, face_means, face_log_scales, face_quats, cond, normals, backend
    )
    mouth_render, _ = _render_branch(
        mouth, mouth.means + m.mouth_d_means, mouth.log_scales, mouth.quats, cond, None, backend
    )
    background = cond.background.expand(cond.height, cond.width, 3)
    under_face = mouth_render.image + (1.0 - mouth_render.alpha) * background
    image = face_render.image + (1.0 - face_render.alpha) * under_face
    if cond.foreground is not None:
        weight = cond.foreground[..., 3:]
        image = image + weight * (cond.foreground[..., :3] - image)
    return AvatarRender(
        image=image,
        face=face_render,
        mouth=mouth_render,
        depth=face_render.raster.depth if geometry else None,
        normal=F.normalize(normal_sum, dim=-1) if normal_sum is not None else None,
        motion=m,
    )
