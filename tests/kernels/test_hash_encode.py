"""Hash-grid encoders: kernels against the pure-torch reference on each device, the reference against finite
differences, known answers, layout and backend selection."""

from __future__ import annotations

import pytest
import torch
from kernel_tolerances import assert_close

from instag.errors import BackendUnavailableError
from instag.kernels import backend as kernel_backend
from instag.kernels.hash_encode import HashEncoder3D, TriplaneHashEncoder
from instag.kernels.hash_encode_ref import grid_encode_ref, level_resolutions

ENCODERS = {"triplane": TriplaneHashEncoder, "grid3d": HashEncoder3D}
# Small tables hash every level but the first; large ones keep every level dense; medium mixes both.
TABLE_SIZES = {"hashed": 6, "mixed": 10, "dense": 16}


def kernel_for(device: torch.device, kind: str = "triplane") -> str:
    """The explicit backend of our kernel on `device` (cpu or cuda), skipping when it cannot run here."""
    impl, reason = kernel_backend.available(ENCODERS[kind].op, device.type)
    if impl is None:
        pytest.skip(f"no {device.type} kernel here: {reason}")
    return device.type


def make_encoder(kind: str, n_features: int, table: str, device: torch.device, bound: float = 0.7):
    """A small encoder on `device` with our kernel as its backend and unit-scale random tables."""
    backend = kernel_for(device, kind)
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
    return enc.to(device)


def table3(enc) -> torch.Tensor:
    """The encoder's table as [planes, entries, features], the reference's layout."""
    return enc.embeddings if enc.embeddings.dim() == 3 else enc.embeddings.unsqueeze(0)


def sample_points(n: int, bound: float, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Random points [n, 3] in [-1.1 bound, 1.1 bound] (some clamped), with coordinates exactly on ±bound; drawn
    on the CPU, so that every device sees the same points."""
    gen = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(n, 3, generator=gen) * 2.2 - 1.1) * bound
    if n >= 4:
        xyz[0, 0], xyz[1, 1], xyz[2, 2] = bound, -bound, bound
        xyz[3] = torch.tensor([1.05, -1.05, 0.0]) * bound  # slightly outside on two axes
    return xyz.to(device)


def encode_with_grads(enc, xyz: torch.Tensor, encode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Output, table gradient and point gradient for a fixed random upstream gradient."""
    xyz = xyz.clone().requires_grad_()
    out = encode(xyz)
    # Drawn on the CPU (the same numbers on every device) and moved to the output's device: a CPU gradient for
    # a CUDA output is an error in autograd.
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device)
    enc.embeddings.grad = None
    g_table, g_xyz = torch.autograd.grad(out, [enc.embeddings, xyz], grad_out)
    return out.detach(), g_table, g_xyz


def assert_matches_reference(enc, xyz: torch.Tensor) -> None:
    out, g_table, g_xyz = encode_with_grads(enc, xyz, enc)
    ref, r_table, r_xyz = encode_with_grads(
        enc, xyz, lambda x: grid_encode_ref(x, table3(enc), enc.layout).to(x.device)
    )
    assert out.device == ref.device == xyz.device
    assert_close(out, ref, "output")
    assert_close(g_table, r_table, "summed", scale=max(1.0, xyz.shape[0] ** 0.5))  # up to N terms an entry
    assert_close(g_xyz, r_xyz, "gradient", scale=max(1.0, r_xyz.abs().max().item()))


@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("n_features", [1, 2])
@pytest.mark.parametrize("table", TABLE_SIZES)
@pytest.mark.parametrize("n", [1, 37, 2000])
def test_kernel_matches_reference(kind, n_features, table, n, device):
    enc = make_encoder(kind, n_features, table, device)
    assert_matches_reference(enc, sample_points(n, enc.layout.bound, seed=n, device=device))


@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("n_features", [4, 8])
def test_kernel_wide_features(kind, n_features, device):
    enc = make_encoder(kind, n_features, "mixed", device)
    assert_matches_reference(enc, sample_points(300, enc.layout.bound, seed=11, device=device))


@pytest.mark.parametrize("kind", ENCODERS)
def test_kernel_table_gradient_only(kind, device):
    """Without xyz.requires_grad the kernel skips the point gradient and still gets the table's right."""
    enc = make_encoder(kind, 2, "mixed", device)
    xyz = sample_points(500, enc.layout.bound, seed=3, device=device)
    (g_table,) = torch.autograd.grad(enc(xyz).square().sum(), [enc.embeddings])
    (r_table,) = torch.autograd.grad(
        grid_encode_ref(xyz, table3(enc), enc.layout).square().sum(), [enc.embeddings]
    )
    assert_close(g_table, r_table, "summed")


@pytest.mark.parametrize("kind", ENCODERS)
def test_kernel_default_sizes(kind, device):
    """The production hyper-parameters (12 or 16 levels, 2^17 or 2^19 tables, hashed fine levels)."""
    enc = ENCODERS[kind](backend=kernel_for(device, kind)).to(device)
    with torch.no_grad():
        enc.embeddings.normal_()
    assert_matches_reference(enc, sample_points(3000, 1.0, seed=5, device=device))


@pytest.mark.parametrize("kind", ENCODERS)
def test_empty_input(kind, device):
    enc = make_encoder(kind, 1, "mixed", device)
    out = enc(torch.zeros(0, 3, device=device))
    assert out.shape == (0, enc.output_dim) and out.device == device
    (g_table,) = torch.autograd.grad(out.sum(), [enc.embeddings])
    assert torch.count_nonzero(g_table) == 0


def hostile_points(bound: float) -> torch.Tensor:
    """NaN, ±inf and huge coordinates, alone and mixed with ordinary ones, and ordinary points between them."""
    nan, inf, big = float("nan"), float("inf"), 3.0e38
    rows = [[nan, nan, nan], [inf, inf, inf], [-inf, -inf, -inf], [big, -big, big], [nan, 0.1, -inf],
            [inf, nan, 0.2], [-0.3, big, nan], [1e30, -1e30, 0.0], [0.1, 0.2, 0.3]]
    return torch.cat([torch.tensor(rows), sample_points(16, bound, seed=7)])


@pytest.mark.parametrize("kind", ENCODERS)
@pytest.mark.parametrize("table", TABLE_SIZES)
def test_kernel_non_finite_and_huge_points_stay_in_bounds(kind, table, device):
    """Such points once indexed outside the table (int of NaN): NaN counts as the grid's lower corner, ±inf and
    huge values clamp to the edges, exactly as in the reference; no gradient reaches those coordinates."""
    enc = make_encoder(kind, 2, table, device)
    xyz = hostile_points(enc.layout.bound).to(device)
    out = enc(xyz)
    assert torch.isfinite(out).all()
    assert_matches_reference(enc, xyz)
    corner = enc(torch.full((1, 3), -enc.layout.bound, device=device))
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
    """A table (CPU, the encoder's table shape) whose entry at vertex v of level l is coeffs[:-1] · (v / res_l) + coeffs[-1], on every plane.

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


@pytest.mark.parametrize("impl", ["torch", "kernel"])
@pytest.mark.parametrize("kind", ENCODERS)
def test_linear_function_is_reproduced(kind, impl, device):
    """Bi/trilinear interpolation is exact for linear functions: a linear table gives back the function."""
    backend = "torch" if impl == "torch" else kernel_for(device, kind)
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
    enc.to(device)
    xyz = sample_points(200, 2.0, seed=7)
    u = ((xyz + 2.0) / 4.0).clamp(0.0, 1.0)
    out = enc(xyz.to(device)).cpu().reshape(-1, enc.layout.n_planes, enc.layout.n_levels, enc.layout.n_features)
    for p, axes in enumerate(enc.layout.axes):
        expected = u[:, list(axes)] @ coeffs[:-1] + coeffs[-1]  # [N]
        assert_close(out[:, p], expected[:, None, None].expand_as(out[:, p]), "output")


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


# --- one state dict on every device; tinycudann's is its own -------------------------------------------------

@pytest.mark.parametrize("kind", ENCODERS)
def test_state_dict_is_the_same_before_and_after_a_forward(kind, device):
    """The default path keeps one table and makes no submodule at a forward (tinycudann's grid once did), so a
    fresh model loads what a trained one saved, strictly."""
    enc = ENCODERS[kind](n_levels=2, log2_table_size=8, backend="auto").to(device)
    before = {k: (v.shape, v.dtype) for k, v in enc.state_dict().items()}
    enc(torch.rand(8, 3, device=device)).sum().backward()
    assert {k: (v.shape, v.dtype) for k, v in enc.state_dict().items()} == before == {
        "embeddings": (enc.embeddings.shape, torch.float32)
    }


@pytest.mark.parametrize("kind", ENCODERS)
def test_state_saved_on_a_device_loads_on_the_cpu(kind, device, tmp_path):
    """Saved as safetensors (what avatars and checkpoints hold) on `device`, loaded onto the CPU (as
    `safetensors.torch.load_file` does by default: CUDA → CPU on a GPU machine), a fresh encoder gives the same
    encoding."""
    from safetensors.torch import load_file, save_file

    enc = make_encoder(kind, 2, "mixed", device)
    xyz = sample_points(50, enc.layout.bound, seed=2)
    save_file(enc.state_dict(), str(tmp_path / "enc.safetensors"))
    loaded = load_file(str(tmp_path / "enc.safetensors"))
    assert all(t.device.type == "cpu" for t in loaded.values())
    fresh = ENCODERS[kind](n_levels=4, n_features=2, log2_table_size=TABLE_SIZES["mixed"], base_resolution=3,
                           max_resolution=40, bound=0.7, backend="torch")
    fresh.load_state_dict(loaded, strict=True)
    with torch.no_grad():
        assert_close(fresh(xyz), enc(xyz.to(device)).cpu(), "output")


def tcnn_state(n_params: int) -> dict[str, torch.Tensor]:
    return {"embeddings": torch.zeros(HashEncoder3D(n_levels=2, log2_table_size=8).embeddings.shape),
            "tcnn.encoding.params": torch.arange(float(n_params))}


def test_tinycudann_state_is_refused_elsewhere_with_the_reason():
    enc = HashEncoder3D(n_levels=2, log2_table_size=8)
    with pytest.raises(RuntimeError, match="tinycudann.*loads only with backend 'tinycudann'"):
        enc.load_state_dict(tcnn_state(6), strict=True)


def test_tinycudann_state_loads_into_a_tinycudann_encoder(monkeypatch):
    """The grid a tinycudann state needs is made at load time (without it, strict loading refused `tcnn.*`).
    tinycudann cannot be installed here: a stand-in module with its `Encoding`'s one parameter."""
    import sys
    import types

    class Encoding(torch.nn.Module):
        def __init__(self, n_input_dims: int, config: dict, dtype: torch.dtype) -> None:
            super().__init__()
            self.params = torch.nn.Parameter(torch.zeros(6))

    monkeypatch.setitem(sys.modules, "tinycudann", types.SimpleNamespace(Encoding=Encoding))
    enc = HashEncoder3D(n_levels=2, log2_table_size=8, backend="tinycudann")
    enc.load_state_dict(tcnn_state(6), strict=True)
    assert torch.equal(enc.tcnn.encoding.params.detach(), torch.arange(6.0))
