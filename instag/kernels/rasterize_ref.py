"""Pure-torch twin of the Gaussian rasterizer (DESIGN §5), and the pieces the fast paths share with it.

The pipeline is the standard 3DGS one, split into steps that are each a plain function:

1. `project_gaussians`: world → camera, EWA projection of the 3D covariance with the pinhole Jacobian
   (its x/z, y/z clamped to 1.3× the field of view so points far off-screen do not blow up), a low-pass
   `eps2d` on the 2D covariance, conic = its inverse, an integer 3σ radius; culls z < near_plane and
   Gaussians whose 3σ box misses the image. Differentiable vectorised torch; the C++ path uses it too, so
   the two backends agree on every projected quantity by construction.
2. `bin_tiles`: which Gaussians touch which 16×16 tile, each tile's list sorted front to back by depth.
3. `composite_ref`: front-to-back alpha compositing per pixel. Here it is vectorised over whole tiles: each
   tile's list is padded, alphas come as one [tiles, 256, L] tensor and transmittance is a cumprod; the fast
   path does the same arithmetic in C++ (`cuda_ext/csrc/cpu/rasterize.cpp`).
4. `finish`: background, alpha and expected depth from the composited sums.

Pixel (x, y) is sampled at its centre (x + 0.5, y + 0.5), as gsplat does, so all backends line up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

TILE = 16
ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped (invisible in 8-bit output)
ALPHA_MAX = 0.99  # keeps 1 - alpha away from 0, so the backward pass can divide by it
T_MIN = 1e-4  # a pixel stops compositing once its transmittance would fall below this
FOV_CLAMP = 1.3  # Jacobian evaluated at most 1.3× the half field of view off-axis (as 3DGS)
# Elements of one [tiles, 256, L] slab in the reference compositor; bounds its memory (~20 live slabs).
REF_CHUNK_ELEMENTS = 1 << 22


@dataclass
class RasterOutput:
    """What `rasterize` returns; images are [H, W, ·] with H = height, W = width."""

    image: Tensor  # [H, W, C] colours composited over the background
    alpha: Tensor  # [H, W, 1] accumulated opacity
    depth: Tensor  # [H, W, 1] expected camera-space z, sum(w_i z_i) / alpha (0 where nothing was drawn)
    means2d: Tensor  # [N, 2] pixel-space means; in the autograd graph (retain_grad() to read densification grads)
    radii: Tensor  # [N] int32 pixel radius, 0 for culled Gaussians
    depths: Tensor  # [N] camera-space z of each Gaussian


@dataclass
class Projection:
    """Screen-space Gaussians, output of `project_gaussians`."""

    means2d: Tensor  # [N, 2] pixel coordinates of the projected means
    conics: Tensor  # [N, 3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]
    depths: Tensor  # [N] camera-space z
    radii: Tensor  # [N] int32, 0 = culled


@dataclass
class TileBins:
    """Per-tile Gaussian lists in CSR form: tile t holds ids[offsets[t]:offsets[t + 1]], nearest first."""

    offsets: Tensor  # [tiles_y * tiles_x + 1] int32, on the Gaussians' device
    ids: Tensor  # [M] int32 Gaussian indices
    tiles_x: int
    tiles_y: int
    # Each tile's list length, on the host: the reference compositor plans its slabs by them. None from the C++
    # binning, whose compositor walks the lists as they are.
    lengths: list[int] | None = None


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] from quaternions [N, 4] (w, x, y, z), normalised here."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        (
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ),
        dim=-1,
    ).reshape(-1, 3, 3)


def project_gaussians(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] (w, x, y, z)
    scales: Tensor,  # [N, 3] linear
    viewmat: Tensor,  # [4, 4] world → camera (OpenCV axes)
    K: Tensor,  # [3, 3] pinhole intrinsics
    width: int,
    height: int,
    near_plane: float = 0.01,
    eps2d: float = 0.3,
) -> Projection:
    """EWA-project 3D Gaussians to the image (differentiable in means, quats, scales)."""
    rot_cw = viewmat[:3, :3]
    p_cam = means @ rot_cw.T + viewmat[:3, 3]
    x, y, z = p_cam.unbind(-1)
    in_front = z > near_plane
    # Culled Gaussians still flow through the arithmetic; a safe z keeps their values finite so that
    # no NaN leaks into the gradients of the visible ones.
    z = torch.where(in_front, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    extra = FOV_CLAMP - 1.0
    tx = z * torch.clamp(x / z, min=-(cx / fx + extra * tan_fovx), max=(width - cx) / fx + extra * tan_fovx)
    ty = z * torch.clamp(y / z, min=-(cy / fy + extra * tan_fovy), max=(height - cy) / fy + extra * tan_fovy)
    zeros = torch.zeros_like(z)
    jac = torch.stack((fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)), -1).reshape(-1, 2, 3)

    # cov2d = J Rc S Sᵀ Rcᵀ Jᵀ = (J Rc S)(J Rc S)ᵀ with Rc the rotation in camera axes.
    jm = jac @ (rot_cw @ quat_to_rotmat(quats)) * scales[:, None, :]
    cov = jm @ jm.transpose(1, 2)
    cxx = cov[:, 0, 0] + eps2d
    cxy = cov[:, 0, 1]
    cyy = cov[:, 1, 1] + eps2d
    det = cxx * cyy - cxy * cxy
    conics = torch.stack((cyy / det, -cxy / det, cxx / det), -1)
    means2d = torch.stack((fx * x / z + cx, fy * y / z + cy), -1)

    with torch.no_grad():
        mid = 0.5 * (cxx + cyy)
        lam_max = mid + torch.sqrt((mid * mid - det).clamp_min(0.0))
        radius = torch.ceil(3.0 * torch.sqrt(lam_max))
        mx, my = means2d.unbind(-1)
        on_screen = (mx + radius > 0) & (mx - radius < width) & (my + radius > 0) & (my - radius < height)
        radii = torch.where(in_front & on_screen & (det > 0), radius, torch.zeros_like(radius)).to(torch.int32)
    return Projection(means2d, conics, p_cam[:, 2], radii)


@torch.no_grad()
def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int) -> TileBins:
    """Lists, per 16×16 tile, the Gaussians (means2d [N, 2], radii [N], depths [N]) whose square 3σ box
    touches it, nearest first (ties by index, so the order is deterministic).

    On a GPU the host waits for the device once: to read each tile's list length, which sizes the lists (as in
    every tile rasteriser) and plans `composite_ref`'s slabs. Everything else stays on the device."""
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    device = means2d.device
    # A non-finite mean is drawn nowhere (and NaN would pass the clamp), as in the C++ binning.
    visible = (radii > 0) & means2d.isfinite().all(-1)
    # Front-to-back order: visit Gaussians by depth (the culled last, listed nowhere), then a stable sort by
    # tile keeps that order per tile.
    order = torch.sort(torch.where(visible, depths, torch.inf), stable=True).indices
    shown = visible[order]
    r = radii[order].to(means2d.dtype)
    mx, my = torch.where(shown[:, None], means2d[order], 0.0).unbind(-1)
    x0 = torch.floor((mx - r) / TILE).clamp(0, tiles_x - 1).long()
    x1 = torch.floor((mx + r) / TILE).clamp(0, tiles_x - 1).long()
    y0 = torch.floor((my - r) / TILE).clamp(0, tiles_y - 1).long()
    y1 = torch.floor((my + r) / TILE).clamp(0, tiles_y - 1).long()
    span_x = x1 - x0 + 1
    counts = torch.where(shown, span_x * (y1 - y0 + 1), 0)
    # Each tile's list length without listing the pairs: +1/−1 at the corners of every box, then a 2D prefix sum.
    corners = torch.zeros(tiles_y + 1, tiles_x + 1, dtype=torch.long, device=device)
    one = shown.long()
    for ys, xs, sign in ((y0, x0, 1), (y0, x1 + 1, -1), (y1 + 1, x0, -1), (y1 + 1, x1 + 1, 1)):
        corners.index_put_((ys, xs), sign * one, accumulate=True)
    per_tile = corners.cumsum(0).cumsum(1)[:tiles_y, :tiles_x].reshape(-1)
    lengths = per_tile.tolist()  # the one wait on the device
    owner = torch.repeat_interleave(torch.arange(order.numel(), device=device), counts, output_size=sum(lengths))
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(owner.numel(), device=device) - first[owner]
    tile = (y0[owner] + k // span_x[owner]) * tiles_x + x0[owner] + k % span_x[owner]
    tile, by_tile = torch.sort(tile, stable=True)
    ids = order[owner[by_tile]].to(torch.int32)
    offsets = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.int32, device=device)
    offsets[1:] = torch.cumsum(per_tile, 0)
    return TileBins(offsets, ids, tiles_x, tiles_y, lengths)


def _composite_slab(
    centres: Tensor,  # [16] pixel-centre offsets within a tile: 0.5, 1.5, …
    origin: Tensor,  # [Tc, 2] tile origins (x, y)
    means2d: Tensor,  # [Tc, L, 2]
    conics: Tensor,  # [Tc, L, 3]
    opacities: Tensor,  # [Tc, L], 0 on padding
    colors: Tensor,  # [Tc, L, C]
) -> tuple[Tensor, Tensor]:
    """Composites Tc tiles whose padded lists have length L: colour sums [Tc, 256, C], transmittance [Tc, 256]."""
    # Offsets are separable (dx varies along a tile row, dy down a column), so only the three terms that
    # mix them are computed at full [Tc, 16, 16, L] size.
    dx = (origin[:, 0, None, None] + centres[None, :, None] - means2d[:, None, :, 0])[:, None]  # [Tc, 1, 16, L]
    dy = (origin[:, 1, None, None] + centres[None, :, None] - means2d[:, None, :, 1])[:, :, None]  # [Tc, 16, 1, L]
    a, b, c = (t[:, None, None, :] for t in conics.unbind(-1))
    power = (dx * (-0.5 * a * dx - b * dy) - 0.5 * c * dy * dy).flatten(1, 2)  # [Tc, 256, L]
    # power > 0 only for a degenerate conic; such entries are skipped, the clamp only keeps exp finite.
    alpha = torch.clamp(opacities[:, None, :] * torch.exp(power.clamp(max=0.0)), max=ALPHA_MAX)
    with torch.no_grad():
        keep = (power <= 0) & (alpha >= ALPHA_MIN)
        # Early stop: a Gaussian that would take T below T_MIN is not drawn, nor is any behind it; since
        # T only decreases, that is exactly "inclusive transmittance >= T_MIN".
        keep &= torch.cumprod(1 - torch.where(keep, alpha, 0.0), dim=-1) >= T_MIN
    alpha = torch.where(keep, alpha, 0.0)
    trans = torch.cumprod(1 - alpha, dim=-1)
    before = torch.cat((torch.ones_like(trans[..., :1]), trans[..., :-1]), dim=-1)
    return torch.einsum("tpl,tlc->tpc", alpha * before, colors), trans[..., -1]


def composite_ref(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, C]
    bins: TileBins,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing of binned Gaussians: colour sums [H, W, C] (no background) and the final
    transmittance [H, W, 1]. Tiles are processed in slabs of similar list length (little padding), each
    slab under activation checkpointing so backward memory stays at one slab."""
    device, dtype = means2d.device, means2d.dtype
    n_tiles = bins.tiles_x * bins.tiles_y
    channels = colors.shape[1]
    counts = torch.diff(bins.offsets).long()  # on the device: a copy of `lengths` there would wait for it
    starts = bins.offsets[:-1].long()
    centres = torch.arange(TILE, device=device, dtype=dtype) + 0.5
    tile_index = torch.arange(n_tiles, device=device)
    origins = torch.stack((tile_index % bins.tiles_x, tile_index // bins.tiles_x), -1).to(dtype) * TILE

    color_tiles = torch.zeros(n_tiles, TILE * TILE, channels, device=device, dtype=dtype)
    trans_tiles = torch.ones(n_tiles, TILE * TILE, device=device, dtype=dtype)
    # Tiles of equal length may come in either order: a slab's tiles and padded length are the same either way.
    by_length = torch.argsort(counts)
    sorted_counts = sorted(bins.lengths)
    begin = next((i for i, n in enumerate(sorted_counts) if n > 0), n_tiles)
    color_parts, trans_parts, tile_parts = [], [], []
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, opacities, colors))
    while begin < n_tiles:
        # Slab = consecutive tiles (by list length) while tiles × 256 × longest list fits the budget.
        end = begin + 1
        while end < n_tiles and (end + 1 - begin) * TILE * TILE * sorted_counts[end] <= REF_CHUNK_ELEMENTS:
            end += 1
        tiles = by_length[begin:end]
        length = sorted_counts[end - 1]
        slot = torch.arange(length, device=device)
        valid = slot[None, :] < counts[tiles, None]
        entry = torch.where(valid, starts[tiles, None] + slot[None, :], 0)
        gid = bins.ids.long()[entry]
        args = (centres, origins[tiles], means2d[gid], conics[gid], opacities[gid] * valid, colors[gid])
        if grad:
            col, trans = checkpoint(_composite_slab, *args, use_reentrant=False)
        else:
            col, trans = _composite_slab(*args)
        color_parts.append(col)
        trans_parts.append(trans)
        tile_parts.append(tiles)
        begin = end
    if tile_parts:
        tiles = torch.cat(tile_parts)
        color_tiles = color_tiles.index_put((tiles,), torch.cat(color_parts))
        trans_tiles = trans_tiles.index_put((tiles,), torch.cat(trans_parts))
    elif grad:
        # Nothing visible: the image still has to be part of the graph (zero gradients, as the C++
        # backend gives), or a caller's backward() would fail on a frame where everything is culled.
        color_tiles = color_tiles + 0 * (means2d.sum() + conics.sum() + opacities.sum() + colors.sum())

    def to_image(t: Tensor) -> Tensor:
        t = t.reshape(bins.tiles_y, bins.tiles_x, TILE, TILE, -1).permute(0, 2, 1, 3, 4)
        return t.reshape(bins.tiles_y * TILE, bins.tiles_x * TILE, -1)[:height, :width]

    return to_image(color_tiles), to_image(trans_tiles)


def finish(
    sums: Tensor,  # [H, W, C + 1] composited colours, camera z last
    trans: Tensor,  # [H, W, 1] final transmittance
    background: Tensor | None,  # [C] or None
) -> tuple[Tensor, Tensor, Tensor]:
    """image [H, W, C] over the background, alpha [H, W, 1], expected depth [H, W, 1]."""
    alpha = 1 - trans
    image = sums[..., :-1]
    if background is not None:
        image = image + trans * background.to(image.dtype)
    depth = sums[..., -1:] / alpha.clamp_min(1e-6)
    return image, alpha, depth


def check_inputs(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmat: Tensor, K: Tensor,
    background: Tensor | None,
) -> None:
    """Raises ValueError naming the first argument whose shape does not fit the others."""
    n = means.shape[0]
    expected = {"means": (means, (n, 3)), "quats": (quats, (n, 4)), "scales": (scales, (n, 3)),
                "opacities": (opacities, (n,)), "viewmat": (viewmat, (4, 4)), "K": (K, (3, 3))}
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"rasterize: {name} has shape {tuple(t.shape)}, expected {shape}")
    if colors.dim() != 2 or colors.shape[0] != n or colors.shape[1] < 1:
        raise ValueError(f"rasterize: colors has shape {tuple(colors.shape)}, expected ({n}, C) with C >= 1")
    if background is not None and tuple(background.shape) != (colors.shape[1],):
        raise ValueError(f"rasterize: background has shape {tuple(background.shape)}, expected ({colors.shape[1]},)")


def rasterize_ref(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, C]
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    width: int,
    height: int,
    background: Tensor | None = None,  # [C]
    near_plane: float = 0.01,
    eps2d: float = 0.3,
) -> RasterOutput:
    """Pure-torch Gaussian rasterization; same contract as `instag.kernels.rasterize.rasterize`."""
    check_inputs(means, quats, scales, opacities, colors, viewmat, K, background)
    proj = project_gaussians(means, quats, scales, viewmat, K, width, height, near_plane, eps2d)
    bins = bin_tiles(proj.means2d, proj.radii, proj.depths, width, height)
    features = torch.cat((colors, proj.depths[:, None]), dim=-1)
    sums, trans = composite_ref(proj.means2d, proj.conics, opacities, features, bins, width, height)
    image, alpha, depth = finish(sums, trans, background)
    return RasterOutput(image, alpha, depth, proj.means2d, proj.radii, proj.depths)
