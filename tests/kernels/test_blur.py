"""The separable blur (the photometric loss's SSIM window) on each device against its pure-torch twin on the CPU:
values and gradients, images smaller than the window, uneven taps; and what its zero padding means."""

from __future__ import annotations

import pytest
import torch
from kernel_tolerances import assert_close

from instag.kernels.blur import blur_ref, gaussian_taps, separable_blur


def _taps(kind: str, generator: torch.Generator) -> torch.Tensor:
    if kind == "gaussian":
        return gaussian_taps(11, 1.5, torch.float32, torch.device("cpu"))
    if kind == "uneven":  # not symmetric: the backward pass must reverse the taps
        return torch.rand(7, generator=generator)
    return torch.tensor([0.7])


@pytest.mark.parametrize("taps_kind", ["gaussian", "uneven", "one"])
@pytest.mark.parametrize("shape", [(15, 64, 48), (2, 7, 3), (3, 4, 30), (1, 30, 4), (1, 1, 1)])
def test_blur_matches_reference(shape, taps_kind, device):
    g = torch.Generator().manual_seed(sum(shape))
    images = torch.rand(shape, generator=g).to(device).requires_grad_(True)
    taps = _taps(taps_kind, g).to(device)
    weight = torch.randn(shape, generator=g)
    # The twin runs on the CPU: on a GPU, where separable_blur is the twin itself, this compares devices.
    images_cpu = images.detach().cpu().requires_grad_(True)
    ours, ref = separable_blur(images, taps), blur_ref(images_cpu, taps.cpu())
    assert ours.shape == ref.shape == images.shape and ours.device == images.device
    assert_close(ours.cpu(), ref, "blurred")
    grad_ours, = torch.autograd.grad((ours * weight.to(device)).sum(), images)
    grad_ref, = torch.autograd.grad((ref * weight).sum(), images_cpu)
    assert_close(grad_ours.cpu(), grad_ref, "blurred", scale=float(weight.abs().max()))


def test_blur_pads_with_zeros_and_keeps_a_constant_inside(device):
    """A constant image stays constant where the whole window lies inside it, and fades towards the edges, where
    the window reaches past the image (zero padding, as the SSIM of 3DGS)."""
    g = gaussian_taps(11, 1.5, torch.float32, torch.device("cpu"))
    out = separable_blur(torch.ones(1, 32, 40, device=device), g.to(device))[0].cpu()
    torch.testing.assert_close(out[5:-5, 5:-5], torch.ones(22, 30))
    inside = g[5:].sum()  # at the first row, the taps that fall inside the image
    torch.testing.assert_close(out[0, 5:-5], inside.expand(30))
    torch.testing.assert_close(out[0, 0], inside * inside)  # a corner: inside along both axes
