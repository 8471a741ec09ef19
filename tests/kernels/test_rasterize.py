"""Gaussian rasterization on each device: our kernel (the C++ compositor on the CPU, gsplat on CUDA) vs the
torch reference, gradcheck of the reference, known answers, densification gradients, backend selection, and the
reference's one wait on the device."""

from __future__ import annotations

import math
import sys
import warnings

import pytest
import torch
from instag_testing import PACKAGE, DeviceReads
from kernel_tolerances import GSPLAT, assert_close

from instag.errors import BackendUnavailableError
from instag.kernels import backend as kernel_backend
from instag.kernels.rasterize import RasterOutput, _bin_tiles_cpu, _project_cpu, rasterize
from instag.kernels.rasterize_ref import bin_tiles, project_gaussians, quat_to_rotmat, rasterize_ref

PARAMS = ("means", "quats", "scales", "opacities", "colors")
# What each implementation does by design, beside rounding: the alpha it clamps a Gaussian's weight at, and the
# multiple of σ its screen-space radius covers.
ALPHA_MAX = {"instag-cpp": 0.99, "torch-reference": 0.99, "gsplat": 0.999}
RADIUS_SIGMAS = {"instag-cpp": 3.0, "torch-reference": 3.0, "gsplat": 3.33}


def backend_for(device: torch.device, impl: str) -> str:
    """The explicit backend for `impl` (kernel: ours on this device, torch: the reference), skipping when our
    kernel cannot run here."""
    if impl == "torch":
        return "torch"
    found, reason = kernel_backend.available("rasterize", device.type)
    if found is None:
        pytest.skip(f"no {device.type} rasterizer here: {reason}")
    return device.type


def impl_name(backend: str, device: torch.device) -> str:
    return kernel_backend.resolve("rasterize", backend, device).impl


def make_scene(n: int, width: int, height: int, channels: int = 3, seed: int = 0, *, hard: bool = False,
               dtype: torch.dtype = torch.float32, device: str = "cpu") -> dict:
    """Gaussians in a box 2–4 units in front of a camera at the origin, focal ≈ 1.2 × width.

    hard: also a fifth of them behind or straddling the near plane and a fifth far off-screen (where the
    projection's Jacobian is clamped), some very flat and some large."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 2.0 * height / width, 2.0]) - torch.tensor(
        [1.0, 1.0 * height / width, -2.0])
    scales = torch.exp(torch.empty(n, 3).uniform_(math.log(0.005), math.log(0.08), generator=g))
    if hard:
        k = max(n // 5, 1)
        means[:k, 2] = torch.empty(k).uniform_(-1.0, 0.3, generator=g)  # behind, at or just past the near plane
        means[k:2 * k, 0] = torch.empty(k).uniform_(3.0, 12.0, generator=g) * torch.sign(torch.randn(k, generator=g))
        scales[2 * k:3 * k, 0] = 0.4  # large, flat in the other axes
        scales[2 * k:3 * k, 1:] = 1e-4
    focal = 1.2 * width
    return {
        "means": means.to(device, dtype),
        "quats": torch.randn(n, 4, generator=g).to(device, dtype),
        "scales": scales.to(device, dtype),
        "opacities": (0.05 + 0.95 * torch.rand(n, generator=g)).to(device, dtype),
        "colors": torch.rand(n, channels, generator=g).to(device, dtype),
        "viewmat": torch.eye(4).to(device, dtype),
        "K": torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]]).to(device, dtype),
        "width": width,
        "height": height,
    }


def render_with_grads(scene: dict, background: torch.Tensor | None, seed: int = 1, **kwargs):
    """Renders with requires_grad inputs, backpropagates a random weighting of image, alpha and depth;
    returns (output, {name: grad}, means2d.grad)."""
    leaves = {k: (v.clone().requires_grad_(True) if k in PARAMS else v) for k, v in scene.items()}
    out = rasterize(**leaves, background=background, **kwargs)
    out.means2d.retain_grad()
    g = torch.Generator().manual_seed(seed)  # drawn on the CPU, moved to the output's device and dtype
    loss = sum((t * torch.randn(t.shape, generator=g).to(t)).sum() for t in (out.image, out.alpha, 0.1 * out.depth))
    loss.backward()
    return out, {k: leaves[k].grad for k in PARAMS}, out.means2d.grad


def max_abs(t: torch.Tensor) -> float:
    return max(t.abs().max().item(), 1e-12) if t.numel() else 1.0


def assert_matches_reference(out: RasterOutput, grads: dict, m2d: torch.Tensor, ref: RasterOutput, ref_grads: dict,
                             ref_m2d: torch.Tensor) -> None:
    """Our kernel against the reference on the same device. On the CPU both share the torch projection, so radii,
    means2d and depths agree exactly and the rest to float32 rounding; gsplat on CUDA is another algorithm,
    compared on average (`kernel_tolerances.GsplatParity`)."""
    device = out.image.device
    assert out.radii.dtype == torch.int32 and out.image.device == ref.image.device
    if device.type == "cpu":
        assert torch.equal(out.radii, ref.radii) and torch.equal(out.means2d, ref.means2d)
        assert torch.equal(out.depths, ref.depths)
        assert_close(out.image, ref.image, "composited")
        assert_close(out.alpha, ref.alpha, "composited")
        assert_close(out.depth, ref.depth, "composited", scale=10.0)  # camera z of 2–4 divided by alpha
        assert_close(m2d, ref_m2d, "raster_gradient", scale=max_abs(ref_m2d))
        for name in PARAMS:
            assert_close(grads[name], ref_grads[name], "raster_gradient", scale=max_abs(ref_grads[name]))
        return
    # gsplat leaves means2d and depths of culled Gaussians unwritten, and its bounding box differs from ours, so
    # a few Gaussians at the image border may be culled by one and not the other.
    visible = (out.radii > 0) & (ref.radii > 0)
    assert ((out.radii > 0) != (ref.radii > 0)).sum() <= max(2, GSPLAT.culled_fraction * len(visible))
    torch.testing.assert_close(out.means2d[visible], ref.means2d[visible], atol=GSPLAT.means2d_atol, rtol=1e-4)
    torch.testing.assert_close(out.depths[visible], ref.depths[visible], atol=GSPLAT.depths_atol, rtol=1e-3)
    for actual, expected in ((out.image, ref.image), (out.alpha, ref.alpha)):
        diff = (actual - expected).abs()
        assert diff.mean() < GSPLAT.image_mean and diff.max() < GSPLAT.image_max
    assert ((out.depth - ref.depth).abs() * ref.alpha).mean() < GSPLAT.depth_mean
    assert m2d is not None and torch.count_nonzero(m2d) > 0
    assert (m2d[visible] - ref_m2d[visible]).norm() / ref_m2d[visible].norm() < GSPLAT.grad_rel
    for name in PARAMS:
        err = (grads[name] - ref_grads[name]).norm() / ref_grads[name].norm()
        assert err < GSPLAT.grad_rel, (name, err.item())


# --- our kernel vs torch reference ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "n, width, height, channels, seed, hard",
    [
        (1, 32, 32, 3, 0, False),
        (7, 40, 24, 1, 1, True),
        (300, 64, 48, 3, 2, True),
        (600, 50, 70, 7, 3, True),
        (2000, 96, 80, 3, 4, False),
    ],
)
def test_kernel_matches_reference(n, width, height, channels, seed, hard, device):
    kernel = backend_for(device, "kernel")
    scene = make_scene(n, width, height, channels, seed, hard=hard, device=device)
    if ALPHA_MAX[impl_name(kernel, device)] != ALPHA_MAX["torch-reference"]:
        # Below both alpha clamps (gsplat's and ours), which the known answers below test.
        scene["opacities"] = scene["opacities"].clamp(max=0.9)
    background = torch.rand(channels, generator=torch.Generator().manual_seed(seed)).to(device)
    out, grads, m2d = render_with_grads(scene, background, backend=kernel)
    ref, ref_grads, ref_m2d = render_with_grads(scene, background, backend="torch")
    assert_matches_reference(out, grads, m2d, ref, ref_grads, ref_m2d)
    if hard:
        assert (ref.radii == 0).any() and (ref.radii > 0).any()


@pytest.mark.parametrize("width, height, seed", [(64, 48, 11), (50, 70, 12), (256, 256, 13)])
def test_cpu_projection_matches_reference(width, height, seed):
    """The C++ projection a render without gradients uses, against the torch one, on Gaussians behind, at and
    past the near plane, far off-screen (clamped Jacobian), flat and large: the same culling and radii (a
    radius on a rounding boundary may differ by one pixel), the rest to float32 rounding."""
    scene = make_scene(3000, width, height, seed=seed, hard=True)
    args = (scene["means"], scene["quats"], scene["scales"], scene["viewmat"], scene["K"], width, height, 0.01, 0.3)
    ours, ref = _project_cpu(*args), project_gaussians(*args)
    assert ours.radii.dtype == torch.int32 and (ref.radii == 0).any() and (ref.radii > 0).any()
    assert torch.equal(ours.radii > 0, ref.radii > 0)
    assert (ours.radii - ref.radii).abs().max() <= 1 and (ours.radii != ref.radii).float().mean() < 1e-3
    torch.testing.assert_close(ours.depths, ref.depths, rtol=1e-6, atol=1e-6)
    shown = ref.radii > 0
    torch.testing.assert_close(ours.means2d[shown], ref.means2d[shown], rtol=1e-5, atol=1e-3)
    # The inverse of a 2D covariance whose determinant cancels (a long thin Gaussian across the diagonal) carries
    # the rounding of its terms magnified by cxx·cyy / det; those are held to a looser tolerance.
    a, b, c = ref.conics.unbind(-1)
    conditioned = shown & ((a * c - b * b) > 0.01 * a * c)
    assert conditioned.sum() > 0.5 * shown.sum()
    torch.testing.assert_close(ours.conics[conditioned], ref.conics[conditioned], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.conics[shown], ref.conics[shown], rtol=5e-3, atol=1e-5)


@pytest.mark.parametrize("output", ["means2d", "conics", "depths"])
@pytest.mark.parametrize("width, height, seed", [(64, 48, 14), (256, 256, 15)])
def test_cpu_projection_gradients_match_reference(width, height, seed, output):
    """The C++ projection's backward against torch's autograd through `project_gaussians`, on the same hard
    Gaussians (behind the camera, clamped off-screen, flat, large), each output's gradient path alone under a
    random weighting. Where the covariance's determinant cancels, rounding is magnified as in the forward pass;
    those Gaussians are held to a looser tolerance."""
    n = 3000
    scene = make_scene(n, width, height, seed=seed, hard=True)
    scene["quats"][:3] *= torch.tensor([1e-14, 3.0, 0.2])[:, None]  # one under the norm's floor, two unnormalised
    weight = torch.randn({"means2d": (n, 2), "conics": (n, 3), "depths": (n,)}[output],
                         generator=torch.Generator().manual_seed(seed))
    grads = []
    for project in (_project_cpu, project_gaussians):
        leaves = [scene[k].clone().requires_grad_(True) for k in ("means", "quats", "scales")]
        proj = project(*leaves, scene["viewmat"], scene["K"], width, height, 0.01, 0.3)
        values = getattr(proj, output)
        if output == "conics":  # scaled by each conic's size, so Gaussians of every size count alike
            values = values / values.detach().abs().amax(-1, keepdim=True).clamp_min(1e-6)
        (values * weight).sum().backward()
        grads.append([torch.zeros_like(leaf) if leaf.grad is None else leaf.grad for leaf in leaves])
        a, b, c = proj.conics.detach().unbind(-1)
        conditioned = (a * c - b * b) > 0.01 * a * c
    assert conditioned.float().mean() > 0.5
    for name, ours, ref in zip(("means", "quats", "scales"), *grads, strict=True):
        assert torch.isfinite(ours).all(), name
        well, rest = (ours[conditioned], ref[conditioned]), (ours[~conditioned], ref[~conditioned])
        torch.testing.assert_close(*well, rtol=1e-3, atol=1e-5 * well[1].abs().max(),
                                   msg=lambda m, name=name: f"{name}: {m}")
        assert (rest[0] - rest[1]).norm() <= 1e-3 * rest[1].norm(), name


def test_render_without_gradients_matches_render_with_them():
    """rasterize on the CPU projects in C++ with gradients off: the image is the torch projection's to float32
    rounding."""
    scene = make_scene(2000, 96, 80, seed=4, hard=True)
    with torch.no_grad():
        fast = rasterize(**scene, backend="cpu")
    ref, _, _ = render_with_grads(scene, None, backend="cpu")
    assert_close(fast.image, ref.image, "composited")
    assert_close(fast.alpha, ref.alpha, "composited")


@pytest.mark.parametrize("width, height", [(64, 48), (50, 70)])
def test_cpu_binning_matches_reference(width, height):
    scene = make_scene(3000, width, height, seed=11, hard=True)
    proj = project_gaussians(scene["means"], scene["quats"], scene["scales"], scene["viewmat"], scene["K"], width, height)
    ours = _bin_tiles_cpu(proj.means2d.contiguous(), proj.radii, proj.depths, width, height)
    ref = bin_tiles(proj.means2d, proj.radii, proj.depths, width, height)
    assert (ours.tiles_x, ours.tiles_y) == (ref.tiles_x, ref.tiles_y)
    assert torch.equal(ours.offsets, ref.offsets) and torch.equal(ours.ids, ref.ids)


def test_cpu_binning_orders_equal_depths_by_index():
    """The C++ depth order (a radix sort of the depths' bits) is a stable sort: among Gaussians at the same depth
    the lower index comes first in every tile, as in the reference; culled ones (radius 0) are listed nowhere."""
    g = torch.Generator().manual_seed(3)
    n, width, height = 4000, 80, 64
    means2d = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    radii = torch.randint(0, 12, (n,), generator=g, dtype=torch.int32)
    depths = torch.tensor([0.5, 1.0, 1.0 + 2**-20, 3.0, 1e4])[torch.randint(0, 5, (n,), generator=g)]
    ours = _bin_tiles_cpu(means2d, radii, depths, width, height)
    ref = bin_tiles(means2d, radii, depths, width, height)
    assert torch.equal(ours.offsets, ref.offsets) and torch.equal(ours.ids, ref.ids)
    first = ours.ids[ours.offsets[0]:ours.offsets[1]].long()
    assert len(first) > 10 and (radii[first] > 0).all()
    d = depths[first]  # nearest first, then by index
    assert ((d[1:] > d[:-1]) | ((d[1:] == d[:-1]) & (first[1:] > first[:-1]))).all()
    assert (d[1:] == d[:-1]).any()


def test_the_reference_waits_on_the_device_only_for_the_tile_list_lengths(device):
    # The torch twin is what renders on a GPU without gsplat. A read back (nonzero, a size taken from data, a
    # boolean index) stalls the host behind the whole queue; the list lengths must be read, nothing else.
    scene = make_scene(1500, 64, 48, seed=5, hard=True, device=device)
    for name in PARAMS:
        scene[name].requires_grad_(True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")  # also sees what the dispatch guard cannot: blocking copies
    try:
        with warnings.catch_warnings(record=True) as caught, DeviceReads({PACKAGE / "kernels" / "rasterize_ref.py"}) as reads:
            warnings.simplefilter("always")
            out = rasterize_ref(**scene)
            (out.image.sum() + out.depth.sum()).backward()
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert scene["means"].grad.abs().sum() > 0
    # On the CPU the lengths are on the host already; on a GPU they are copied there once.
    assert len(reads.seen) == (device.type != "cpu"), reads.seen
    waits = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(waits) == (device.type != "cpu"), waits


def test_binning_leaves_out_non_finite_means():
    """NaN passed the C++ clamp and indexed outside the tile lists (found by test_asan.py); ±inf and NaN means
    are drawn nowhere, so both backends list them in no tile."""
    means2d = torch.tensor([[10.0, 10.0], [math.nan, 5.0], [5.0, math.inf], [-math.inf, math.nan], [30.0, 20.0]])
    radii = torch.tensor([3, 40, 40, 40, 2], dtype=torch.int32)
    depths = torch.arange(5.0)
    ours = _bin_tiles_cpu(means2d, radii, depths, 40, 30)
    ref = bin_tiles(means2d, radii, depths, 40, 30)
    assert torch.equal(ours.offsets, ref.offsets) and torch.equal(ours.ids, ref.ids)
    assert set(ours.ids.tolist()) == {0, 4}


def test_cpu_row_spans_leave_out_nothing_drawn(monkeypatch):
    """The C++ compositor walks, per row of a tile, only the Gaussians whose span on that row can reach alpha
    1/255. Long thin tilted Gaussians (sheared conics, spans that move along the row) with opacities just over
    1/255 (so most pixels they touch sit at the cut-off) must still match the reference, which tests every
    Gaussian at every pixel: one left out would move a pixel by about 0.004 × its colour, far over the
    tolerance. Both composite the torch projection here, since at the cut-off the C++ projection's rounding
    alone would flip pixels."""
    monkeypatch.setattr(sys.modules["instag.kernels.rasterize"], "_project_cpu", project_gaussians)
    scene = make_scene(2500, 96, 80, seed=21)
    g = torch.Generator().manual_seed(21)
    scene["scales"] = torch.tensor([0.3, 0.002, 0.002]) * torch.exp(torch.empty(2500, 3).uniform_(-0.5, 0.5, generator=g))
    faint = torch.rand(2500, generator=g) < 0.6
    scene["opacities"] = torch.where(faint, (1.0 + 3.0 * torch.rand(2500, generator=g)) / 255.0, scene["opacities"])
    scene["colors"] = 0.5 + 0.5 * scene["colors"]
    out, grads, m2d = render_with_grads(scene, None, backend="cpu")
    ref, ref_grads, ref_m2d = render_with_grads(scene, None, backend="torch")
    assert_matches_reference(out, grads, m2d, ref, ref_grads, ref_m2d)
    assert (out.alpha > 0).float().mean() > 0.5  # the scene covers the image, not a few pixels


def test_cpu_is_deterministic_across_thread_counts():
    scene = make_scene(800, 64, 64, seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, one_grads, _ = render_with_grads(scene, None, backend="cpu")
        torch.set_num_threads(max(threads, 2))
        many, many_grads, _ = render_with_grads(scene, None, backend="cpu")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.image, many.image) and torch.equal(one.alpha, many.alpha)
    for name in PARAMS:
        assert torch.equal(one_grads[name], many_grads[name]), name


def test_reference_gradcheck_float64():
    # Distinct depths (a tie would make the sort order, hence the image, jump under a perturbation), and
    # Gaussians wide enough that no pixel sits near the 1/255 alpha cut-off. The fourth is centred right
    # of the image, beyond the Jacobian's clamp, but wide enough to reach into it.
    f64 = torch.float64
    scene = make_scene(4, 8, 8, channels=2, seed=6, dtype=f64)
    scene["means"] = torch.tensor([[0.05, 0.04, 2.5], [0.06, -0.1, 3.0], [0.1, 0.12, 3.5], [2.3, 0.1, 3.2]], dtype=f64)
    scene["scales"] = torch.tensor([[0.5, 0.3, 0.4], [0.5, 0.3, 0.4], [0.5, 0.3, 0.4], [1.2, 1.0, 0.8]], dtype=f64)
    scene["opacities"] = torch.tensor([0.6, 0.5, 0.7, 0.4], dtype=f64)
    inputs = tuple(scene[k].clone().requires_grad_(True) for k in PARAMS)
    fixed = {k: v for k, v in scene.items() if k not in PARAMS}
    background = torch.tensor([0.2, 0.7], dtype=torch.float64)

    def fn(*params):
        out = rasterize_ref(*params, **fixed, background=background)
        return out.image, out.alpha, out.depth

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


# --- known answers ----------------------------------------------------------------------------------------

def one_gaussian(z: float, xy=(0.0, 0.0), scale=0.05, opacity=1.0, color=(1.0, 0.5, 0.25),
                 device: torch.device | str = "cpu") -> dict:
    return {
        "means": torch.tensor([[xy[0], xy[1], z]], device=device),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]], device=device),
        "scales": torch.full((1, 3), scale, device=device),
        "opacities": torch.tensor([opacity], device=device),
        "colors": torch.tensor([color], device=device),
    }


def camera(size: int, focal: float = 300.0, device: torch.device | str = "cpu") -> dict:
    K = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]], device=device)
    return {"viewmat": torch.eye(4, device=device), "K": K, "width": size, "height": size}


@pytest.mark.parametrize("impl", ["kernel", "torch"])
def test_one_opaque_gaussian_at_the_centre(impl, device):
    # 33 px: the principal point 16.5 is the centre of pixel 16, so the image is mirror-symmetric.
    backend = backend_for(device, impl)
    name = impl_name(backend, device)
    background = torch.tensor([0.0, 0.0, 1.0], device=device)
    out = rasterize(**one_gaussian(3.0, device=device), **camera(33, device=device), background=background,
                    backend=backend)
    out = RasterOutput(**{k: v.detach().cpu() for k, v in vars(out).items()})
    a = ALPHA_MAX[name]
    torch.testing.assert_close(out.alpha[16, 16, 0], torch.tensor(a))
    torch.testing.assert_close(out.image[16, 16], a * torch.tensor([1.0, 0.5, 0.25]) + (1 - a) * background.cpu())
    torch.testing.assert_close(out.depth[16, 16, 0], torch.tensor(3.0))
    for flipped in (out.image.flip(0), out.image.flip(1), out.image.transpose(0, 1)):
        torch.testing.assert_close(flipped, out.image, atol=1e-6, rtol=0)
    # Alpha falls off monotonically away from the centre (σ ≈ 5 px: 300 × 0.05 / 3).
    row = out.alpha[16, 16:, 0]
    assert torch.all(row[1:] <= row[:-1]) and row[-1] < 0.01
    assert out.radii.tolist() == [math.ceil(RADIUS_SIGMAS[name] * math.sqrt(25.0 + 0.3))]


@pytest.mark.parametrize("impl", ["kernel", "torch"])
def test_nearer_gaussian_wins_regardless_of_order(impl, device):
    backend = backend_for(device, impl)
    near = one_gaussian(2.0, scale=0.04, opacity=0.95, color=(1.0, 0.0, 0.0), device=device)
    far = one_gaussian(4.0, scale=0.08, opacity=0.95, color=(0.0, 1.0, 0.0), device=device)
    both = {k: torch.cat((near[k], far[k])) for k in near}
    swapped = {k: torch.cat((far[k], near[k])) for k in near}
    a = rasterize(**both, **camera(33, device=device), backend=backend)
    b = rasterize(**swapped, **camera(33, device=device), backend=backend)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    red, green = a.image[16, 16, 0].item(), a.image[16, 16, 1].item()
    assert red > 0.9 and green < 0.05  # the far one only shows through the near one's 5 %
    assert 2.0 < a.depth[16, 16, 0].item() < 2.1


def quat_multiply(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (w, x, y, z) quaternions, broadcasting."""
    pw, px, py, pz = p.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    return torch.stack((pw * qw - px * qx - py * qy - pz * qz, pw * qx + px * qw + py * qz - pz * qy,
                        pw * qy - px * qz + py * qw + pz * qx, pw * qz + px * qy - py * qx + pz * qw), -1)


def test_moving_world_and_camera_together_changes_nothing():
    # A rigid motion applied to every Gaussian (positions and orientations) and undone by the view matrix
    # must give the same picture: checks the view transform and the quaternion convention together.
    scene = make_scene(400, 48, 40, seed=12, dtype=torch.float64)
    q_world = torch.nn.functional.normalize(torch.tensor([0.9, 0.2, -0.3, 0.25], dtype=torch.float64), dim=0)
    rigid = torch.eye(4, dtype=torch.float64)
    rigid[:3, :3] = quat_to_rotmat(q_world[None])[0]
    rigid[:3, 3] = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    moved = dict(scene, means=scene["means"] @ rigid[:3, :3].T + rigid[:3, 3],
                 quats=quat_multiply(q_world, scene["quats"]), viewmat=scene["viewmat"] @ torch.linalg.inv(rigid))
    a = rasterize(**scene, backend="torch")
    b = rasterize(**moved, backend="torch")
    assert torch.equal(a.radii, b.radii)
    torch.testing.assert_close(b.image, a.image, atol=1e-9, rtol=1e-3)
    torch.testing.assert_close(b.depth, a.depth, atol=1e-9, rtol=1e-3)


@pytest.mark.parametrize("impl", ["kernel", "torch"])
@pytest.mark.parametrize("case", ["empty", "behind", "off-screen"])
def test_nothing_visible_gives_the_background(impl, case, device):
    backend = backend_for(device, impl)
    background = torch.tensor([0.1, 0.2, 0.3, 0.4], device=device)
    scene = make_scene(0 if case == "empty" else 20, 40, 30, channels=4, seed=7, device=device)
    if case == "behind":
        scene["means"][:, 2] = -scene["means"][:, 2]
    elif case == "off-screen":
        scene["means"][:, 0] += 20.0
    leaves = {k: (v.clone().requires_grad_(True) if k in PARAMS else v) for k, v in scene.items()}
    out = rasterize(**leaves, background=background, backend=backend)
    assert out.image.shape == (30, 40, 4) and out.alpha.shape == (30, 40, 1) and out.depth.shape == (30, 40, 1)
    assert torch.equal(out.image, background.expand(30, 40, 4))
    zeros = torch.zeros(30, 40, 1, device=device)
    assert torch.equal(out.alpha, zeros) and torch.equal(out.depth, zeros)
    assert torch.equal(out.radii, torch.zeros_like(out.radii))
    if scene["means"].shape[0]:
        out.image.sum().backward()
        assert all(torch.equal(leaves[k].grad, torch.zeros_like(leaves[k])) for k in PARAMS)


# --- densification gradients, dtypes, backends ------------------------------------------------------------

@pytest.mark.parametrize("impl", ["kernel", "torch"])
def test_means2d_grad_is_populated(impl, device):
    scene = make_scene(50, 48, 48, seed=8, hard=True, device=device)
    out, _, m2d_grad = render_with_grads(scene, None, backend=backend_for(device, impl))
    assert isinstance(out, RasterOutput)
    assert m2d_grad is not None and m2d_grad.shape == (50, 2)
    visible = out.radii > 0
    assert (m2d_grad[visible].abs().sum(-1) > 0).float().mean() > 0.5
    assert torch.equal(m2d_grad[~visible], torch.zeros_like(m2d_grad[~visible]))


def test_cpu_backend_accepts_float64_and_keeps_the_dtype():
    scene = make_scene(100, 32, 32, seed=9, dtype=torch.float64)
    out = rasterize(**scene, backend="cpu")
    ref = rasterize(**scene, backend="torch")
    assert out.image.dtype == torch.float64 and out.depth.dtype == torch.float64
    assert_close(out.image, ref.image, "composited")


def test_shape_errors_name_the_argument():
    scene = make_scene(10, 16, 16)
    scene["quats"] = scene["quats"][:, :3]
    with pytest.raises(ValueError, match="quats"):
        rasterize(**scene, backend="torch")
    with pytest.raises(ValueError, match="background"):
        rasterize(**make_scene(10, 16, 16), background=torch.zeros(2), backend="cpu")


def test_explicit_backends_are_selectable(device):
    scene = make_scene(20, 16, 16, device=device)
    for impl in ("kernel", "torch"):
        image = rasterize(**scene, backend=backend_for(device, impl)).image
        assert image.shape == (16, 16, 3) and image.device == device
    with pytest.raises(BackendUnavailableError):
        rasterize(**scene, backend="metal")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_cuda_backend_without_cuda_raises():
    with pytest.raises(BackendUnavailableError):
        rasterize(**make_scene(20, 16, 16), backend="cuda")
