"""How close a kernel must come to its pure-torch twin, per kind of quantity, device and dtype, in one place.

A plain module with a unique name (like instag_testing), imported by the kernel tests. `atol` is for
unit-scale values; a caller whose values are larger passes `scale` (their magnitude, or √N for sums of N terms).
A first run on a new device that needs other numbers changes them here, not in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tol:
    rtol: float
    atol: float


F32, F64 = torch.float32, torch.float64

_TABLE: dict[tuple[str, str, torch.dtype], Tol] = {
    # Hash-grid outputs: sums of at most 8 products of unit-scale values; float32 rounding only (CUDA may fuse
    # multiply-adds where the C++ build does not: an ulp or two).
    ("output", "cpu", F32): Tol(1e-5, 1e-5),
    ("output", "cuda", F32): Tol(1e-5, 1e-5),
    # Hash-grid table gradients: up to N contributions per entry summed in another order (atomics on CUDA,
    # threads on CPU); callers scale atol by √N.
    ("summed", "cpu", F32): Tol(1e-4, 1e-4),
    ("summed", "cuda", F32): Tol(1e-4, 1e-4),
    # Hash-grid point gradients: products with res / (2 bound) per level; callers scale atol by their magnitude.
    ("gradient", "cpu", F32): Tol(1e-4, 1e-5),
    ("gradient", "cuda", F32): Tol(1e-4, 1e-5),
    # Composited images and alpha (our compositor against the reference; same projection, float32 blending).
    ("composited", "cpu", F32): Tol(1e-3, 2e-5),
    ("composited", "cpu", F64): Tol(1e-3, 1e-5),  # the C++ compositor works in float32 whatever comes in
    # Rasterizer parameter gradients, atol scaled by the largest expected magnitude.
    ("raster_gradient", "cpu", F32): Tol(1e-3, 1e-4),
    # A separable blur and its gradient: at most 2·K products of unit-scale values summed in another order.
    ("blurred", "cpu", F32): Tol(1e-5, 1e-5),
    ("blurred", "cuda", F32): Tol(1e-5, 1e-5),
}


@dataclass(frozen=True)
class GsplatParity:
    """gsplat against our reference: another algorithm, not only another rounding. It bounds a Gaussian by an
    axis-aligned 3.33σ box where we use a 3σ square, and clamps alpha at 0.999 where we clamp at 0.99, so
    pixels near tile edges and Gaussians at the border may differ: the images are compared on average."""

    culled_fraction: float = 0.01  # Gaussians culled by one and not the other
    means2d_atol: float = 1e-3
    depths_atol: float = 1e-5
    image_mean: float = 1e-3  # mean |Δ| of image and alpha
    image_max: float = 5e-2
    depth_mean: float = 1e-2  # mean |Δdepth| weighted by alpha
    grad_rel: float = 5e-2  # ‖Δgrad‖ / ‖grad‖ per parameter


GSPLAT = GsplatParity()


def tol(kind: str, device: torch.device | str, dtype: torch.dtype = F32) -> Tol:
    key = (kind, torch.device(device).type, dtype)
    if key not in _TABLE:
        raise KeyError(f"no tolerance for {key}: add one to tests/kernel_tolerances.py")
    return _TABLE[key]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, kind: str, scale: float = 1.0) -> None:
    """torch.testing.assert_close with the tolerance of `kind` on `expected`'s device and dtype, atol × scale."""
    t = tol(kind, expected.device, expected.dtype)
    torch.testing.assert_close(actual, expected, rtol=t.rtol, atol=t.atol * scale)
