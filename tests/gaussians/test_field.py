import pytest
import torch
from safetensors.torch import load_file, save_file

from instag.config.model import GaussianConfig, GaussianLRConfig
from instag.gaussians import GaussianField, Region
from instag.gaussians.sh import rgb_to_sh_dc, sh_to_rgb


def make_field(n: int = 40, sh_degree: int = 1, seed: int = 0) -> GaussianField:
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, 3, generator=g) * 2 - 1
    colors = torch.rand(n, 3, generator=g)
    region = (torch.arange(n) % 3).to(torch.uint8)
    return GaussianField.from_points(points, colors, GaussianConfig(sh_degree=sh_degree), region=region)


def test_from_points_sets_colours_opacity_and_scale():
    points = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    colors = torch.tensor([[0.1, 0.2, 0.3]]).repeat(4, 1)
    field = GaussianField.from_points(points, colors, GaussianConfig(init_opacity=0.25, init_knn=1))
    assert torch.allclose(field.opacities, torch.full((4,), 0.25))
    assert torch.allclose(field.colors(field.means, torch.zeros(3)), colors, atol=1e-6)
    # The origin's nearest neighbour is 1 away: its initial scale is 1 on every axis.
    assert torch.allclose(field.scales[0], torch.ones(3))
    assert (field.region == int(Region.FACE)).all()


def test_sh_dc_round_trip_and_view_dependence():
    rgb = torch.rand(5, 3)
    rest = torch.zeros(5, 3, 3)
    dirs = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    assert torch.allclose(sh_to_rgb(rgb_to_sh_dc(rgb), rest, dirs), rgb, atol=1e-6)
    rest[:, 1, :] = 0.5  # the z coefficient of degree 1
    up, down = torch.tensor([[0.0, 0, 1]]).repeat(5, 1), torch.tensor([[0.0, 0, -1]]).repeat(5, 1)
    assert (sh_to_rgb(rgb_to_sh_dc(rgb), rest, up) > sh_to_rgb(rgb_to_sh_dc(rgb), rest, down)).all()


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_sh_colour_is_the_basis_weighted_sum_of_the_coefficients(degree):
    from instag.gaussians.sh import _basis, num_sh_coeffs

    gen = torch.Generator().manual_seed(degree)
    k = num_sh_coeffs(degree)
    dc, rest = torch.randn(7, 3, generator=gen), torch.randn(7, k - 1, 3, generator=gen)
    dirs = torch.nn.functional.normalize(torch.randn(7, 3, generator=gen), dim=-1)
    basis = _basis(dirs, degree)  # [7, k]
    want = torch.stack([sum(basis[i, j] * torch.cat([dc[i : i + 1], rest[i]])[j] for j in range(k))
                        for i in range(7)]) + 0.5
    assert torch.allclose(sh_to_rgb(dc, rest, dirs), want.clamp_min(0.0), atol=1e-5)


def _adam_step(field: GaussianField, optimizer: torch.optim.Optimizer) -> None:
    loss = sum((p**2).sum() for p in field.parameters())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _assert_optimizer_matches(field: GaussianField, optimizer: torch.optim.Optimizer) -> None:
    params = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for name, p in field.named_parameters():
        assert id(p) in params, f"{name} is not the parameter the optimizer holds"
        state = optimizer.state[p]
        assert state["exp_avg"].shape == p.shape and state["exp_avg_sq"].shape == p.shape
    assert len(optimizer.state) == len(list(field.parameters()))


def test_densify_clones_small_splits_large_and_keeps_optimizer_state():
    torch.manual_seed(0)
    field = make_field(n=6)
    with torch.no_grad():
        field.log_scales[:3] = -6.0  # small: cloned
        field.log_scales[3:] = -0.5  # large relative to the extent: split
        field.opacity_logits.fill_(2.0)
    optimizer = torch.optim.Adam(field.param_groups(GaussianLRConfig(), extent=1.0), eps=1e-15)
    _adam_step(field, optimizer)
    moments_before = optimizer.state[field.means]["exp_avg"].clone()
    means_before = field.means.detach().clone()
    scales_before = field.scales.detach().clone()

    grad = torch.zeros(6, 2)
    grad[[0, 3]] = 1.0  # only Gaussians 0 (small) and 3 (large) pass the threshold
    field.accumulate_densify_stats(grad, torch.full((6,), 5), width=64, height=64)
    cfg = GaussianConfig(sh_degree=1, prune_scale_fraction=10.0)
    report = field.densify_and_prune(optimizer, cfg, extent=1.0)

    assert (report.cloned, report.split, report.pruned) == (1, 1, 0)
    assert field.num_gaussians == 6 + 1 + cfg.split_count - 1 == report.total
    for name, p in field.named_parameters():
        assert p.shape[0] == field.num_gaussians, name
    assert field.region.shape[0] == field.grad_accum.shape[0] == field.num_gaussians
    _assert_optimizer_matches(field, optimizer)
    kept = [0, 1, 2, 4, 5]  # parent 3 was replaced by its children
    assert torch.equal(field.means[:5].detach(), means_before[kept])
    assert torch.equal(optimizer.state[field.means]["exp_avg"][:5], moments_before[kept])
    assert torch.equal(optimizer.state[field.means]["exp_avg"][5:], torch.zeros(3, 3))
    # The clone copies Gaussian 0; the children are shrunk copies of Gaussian 3.
    assert torch.equal(field.means[5].detach(), means_before[0])
    assert torch.allclose(field.scales[6:], scales_before[3] / cfg.split_shrink, rtol=1e-5)
    assert field.grad_accum.abs().sum() == 0
    _adam_step(field, optimizer)  # training goes on with the new sizes


def test_prune_drops_transparent_and_oversized():
    field = make_field(n=10)
    with torch.no_grad():
        field.log_scales.fill_(-5.0)
        field.opacity_logits.fill_(3.0)
        field.opacity_logits[2] = -10.0  # transparent
        field.log_scales[7] = 2.0  # too big
    optimizer = torch.optim.Adam(field.param_groups(GaussianLRConfig(), extent=1.0))
    _adam_step(field, optimizer)
    report = field.densify_and_prune(optimizer, GaussianConfig(sh_degree=1), extent=1.0)
    assert report.pruned == 2 and field.num_gaussians == 8
    _assert_optimizer_matches(field, optimizer)


def test_densify_respects_budget():
    field = make_field(n=10)
    with torch.no_grad():
        field.log_scales.fill_(-6.0)
        field.opacity_logits.fill_(3.0)
    field.accumulate_densify_stats(torch.ones(10, 2), torch.ones(10), 32, 32)
    report = field.densify_and_prune(None, GaussianConfig(sh_degree=1, max_gaussians=13), extent=1.0)
    assert report.cloned == 3 and field.num_gaussians == 13


def test_reset_opacity_caps_and_zeroes_moments():
    field = make_field()
    optimizer = torch.optim.Adam(field.param_groups(GaussianLRConfig(), extent=1.0))
    with torch.no_grad():
        field.opacity_logits.fill_(4.0)
    _adam_step(field, optimizer)
    field.reset_opacity(optimizer, ceiling=0.01)
    assert field.opacities.max() <= 0.01 + 1e-6
    assert optimizer.state[field.opacity_logits]["exp_avg"].abs().sum() == 0
    _assert_optimizer_matches(field, optimizer)


def test_safetensors_round_trip(tmp_path):
    field = make_field(n=17, sh_degree=2)
    save_file(field.state_dict(), tmp_path / "g.safetensors")
    back = GaussianField.from_tensors(load_file(tmp_path / "g.safetensors"))
    assert back.sh_degree == 2 and back.num_gaussians == 17
    for name, value in field.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name


def test_with_motion_offsets_a_copy():
    field = make_field(n=5)
    d = torch.full((5, 3), 0.5)
    moved = field.with_motion(d)
    assert torch.allclose(moved.means, field.means + d)
    assert torch.equal(moved.log_scales, field.log_scales.detach())


def test_bad_sizes_are_refused():
    with pytest.raises(Exception, match="sh_degree"):
        GaussianField(3, sh_degree=4)
    with pytest.raises(Exception, match=r"\[N, 3\]"):
        GaussianField.from_points(torch.zeros(3, 2), torch.zeros(3, 2), GaussianConfig())


def test_concatenate_keeps_every_gaussian_in_order():
    a, b = make_field(n=4, seed=1), make_field(n=3, seed=2)
    both = GaussianField.concatenate(a, b)
    assert both.num_gaussians == 7
    assert torch.equal(both.means[4:].detach(), b.means.detach())
    assert torch.equal(both.region[:4], a.region)
    with pytest.raises(Exception, match="SH degrees"):
        GaussianField.concatenate(a, make_field(n=2, sh_degree=0))
