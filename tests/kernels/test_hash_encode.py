"""Hash-grid encoders: kernels against the pure-torch reference, the reference against finite differences,
known answers, layout and backend selection."""

from __future__ import annotations

import pytest
import torch

from cuda_ext import build
from instag.errors import BackendUnavailableError
from instag.kernels.hash_encode import HashEncoder3D, TriplaneHashEncoder
from instag.kernels.hash_encode_ref import grid_encode_ref, level_resolutions

needs_compiler = pytest.mark.skipif(not build.compiler_available(), reason="no C++ compiler or ninja")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ENCODERS = {"triplane": TriplaneHashEncoder, "grid3d": HashEncoder3D}
# Small tables hash every level but the first; large ones keep every level dense; medium mixes both.
TABLE_SIZES = {"hashed": 6, "mixed": 10, "dense": 16}


def make_encoder(kind: str, n_features: int, table: str, backend: str, bound: float = 0.7):
    torch.manual_seed(0)
    enc = ENCODERS[kind](
        n_levels=4,
        n_features=n_features,
        log2_table_size=TABLE_SIZES[table],
        base_resolution=3,
        max_resolution=40,
        bound=bound,
        backend=backend,
    )
    with torch.no_grad():
        enc.embeddings.normal_()  # unit-scale values, so that tolerances read as relative ones
    return enc


def table3(enc) -> torch.Tensor:
    """The encoder's table as [planes, entries, features], the reference's layout."""
    return enc.embeddings if enc.embeddings.dim() == 3 else enc.embeddings.unsqueeze(0)


def sample_points(n: int, bound: float, seed: int) -> torch.Tensor:
    """Random points in [-1.1 bound, 1.1 bound] (some clamped), with coordinates exactly on ±bound."""
    gen = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(n, 3, generator=gen) * 2.2 - 1.1) * bound
    if n >= 4:
        xyz[0, 0], xyz[1, 1], xyz[2, 2] = bound, -bound, bound
        xyz[3] = torch.tensor([1.05, -1.05, 0.0]) * bound  # slightly outside on two axes
    return xyz


def encode_with_grads(enc, xyz: torch.Tensor, encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Output, table gradient and point gradient for a fixed random upstream gradient."""
    xyz = xyz.clone().requires_grad_()
    out = encode(xyz)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    enc.embeddings.grad = None
    g_table, g_xyz = torch.autograd.grad(out, [enc.embeddings, xyz], grad_out)
    return out.detach(), g_table, g_xyz


def assert_matches_reference(enc, xyz: torch.Tensor) -> None:
    out, g_table, g_xyz = encode_with_grads(enc, xyz, enc)
    ref, r_table, r_xyz = encode_with_grads(
        enc, xyz, lambda x: grid_encode_ref(x, table3(enc), enc.layout).to(x.device)
    )
    # Outputs are sums of at most 8 products of unit-scale values; float32 rounding only.
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # Table gradients sum up to N contributions per entry (different summation order).
    torch.testing.assert_close(g_table, r_table, rtol=1e-4, atol=1e-4 * max(1.0, xyz.shape[0] ** 0.5))
    # Point gradients are scaled by res / (2 bound) per level: compare relative to their magnitude.
    scale = max(1.0, r_xyz.abs().max().item())
    torch.testing.assert_close(g_xyz, r_xyz, rtol=1e-4, atol=1e-5 * scale)


@needs_compiler
@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("n_features", [1, 2])
@pytest.mark.parametrize("table", TABLE_SIZES)
@pytest.mark.parametrize("n", [1, 37, 2000])
def test_cpu_kernel_matches_reference(kind, n_features, table, n):
    enc = make_encoder(kind, n_features, table, backend="cpu")
    assert_matches_reference(enc, sample_points(n, enc.layout.bound, seed=n))


@needs_compiler
@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("n_features", [4, 8])
def test_cpu_kernel_wide_features(kind, n_features):
    enc = make_encoder(kind, n_features, "mixed", backend="cpu")
    assert_matches_reference(enc, sample_points(300, enc.layout.bound, seed=11))


@needs_compiler
@pytest.mark.parametrize("kind", ENCODERS)
def test_cpu_kernel_table_gradient_only(kind):
    """Without xyz.requires_grad the kernel skips the point gradient and still gets the table's right."""
    enc = make_encoder(kind, 2, "mixed", backend="cpu")
    xyz = sample_points(500, enc.layout.bound, seed=3)
    (g_table,) = torch.autograd.grad(enc(xyz).square().sum(), [enc.embeddings])
    (r_table,) = torch.autograd.grad(
        grid_encode_ref(xyz, table3(enc), enc.layout).square().sum(), [enc.embeddings]
    )
    torch.testing.assert_close(g_table, r_table, rtol=1e-4, atol=1e-4)


@needs_compiler
@pytest.mark.parametrize("kind", ENCODERS)
def test_cpu_kernel_default_sizes(kind):
    """The production hyper-parameters (12 or 16 levels, 2^17 or 2^19 tables, hashed fine levels)."""
    enc = ENCODERS[kind](backend="cpu")
    with torch.no_grad():
        enc.embeddings.normal_()
    assert_matches_reference(enc, sample_points(3000, 1.0, seed=5))


@needs_compiler
@pytest.mark.parametrize("kind", ENCODERS)
def test_empty_input(kind):
    enc = make_encoder(kind, 1, "mixed", backend="cpu")
    out = enc(torch.zeros(0, 3))
    assert out.shape == (0, enc.output_dim)
    (g_table,) = torch.autograd.grad(out.sum(), [enc.embeddings])
    assert torch.count_nonzero(g_table) == 0


def hostile_points(bound: float) -> torch.Tensor:
    """NaN, ±inf and huge coordinates, alone and mixed with ordinary ones, and ordinary points between them."""
    nan, inf, big = float("nan"), float("inf"), 3.0e38
    rows = [[nan, nan, nan], [inf, inf, inf], [-inf, -inf, -inf], [big, -big, big], [nan, 0.1, -inf],
            [inf, nan, 0.2], [-0.3, big, nan], [1e30, -1e30, 0.0], [0.1, 0.2, 0.3]]
    return torch.cat([torch.tensor(rows), sample_points(16, bound, seed=7)])


@needs_compiler
@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("table", TABLE_SIZES)
def test_cpu_kernel_non_finite_and_huge_points_stay_in_bounds(kind, table):
    """Such points once indexed outside the table (int of NaN): NaN counts as the grid's lower corner, ±inf and
    huge values clamp to the edges, exactly as in the reference; no gradient reaches those coordinates."""
    enc = make_encoder(kind, 2, table, backend="cpu")
    xyz = hostile_points(enc.layout.bound)
    out = enc(xyz)
    assert torch.isfinite(out).all()
    assert_matches_reference(enc, xyz)
    corner = enc(torch.full((1, 3), -enc.layout.bound))
    torch.testing.assert_close(out[0], corner[0])
    _, _, g_xyz = encode_with_grads(enc, xyz, enc)
    assert torch.count_nonzero(g_xyz[~torch.isfinite(xyz) | (xyz.abs() > 1e29)]) == 0


@pytest.mark.parametrize("kind", ENCODERS)
def test_reference_gradcheck(kind):
    """float64 finite differences of the reference, tables and points, with both dense and hashed levels."""
    torch.manual_seed(0)
    enc = ENCODERS[kind](
        n_levels=2,
        n_features=2,
        log2_table_size=4 if kind == "triplane" else 6,
        base_resolution=2,
        max_resolution=4,
        bound=1.0,
        backend="torch",
    ).double()
    layout = enc.layout
    sizes = [b - a for a, b in zip(layout.offsets[:-1], layout.offsets[1:], strict=True)]
    assert sizes[0] == 3**layout.dim and sizes[1] < 5**layout.dim  # level 0 dense, level 1 hashed
    table = torch.randn(table3(enc).shape, dtype=torch.float64, requires_grad=True)
    xyz = (torch.rand(5, 3, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()  # inside, away from the clamp
    assert torch.autograd.gradcheck(lambda x, t: grid_encode_ref(x, t, layout), (xyz, table))


def linear_table(enc, coeffs: torch.Tensor) -> torch.Tensor:
    """A table whose entry at vertex v of level l is coeffs[:-1] · (v / res_l) + coeffs[-1], on every plane.

    Needs every level dense, where entry index = sum_d v_d (res + 1)^d.
    """
    layout = enc.layout
    planes = []
    for _ in range(layout.n_planes):
        levels = []
        for level, res in enumerate(layout.resolutions):
            assert layout.offsets[level + 1] - layout.offsets[level] == (res + 1) ** layout.dim
            axes = torch.meshgrid(*[torch.arange(res + 1)] * layout.dim, indexing="ij")
            vertex = (
                torch.stack([a.flatten() for a in reversed(axes)], dim=-1).float() / res
            )  # [V, D], x fastest
            levels.append(vertex @ coeffs[:-1] + coeffs[-1])
        planes.append(torch.cat(levels))
    return torch.stack(planes).unsqueeze(-1).expand(-1, -1, layout.n_features).reshape(enc.embeddings.shape)


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpu", marks=needs_compiler)])
@pytest.mark.parametrize("kind", ENCODERS)
def test_linear_function_is_reproduced(kind, backend):
    """Bi/trilinear interpolation is exact for linear functions: a linear table gives back the function."""
    enc = ENCODERS[kind](
        n_levels=3,
        n_features=2,
        log2_table_size=12,
        base_resolution=4,
        max_resolution=15,
        bound=2.0,
        backend=backend,
    )
    dim = enc.layout.dim
    coeffs = torch.tensor([0.5, -1.25, 2.0, 0.25][:dim] + [0.75])
    with torch.no_grad():
        enc.embeddings.copy_(linear_table(enc, coeffs))
    xyz = sample_points(200, 2.0, seed=7)
    u = ((xyz + 2.0) / 4.0).clamp(0.0, 1.0)
    out = enc(xyz).reshape(-1, enc.layout.n_planes, enc.layout.n_levels, enc.layout.n_features)
    for p, axes in enumerate(enc.layout.axes):
        expected = u[:, list(axes)] @ coeffs[:-1] + coeffs[-1]  # [N]
        torch.testing.assert_close(
            out[:, p], expected[:, None, None].expand_as(out[:, p]), rtol=1e-5, atol=1e-5
        )


def test_layout_and_shapes():
    enc = TriplaneHashEncoder()
    layout = enc.layout
    assert layout.resolutions == level_resolutions(12, 16, 512)
    assert layout.resolutions[0] == 16 and layout.resolutions[-1] == 512
    sizes = [b - a for a, b in zip(layout.offsets[:-1], layout.offsets[1:], strict=True)]
    assert sizes == [min(2**17, (r + 1) ** 2) for r in layout.resolutions]
    assert sizes[0] == 17**2 and sizes[-1] == 2**17  # coarse levels dense, fine levels hashed
    assert enc.output_dim == 36 and enc.embeddings.shape == (3, layout.offsets[-1], 1)
    assert enc.embeddings.abs().max() <= 1e-4
    assert enc(torch.rand(10, 3)).shape == (10, 36)

    grid = HashEncoder3D(n_levels=8, n_features=4, log2_table_size=12)
    assert grid.output_dim == 32 and grid.embeddings.shape == (grid.layout.offsets[-1], 4)
    assert grid.layout.resolutions[0] == 16 and grid.layout.resolutions[-1] == 2048
    assert grid(torch.rand(5, 3)).shape == (5, 32)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        TriplaneHashEncoder(n_features=3)
    with pytest.raises(ValueError):
        TriplaneHashEncoder()(torch.rand(4, 2))
    with pytest.raises(BackendUnavailableError):
        HashEncoder3D(backend="metal")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
@pytest.mark.parametrize("kind", ENCODERS)
def test_explicit_cuda_backend_unavailable(kind):
    enc = ENCODERS[kind](n_levels=2, backend="cuda")  # constructing resolves and builds nothing
    with pytest.raises(BackendUnavailableError):
        enc(torch.rand(4, 3))


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("n_features", [1, 2])
@pytest.mark.parametrize("table", TABLE_SIZES)
@pytest.mark.parametrize("n", [1, 37, 5000])
def test_cuda_kernel_matches_reference(kind, n_features, table, n):
    enc = make_encoder(kind, n_features, table, backend="cuda").cuda()
    if enc.choice(torch.device("cuda")).impl != "instag-cuda":
        pytest.skip("hash_encode runs on tinycudann here, whose layout is its own")
    assert_matches_reference(enc, sample_points(n, enc.layout.bound, seed=n).cuda())


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("table", TABLE_SIZES)
def test_cuda_kernel_non_finite_and_huge_points_stay_in_bounds(kind, table):
    enc = make_encoder(kind, 2, table, backend="cuda").cuda()
    if enc.choice(torch.device("cuda")).impl != "instag-cuda":
        pytest.skip("hash_encode runs on tinycudann here, whose layout is its own")
    xyz = hostile_points(enc.layout.bound).cuda()
    assert torch.isfinite(enc(xyz)).all()
    assert_matches_reference(enc, xyz)


@needs_cuda
@pytest.mark.cuda
def test_cuda_kernel_default_triplane():
    enc = TriplaneHashEncoder(backend="cuda").cuda()
    with torch.no_grad():
        enc.embeddings.normal_()
    assert_matches_reference(enc, sample_points(20000, 1.0, seed=9).cuda())
