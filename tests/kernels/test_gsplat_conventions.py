"""Our gsplat call (`kernels.rasterize._rasterize_gsplat`) against the INSTALLED gsplat, on the CPU.

gsplat's CUDA kernels cannot run here, but its Python signatures and its pure-torch twins of projection and
tile intersection can: each of the four functions we call is replaced by a stand-in that binds our arguments
to the installed function's signature (a renamed or reordered parameter fails here, not on the first GPU
run), checks the shapes gsplat documents, and computes with gsplat's own torch code where it has one. The
image then has to match our reference, as gsplat's CUDA result does in test_rasterize.py.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from kernel_tolerances import GSPLAT

from instag.kernels.rasterize import _rasterize_gsplat
from instag.kernels.rasterize_ref import rasterize_ref

gsplat = pytest.importorskip("gsplat")
torch_impl = pytest.importorskip("gsplat.cuda._torch_impl")

# The leading parameters we pass by position, in the order we pass them (keywords are checked by binding).
POSITIONAL = {
    "fully_fused_projection": ("means", "covars", "quats", "scales", "viewmats", "Ks", "width", "height"),
    "isect_tiles": ("means2d", "radii", "depths", "tile_size", "tile_width", "tile_height"),
    "isect_offset_encode": ("isect_ids", "n_images", "tile_width", "tile_height"),
    "rasterize_to_pixels": ("means2d", "conics", "colors", "opacities", "image_width", "image_height", "tile_size",
                            "isect_offsets", "flatten_ids"),
}
SIGNATURES = {name: inspect.signature(getattr(gsplat, name)) for name in POSITIONAL}  # before any stand-in


@pytest.mark.parametrize("name", POSITIONAL)
def test_installed_signatures_take_our_positional_arguments(name):
    params = list(SIGNATURES[name].parameters)
    assert tuple(params[: len(POSITIONAL[name])]) == POSITIONAL[name], f"gsplat {gsplat.__version__}: {params}"


def _bound(name: str, args: tuple, kwargs: dict) -> dict:
    """Our call's arguments by parameter name, as the installed gsplat would read them (TypeError if it would not)."""
    bound = SIGNATURES[name].bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def _projection(*args, **kwargs):
    a = _bound("fully_fused_projection", args, kwargs)
    n = a["means"].shape[0]
    assert a["covars"] is None and a["quats"].shape == (n, 4) and a["scales"].shape == (n, 3)
    assert a["viewmats"].shape == (1, 4, 4) and a["Ks"].shape == (1, 3, 3) and not a["packed"]
    covars, _ = torch_impl._quat_scale_to_covar_preci(a["quats"], a["scales"], compute_preci=False)
    radii, means2d, depths, conics, comp = torch_impl._fully_fused_projection(
        a["means"], covars, a["viewmats"], a["Ks"], a["width"], a["height"], a["eps2d"], a["near_plane"])
    # What gsplat 1.5 documents: radii per axis [C, N, 2] int32, means2d [C, N, 2], depths [C, N], conics [C, N, 3].
    assert radii.shape == (1, n, 2) and radii.dtype == torch.int32 and conics.shape == (1, n, 3)
    return radii, means2d, depths, conics, comp


def _isect_tiles(*args, **kwargs):
    a = _bound("isect_tiles", args, kwargs)
    n = a["depths"].shape[-1]
    assert a["means2d"].shape == (1, n, 2) and a["radii"].shape == (1, n, 2) and a["depths"].shape == (1, n)
    return torch_impl._isect_tiles(a["means2d"], a["radii"], a["depths"], a["tile_size"], a["tile_width"],
                                   a["tile_height"], a["sort"])


def _isect_offset_encode(*args, **kwargs):
    a = _bound("isect_offset_encode", args, kwargs)
    return torch_impl._isect_offset_encode(a["isect_ids"], a["n_images"], a["tile_width"], a["tile_height"])


def _rasterize_to_pixels(*args, **kwargs):
    """gsplat's compositing as its CUDA kernel does it, per tile over the depth-sorted lists (its torch twin
    needs CUDA): weight min(0.999, o·exp(-σ)), skipped below 1/255, stop before transmittance falls to 1e-4."""
    a = _bound("rasterize_to_pixels", args, kwargs)
    means2d, conics, colors, opac = a["means2d"][0], a["conics"][0], a["colors"][0], a["opacities"][0]
    offsets, ids, tile = a["isect_offsets"][0], a["flatten_ids"], a["tile_size"]
    width, height = a["image_width"], a["image_height"]
    assert offsets.shape == ((height + tile - 1) // tile, (width + tile - 1) // tile)
    out = torch.zeros(height, width, colors.shape[-1])
    alpha_out = torch.zeros(height, width, 1)
    ends = torch.cat((offsets.flatten()[1:], torch.tensor([len(ids)]))).view_as(offsets)
    for ty in range(offsets.shape[0]):
        for tx in range(offsets.shape[1]):
            g = ids[offsets[ty, tx]:ends[ty, tx]].long() % means2d.shape[0]  # flattened over the one image
            ys, xs = torch.meshgrid(torch.arange(ty * tile, min((ty + 1) * tile, height)),
                                    torch.arange(tx * tile, min((tx + 1) * tile, width)), indexing="ij")
            pix = torch.stack((xs, ys), -1).reshape(-1, 1, 2) + 0.5  # [P, 1, 2]
            d = pix - means2d[g]  # [P, K, 2]
            c = conics[g]
            sigma = 0.5 * (c[:, 0] * d[..., 0] ** 2 + c[:, 2] * d[..., 1] ** 2) + c[:, 1] * d[..., 0] * d[..., 1]
            alpha = (opac[g] * torch.exp(-sigma)).clamp(max=0.999)
            alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
            trans = torch.cumprod(torch.cat((torch.ones_like(alpha[:, :1]), 1 - alpha), 1), 1)  # [P, K + 1]
            alive = (trans[:, 1:] > 1e-4).float()
            alive = torch.cumprod(alive, 1)  # once stopped, stays stopped
            w = alpha * trans[:, :-1] * alive
            out[ys, xs] = (w @ colors[g]).reshape(ys.shape + (-1,))
            alpha_out[ys, xs] = w.sum(1).reshape(ys.shape + (1,))
    return out[None], alpha_out[None]


def test_our_gsplat_call_fits_the_installed_gsplat(monkeypatch):
    for name, fake in (("fully_fused_projection", _projection), ("isect_tiles", _isect_tiles),
                       ("isect_offset_encode", _isect_offset_encode), ("rasterize_to_pixels", _rasterize_to_pixels)):
        monkeypatch.setattr(gsplat, name, fake)
    g = torch.Generator().manual_seed(3)
    n, width, height = 60, 40, 24  # two rows of three tiles, the last ones partial
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 1.2, 2.0]) - torch.tensor([1.0, 0.6, -2.0])
    scene = dict(means=means, quats=torch.randn(n, 4, generator=g), scales=torch.rand(n, 3, generator=g) * 0.1 + 0.02,
                 opacities=torch.rand(n, generator=g) * 0.85 + 0.05, colors=torch.rand(n, 3, generator=g),
                 viewmat=torch.eye(4), K=torch.tensor([[48.0, 0, width / 2], [0, 48.0, height / 2], [0, 0, 1]]),
                 width=width, height=height, background=torch.tensor([0.2, 0.4, 0.6]), near_plane=0.01, eps2d=0.3)
    ours = _rasterize_gsplat(**scene)
    ref = rasterize_ref(**scene)
    assert ours.radii.shape == (n,) and ours.radii.dtype == torch.int32 and ours.means2d.shape == (n, 2)
    visible = (ours.radii > 0) & (ref.radii > 0)
    assert visible.sum() > n // 2 and ((ours.radii > 0) != (ref.radii > 0)).sum() <= 2
    torch.testing.assert_close(ours.means2d[visible], ref.means2d[visible], atol=GSPLAT.means2d_atol, rtol=1e-4)
    torch.testing.assert_close(ours.depths, ref.depths)
    for actual, expected in ((ours.image, ref.image), (ours.alpha, ref.alpha)):
        diff = (actual - expected).abs()
        assert diff.mean() < GSPLAT.image_mean and diff.max() < GSPLAT.image_max
    assert ((ours.depth - ref.depth).abs() * ref.alpha).mean() < GSPLAT.depth_mean
