import pytest
import torch
from skimage.metrics import structural_similarity

from instag.train.losses import (
    aligner_regulariser,
    anisotropy_regulariser,
    depth_offset_loss,
    dssim_loss,
    l1_loss,
    lip_depth_loss,
    lip_landmark_loss,
    lip_width,
    motion_regulariser,
    negative_contrast_loss,
    normal_cosine_loss,
    photometric_loss,
    scale_invariant_depth_loss,
    ssim_map,
)


def test_contrast_is_zero_for_orthogonal_and_opposite_residuals():
    current = torch.tensor([[1.0, 0, 0], [0, 2.0, 0]])
    orthogonal = torch.tensor([[[0.0, 1, 0], [0, 0, 3.0]]])
    opposite = -current.unsqueeze(0) * 2.0
    assert negative_contrast_loss(current, orthogonal) == 0
    assert negative_contrast_loss(current, opposite) == 0
    assert negative_contrast_loss(current, torch.cat([orthogonal, opposite])) == 0


def test_contrast_is_positive_and_grows_for_aligned_residuals():
    current = torch.tensor([[1.0, 0, 0], [0, 2.0, 0]])
    aligned = current.unsqueeze(0) * 0.5
    loss = negative_contrast_loss(current, aligned)
    assert loss > 0
    assert torch.isclose(loss, torch.tensor((0.5 + 2.0) / 2))  # mean of the dot products 0.5 and 2
    assert negative_contrast_loss(current, aligned * 2) > loss


def test_contrast_gradient_flows_only_through_the_current_identity():
    current = torch.randn(6, 3, requires_grad=True)
    others = (current.detach().unsqueeze(0) + 0.1 * torch.randn(2, 6, 3)).requires_grad_(True)
    negative_contrast_loss(current, others).backward()
    assert current.grad is not None and current.grad.abs().sum() > 0
    assert others.grad is None
    lone = torch.randn(4, 3, requires_grad=True)
    assert negative_contrast_loss(lone, torch.zeros(0, 4, 3)) == 0


def test_dssim_is_zero_for_identical_images_and_positive_otherwise():
    torch.manual_seed(0)
    img = torch.rand(24, 20, 3)
    assert torch.allclose(ssim_map(img, img), torch.ones(24, 20, 3), atol=1e-5)
    assert dssim_loss(img, img).abs() < 1e-6
    assert dssim_loss(img, torch.rand(24, 20, 3)) > 0.1


def test_ssim_matches_scikit_image_away_from_the_border():
    """scikit-image's Gaussian SSIM (σ 1.5, 11 taps, population covariance) as an independent reference; it pads
    by reflection where ours pads with zeros as 3DGS does, so the 5-pixel border is left out."""
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(40, 36, 3, generator=gen)
    b = (a + 0.2 * torch.rand(40, 36, 3, generator=gen)).clamp(0, 1)
    _, reference = structural_similarity(a.double().numpy(), b.double().numpy(), gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0, channel_axis=-1, full=True)
    ours = ssim_map(a, b, window=11, sigma=1.5)
    assert ours.shape == (40, 36, 3)
    assert torch.allclose(ours[5:-5, 5:-5].double(), torch.from_numpy(reference)[5:-5, 5:-5], atol=2e-5)
    assert (ours[5:-5, 5:-5] < 0.99).float().mean() > 0.5  # the images differ enough for the comparison to mean something


def test_masked_photometric_loss_ignores_pixels_outside_the_mask():
    torch.manual_seed(0)
    target = torch.rand(16, 16, 3)
    pred = target.clone()
    pred[:, 8:] = 1.0 - pred[:, 8:]  # wrong only in the right half
    left = torch.zeros(16, 16, 1)
    left[:, :4] = 1.0
    assert l1_loss(pred, target, left) == 0
    assert l1_loss(pred, target) > 0
    right = 1.0 - left
    assert photometric_loss(pred, target, right, 0.2) > photometric_loss(pred, target, left, 0.2)
    assert l1_loss(pred, target, torch.zeros(16, 16, 1)) == 0  # empty mask: zero, not NaN


def test_scale_invariant_depth_is_invariant_to_scale_and_shift_of_the_prediction():
    torch.manual_seed(0)
    prior = torch.rand(12, 12, 1) + 1.0
    pred = prior * 0.7 + 0.1 * torch.rand(12, 12, 1)
    mask = (torch.rand(12, 12, 1) > 0.3).float()
    base = scale_invariant_depth_loss(pred, prior, mask)
    assert base > 0
    for scale, shift in [(3.0, 0.0), (0.01, 5.0), (1.0, -2.0), (250.0, 17.0)]:
        assert torch.isclose(scale_invariant_depth_loss(pred * scale + shift, prior, mask), base, rtol=1e-3)
    assert scale_invariant_depth_loss(prior * 4.0 - 1.0, prior, mask) < 1e-10


def test_depth_offset_sees_the_whole_face_shifted_in_depth_where_the_shape_loss_cannot():
    torch.manual_seed(0)
    prior = 0.5 + 0.02 * torch.rand(12, 12, 1)  # a face ~0.5 m away, 2 cm of relief
    mask = (torch.rand(12, 12, 1) > 0.3).float()
    unit = torch.tensor(0.05)
    assert depth_offset_loss(prior, prior, mask, unit) == 0
    deeper = prior + 0.0065  # the same face 6.5 mm too deep
    assert scale_invariant_depth_loss(deeper, prior, mask) < 1e-10  # invisible to the shape term
    assert depth_offset_loss(deeper, prior, mask, unit) == pytest.approx((0.0065 / 0.05) ** 2, rel=1e-3)
    # Only the masked pixels count: a gap outside the mask costs nothing.
    outside = prior + 0.0065 * (1.0 - mask)
    assert depth_offset_loss(outside, prior, mask, unit) < 1e-12
    # Its gradient pulls every masked pixel's depth back towards the camera, and no other.
    moved = deeper.clone().requires_grad_(True)
    depth_offset_loss(moved, prior, mask, unit).backward()
    assert (moved.grad[mask > 0] > 0).all() and (moved.grad[mask == 0] == 0).all()
    assert lip_width(torch.tensor([[0.01, 0.0, 0.0], [0.06, 0.01, 0.003]])) == pytest.approx(0.05)


def test_normal_cosine_loss():
    n = torch.nn.functional.normalize(torch.randn(5, 5, 3), dim=-1)
    assert normal_cosine_loss(n * 3.0, n).abs() < 1e-6
    assert torch.isclose(normal_cosine_loss(-n, n), torch.tensor(2.0))


def test_regularisers():
    assert motion_regulariser(torch.zeros(4, 3), torch.zeros(2, 3)) == 0
    assert torch.isclose(motion_regulariser(torch.ones(4, 3)), torch.tensor(3.0))
    assert aligner_regulariser(torch.zeros(5, 3), torch.ones(5, 3)) == 0
    assert aligner_regulariser(torch.full((5, 3), 0.1), torch.ones(5, 3)) > 0
    iso = torch.zeros(3, 3)
    needle = torch.tensor([[0.0, 0.0, 5.0]])
    assert anisotropy_regulariser(iso, 10.0) == 0
    assert anisotropy_regulariser(needle, 10.0) == pytest.approx(5.0 - 2.302585, rel=1e-5)


def _project(xyz, viewmat, K):
    cam = xyz @ viewmat[:3, :3].T + viewmat[:3, 3]
    pix = cam @ K.T
    return pix[:, :2] / pix[:, 2:3]


def test_lip_landmark_loss_compares_the_centred_lip_shape_in_image_sides():
    g = torch.Generator().manual_seed(0)
    lips = torch.rand(12, 3, generator=g) * 0.05
    viewmat = torch.eye(4)
    viewmat[2, 3] = 0.5
    K = torch.tensor([[400.0, 0.0, 128.0], [0.0, 400.0, 128.0], [0.0, 0.0, 1.0]])
    tracked = _project(lips, viewmat, K)
    assert lip_landmark_loss(lips, viewmat, K, tracked, 256) < 1e-6
    # A head-pose error shifts every lip point alike: centring ignores it.
    assert lip_landmark_loss(lips, viewmat, K, tracked + torch.tensor([7.0, -3.0]), 256) < 1e-5
    # Lips opened by 2.56 px more than the model's: half the points sit 1.28 px off after centring.
    opened = tracked.clone()
    opened[:6, 1] += 2.56
    loss = lip_landmark_loss(lips, viewmat, K, opened, 256)
    assert loss == pytest.approx(1.28 / 256, rel=1e-4)
    # Its gradient moves the lip vertices (what the motion field is trained through).
    moved = lips.clone().requires_grad_(True)
    lip_landmark_loss(moved, viewmat, K, opened, 256).backward()
    assert moved.grad[:6, 1].abs().sum() > 0


def test_lip_depth_loss_measures_the_mean_depth_gap_in_lip_widths():
    g = torch.Generator().manual_seed(0)
    mesh = torch.rand(40, 3, generator=g) * torch.tensor([0.05, 0.02, 0.01])  # 5 cm wide lips
    width = mesh[:, 0].max() - mesh[:, 0].min()
    gaussians = mesh[torch.randint(40, (300,), generator=g)] + torch.randn(300, 3, generator=g) * 1e-3
    gaussians -= gaussians.mean(0) - mesh.mean(0)  # same centroid: nothing to correct
    assert lip_depth_loss(gaussians, mesh) < 1e-10
    # Lips moved sideways or down keep their depth: not this term's business.
    assert lip_depth_loss(gaussians + torch.tensor([0.01, 0.004, 0.0]), mesh) < 1e-10
    # 6 mm into the face.
    pushed = gaussians + torch.tensor([0.0, 0.0, 0.006])
    assert lip_depth_loss(pushed, mesh) == pytest.approx(float((0.006 / width) ** 2), rel=1e-4)
    # Its gradient pulls every lip Gaussian back towards the camera (−z).
    moved = pushed.clone().requires_grad_(True)
    lip_depth_loss(moved, mesh).backward()
    assert (moved.grad[:, 2] > 0).all() and moved.grad[:, :2].abs().max() == 0
