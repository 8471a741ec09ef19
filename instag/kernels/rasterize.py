"""Gaussian rasterization: the public op (DESIGN §5).

`rasterize` projects 3D Gaussians through a pinhole camera and alpha-composites them front to back into
colour, alpha and expected-depth images, differentiably in means, quats, scales, opacities and colours.
Backends (`instag.kernels.backend`):

- cuda: gsplat's projection, tile intersection and rasterization kernels;
- cpu: our C++ projection (`cuda_ext/csrc/cpu/project.cpp`), tile binning and OpenMP compositor
  (`cuda_ext/csrc/cpu/rasterize.cpp`), forward and backward (the torch projection is a dozen small ops per call
  and three dozen in its backward, more time than the arithmetic);
- torch: the pure-torch twin `rasterize_ref`.

Depth rides as one extra feature channel (camera z) through the compositor and is divided by alpha at the
end, so its gradient reaches the means through ordinary autograd on every backend.

On a GPU a frame makes the host wait for the device once, in the tile binning: the number of (tile, Gaussian)
pairs sizes the lists. gsplat reads it inside `isect_tiles`; the torch twin reads each tile's list length
(`rasterize_ref.bin_tiles`).
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import Tensor

from cuda_ext import build
from instag.kernels import _ffi
from instag.kernels.backend import resolve
from instag.kernels.rasterize_ref import (
    TILE,
    Projection,
    RasterOutput,
    TileBins,
    check_inputs,
    finish,
    project_gaussians,
    rasterize_ref,
)

__all__ = ["RasterOutput", "rasterize"]


def rasterize(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] (w, x, y, z), need not be normalised
    scales: Tensor,  # [N, 3] linear
    opacities: Tensor,  # [N] in [0, 1]
    colors: Tensor,  # [N, C], any C >= 1 (extra channels such as normals ride along)
    viewmat: Tensor,  # [4, 4] world → camera, OpenCV axes (x right, y down, z forward)
    K: Tensor,  # [3, 3] pinhole intrinsics
    width: int,
    height: int,
    background: Tensor | None = None,  # [C]; None = zeros
    backend: str = "auto",
    near_plane: float = 0.01,
    eps2d: float = 0.3,
) -> RasterOutput:
    """Renders Gaussians to an [height, width] image; see `RasterOutput` for what comes back.

    Gaussians with camera z < near_plane or whose 3σ box misses the image are culled (radius 0).
    `eps2d` is added to the diagonal of each 2D covariance (a low-pass filter of about a pixel).
    Raises BackendUnavailableError for an explicit backend that cannot run here.
    """
    check_inputs(means, quats, scales, opacities, colors, viewmat, K, background)
    choice = resolve("rasterize", backend, means.device)
    args = (means, quats, scales, opacities, colors, viewmat, K, width, height, background, near_plane, eps2d)
    if choice.backend == "torch":
        return rasterize_ref(*args)
    if choice.backend == "cuda":
        return _rasterize_gsplat(*args)
    return _rasterize_cpu(*args)


def _rasterize_cpu(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmat: Tensor, K: Tensor,
    width: int, height: int, background: Tensor | None, near_plane: float, eps2d: float,
) -> RasterOutput:
    proj = _project_cpu(means, quats, scales, viewmat, K, width, height, near_plane, eps2d)
    bins = _bin_tiles_cpu(proj.means2d.detach().float().contiguous(), proj.radii, proj.depths, width, height)
    features = torch.cat((colors, proj.depths[:, None]), dim=-1)
    # The kernels are float32; the casts sit outside the autograd Function so gradients come back in the
    # callers' dtype.
    sums, trans = _CompositeCPU.apply(
        proj.means2d.float().contiguous(), proj.conics.float().contiguous(), opacities.float().contiguous(),
        features.float().contiguous(), bins, width, height,
    )
    image, alpha, depth = finish(sums.to(means.dtype), trans.to(means.dtype), background)
    return RasterOutput(image, alpha, depth, proj.means2d, proj.radii, proj.depths)


@functools.cache
def _kernels() -> ctypes.CDLL:
    lib = build.cpu_library()
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.instag_rasterize_depth_order.argtypes = [p, p, ctypes.c_int64, p]
    lib.instag_rasterize_depth_order.restype = ctypes.c_int64
    lib.instag_rasterize_count_tiles.argtypes = [p, p, p, i, i, i, p]
    lib.instag_rasterize_count_tiles.restype = ctypes.c_int64
    lib.instag_rasterize_fill_tiles.argtypes = [p, p, p, i, i, i, p, p]
    lib.instag_rasterize_fill_tiles.restype = None
    lib.instag_rasterize_forward.argtypes = [p, p, p, p, i, p, p, i, i, p, p, p, i]
    lib.instag_rasterize_forward.restype = None
    lib.instag_rasterize_backward.argtypes = [p, p, p, p, i, p, p, i, i, p, p, p, p, i, p, p, p, p, p, i]
    lib.instag_rasterize_backward.restype = None
    f = ctypes.c_float
    lib.instag_project_forward.argtypes = [p, p, p, ctypes.c_int64, p, p, i, i, f, f, p, p, p, p, i]
    lib.instag_project_forward.restype = None
    lib.instag_project_backward.argtypes = [p, p, p, ctypes.c_int64, p, p, i, i, f, f, p, p, p, p, p, p, i]
    lib.instag_project_backward.restype = None
    return lib


def _project_cpu(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
                 near_plane: float, eps2d: float) -> Projection:
    """`rasterize_ref.project_gaussians` in one C++ pass each way (means [N, 3], quats [N, 4], scales [N, 3],
    viewmat [4, 4], K [3, 3]), computed in float32 and returned in the means' dtype; differentiable in means,
    quats and scales. A camera that needs gradients takes the torch projection."""
    if viewmat.requires_grad or K.requires_grad:
        return project_gaussians(means, quats, scales, viewmat, K, width, height, near_plane, eps2d)
    camera = (viewmat.detach().float().contiguous(), K.detach().float().contiguous(), width, height, near_plane, eps2d)
    means2d, conics, depths, radii = _ProjectCPU.apply(means.float().contiguous(), quats.float().contiguous(),
                                                       scales.float().contiguous(), camera)
    dtype = means.dtype
    return Projection(means2d.to(dtype), conics.to(dtype), depths.to(dtype), radii)


class _ProjectCPU(torch.autograd.Function):
    """forward(means [N, 3], quats [N, 4], scales [N, 3], camera) → means2d [N, 2], conics [N, 3], depths [N]
    (float32) and radii [N] (int32, no gradient); camera: (viewmat, K, width, height, near_plane, eps2d)."""

    @staticmethod
    def forward(ctx, means: Tensor, quats: Tensor, scales: Tensor, camera: tuple) -> tuple[Tensor, ...]:
        n = means.shape[0]
        means2d = torch.empty(n, 2)
        conics = torch.empty(n, 3)
        depths = torch.empty(n)
        radii = torch.empty(n, dtype=torch.int32)
        viewmat, K, width, height, near_plane, eps2d = camera
        ptr = _ffi.ptr
        _kernels().instag_project_forward(ptr(means), ptr(quats), ptr(scales), n, ptr(viewmat), ptr(K), width,
                                          height, near_plane, eps2d, ptr(means2d), ptr(conics), ptr(depths),
                                          ptr(radii), _ffi.num_threads())
        ctx.save_for_backward(means, quats, scales)
        ctx.camera = camera
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    def backward(ctx, grad_means2d: Tensor, grad_conics: Tensor, grad_depths: Tensor, _grad_radii: Tensor):
        means, quats, scales = ctx.saved_tensors
        viewmat, K, width, height, near_plane, eps2d = ctx.camera
        n = means.shape[0]
        grads = [g.float().contiguous() for g in (grad_means2d, grad_conics, grad_depths)]
        g_means, g_quats, g_scales = torch.empty(n, 3), torch.empty(n, 4), torch.empty(n, 3)
        ptr = _ffi.ptr
        _kernels().instag_project_backward(ptr(means), ptr(quats), ptr(scales), n, ptr(viewmat), ptr(K), width,
                                           height, near_plane, eps2d, *(ptr(g) for g in grads), ptr(g_means),
                                           ptr(g_quats), ptr(g_scales), _ffi.num_threads())
        return g_means, g_quats, g_scales, None


@torch.no_grad()
def _bin_tiles_cpu(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int) -> TileBins:
    """`rasterize_ref.bin_tiles` in C++: the visible Gaussians ordered by depth (a radix sort), then two linear
    passes (a counting sort) instead of a torch sort of every (tile, Gaussian) pair; means2d [N, 2] float32,
    radii [N] int32, depths [N] (compared in float32, as the compositor draws them). Same lists."""
    lib, ptr = _kernels(), _ffi.ptr
    radii, depths = radii.contiguous(), depths.float().contiguous()
    order = torch.empty(radii.numel(), dtype=torch.int64)
    n_visible = lib.instag_rasterize_depth_order(ptr(depths), ptr(radii), radii.numel(), ptr(order))
    order = order[:n_visible]
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    offsets = torch.empty(tiles_x * tiles_y + 1, dtype=torch.int32)
    gaussians = (ptr(means2d), ptr(radii), ptr(order), order.numel(), width, height)
    ids = torch.empty(lib.instag_rasterize_count_tiles(*gaussians, ptr(offsets)), dtype=torch.int32)
    lib.instag_rasterize_fill_tiles(*gaussians, ptr(offsets), ptr(ids))
    return TileBins(offsets, ids, tiles_x, tiles_y)


class _CompositeCPU(torch.autograd.Function):
    """C++ front-to-back compositing of binned screen-space Gaussians.

    forward(means2d [N, 2], conics [N, 3], opacities [N], features [N, F], bins, width, height)
    → (feature sums [H, W, F] without background, final transmittance [H, W, 1]); all float32.
    """

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, bins: TileBins,
                width: int, height: int) -> tuple[Tensor, Tensor]:
        channels = features.shape[1]
        sums = torch.empty(height, width, channels, dtype=torch.float32)
        trans = torch.empty(height, width, 1, dtype=torch.float32)
        count = torch.empty(height, width, dtype=torch.int32)
        ptr = _ffi.ptr
        _kernels().instag_rasterize_forward(
            ptr(means2d), ptr(conics), ptr(opacities), ptr(features), channels, ptr(bins.offsets), ptr(bins.ids),
            width, height, ptr(sums), ptr(trans), ptr(count), _ffi.num_threads(),
        )
        ctx.save_for_backward(means2d, conics, opacities, features, bins.offsets, bins.ids, trans, count)
        ctx.size = (width, height)
        return sums, trans

    @staticmethod
    def backward(ctx, grad_sums: Tensor, grad_trans: Tensor):
        means2d, conics, opacities, features, offsets, ids, trans, count = ctx.saved_tensors
        width, height = ctx.size
        n, channels = features.shape
        grad_sums = grad_sums.float().contiguous()
        grad_trans = grad_trans.float().contiguous()
        scratch = torch.empty(ids.numel() * (6 + channels), dtype=torch.float32)
        g_means2d = torch.empty(n, 2, dtype=torch.float32)
        g_conics = torch.empty(n, 3, dtype=torch.float32)
        g_opacities = torch.empty(n, dtype=torch.float32)
        g_features = torch.empty(n, channels, dtype=torch.float32)
        ptr = _ffi.ptr
        _kernels().instag_rasterize_backward(
            ptr(means2d), ptr(conics), ptr(opacities), ptr(features), channels, ptr(offsets), ptr(ids),
            width, height, ptr(trans), ptr(count), ptr(grad_sums), ptr(grad_trans), n, ptr(scratch),
            ptr(g_means2d), ptr(g_conics), ptr(g_opacities), ptr(g_features), _ffi.num_threads(),
        )
        return g_means2d, g_conics, g_opacities, g_features, None, None, None


def _rasterize_gsplat(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmat: Tensor, K: Tensor,
    width: int, height: int, background: Tensor | None, near_plane: float, eps2d: float,
) -> RasterOutput:
    # gsplat's own `rasterization()` returns means2d as a [1, N, 2] tensor; a [N, 2] view of it would not
    # be on the gradient path, so its .grad would stay empty. Calling its steps directly lets the [N, 2]
    # tensor itself feed the rasterizer. Depth rides as an extra channel exactly as in "RGB+ED" mode.
    import gsplat

    radii, means2d, depths, conics, _ = gsplat.fully_fused_projection(
        means, None, quats, scales, viewmat[None], K[None], width, height, eps2d=eps2d, near_plane=near_plane,
    )  # [1, N, 2] int32 (x and y extents), [1, N, 2], [1, N], [1, N, 3], compensations (None)
    means2d = means2d[0]
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    _, isect_ids, flatten_ids = gsplat.isect_tiles(means2d[None], radii, depths, TILE, tiles_x, tiles_y)
    isect_offsets = gsplat.isect_offset_encode(isect_ids, 1, tiles_x, tiles_y).reshape(1, tiles_y, tiles_x)
    features = torch.cat((colors, depths[0, :, None]), dim=-1)
    sums, alpha = gsplat.rasterize_to_pixels(
        means2d[None], conics, features[None], opacities[None], width, height, TILE, isect_offsets, flatten_ids,
    )  # [1, H, W, C + 1], [1, H, W, 1]
    image, alpha, depth = finish(sums[0], 1 - alpha[0], background)
    return RasterOutput(image, alpha, depth, means2d, radii[0].amax(dim=-1).to(torch.int32), depths[0])
