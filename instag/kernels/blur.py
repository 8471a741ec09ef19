"""Separable blur of a stack of images by one set of 1D taps (the SSIM window of the photometric loss), zero
outside the image: a column pass then a row pass.

On the CPU, where a compiler is at hand, it is our C++ kernel (`cuda_ext/csrc/cpu/blur.cpp`); elsewhere the
pure-torch twin `blur_ref`, two depthwise convolutions (on a GPU they are launch-bound, not slow). PyTorch's
depthwise convolution on the CPU walks each tap as a strided pass of its own, most of an adaptation step's loss
time (`benchmarks/train_blur_cpu.md`).
"""

from __future__ import annotations

import ctypes
import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from cuda_ext import build
from instag.kernels import _ffi

__all__ = ["blur_ref", "gaussian_taps", "separable_blur"]


@functools.cache  # the same few taps every training step: made once per window, dtype and device
def gaussian_taps(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The normalised 1D Gaussian [size] whose outer product is the 2D window (the SSIM's); not to be written to."""
    with torch.inference_mode(False):  # a cached tensor must serve autograd too, whoever asked first
        coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
        g = torch.exp(-(coords**2) / (2.0 * sigma**2))
        return g / g.sum()


def blur_ref(images: Tensor, taps: Tensor) -> Tensor:
    """images [N, H, W], taps [K] (K odd) → [N, H, W]: Σ taps[k] · image shifted by k − K // 2 down each column,
    then the same along each row, zero outside the image."""
    n, size = images.shape[0], taps.shape[0]
    column = taps.view(1, 1, size, 1).expand(n, 1, size, 1).contiguous()
    row = taps.view(1, 1, 1, size).expand(n, 1, 1, size).contiguous()
    out = F.conv2d(images[None], column, padding=(size // 2, 0), groups=n)
    return F.conv2d(out, row, padding=(0, size // 2), groups=n)[0]


def separable_blur(images: Tensor, taps: Tensor) -> Tensor:
    """`blur_ref` (images [N, H, W], taps [K]), by the C++ kernel for float32 CPU tensors where one can be
    built; differentiable in the images (the taps are constants)."""
    if images.device.type != "cpu" or images.dtype != torch.float32 or not build.compiler_available():
        return blur_ref(images, taps)
    return _BlurCPU.apply(images.contiguous(), taps.detach().float().contiguous())


@functools.cache
def _kernel() -> ctypes._CFuncPtr:
    f = build.cpu_library().instag_blur_separable
    p, i = ctypes.c_void_p, ctypes.c_int
    f.argtypes = [p, ctypes.c_int64, i, i, p, i, i, p, i]
    f.restype = None
    return f


def _blur(images: Tensor, taps: Tensor, adjoint: bool) -> Tensor:
    n, h, w = images.shape
    out = torch.empty_like(images)
    ptr = _ffi.ptr
    _kernel()(ptr(images), n, h, w, ptr(taps), taps.shape[0], int(adjoint), ptr(out), _ffi.num_threads())
    return out


class _BlurCPU(torch.autograd.Function):
    """forward(images [N, H, W] float32, taps [K]) → [N, H, W]; the gradient is the adjoint blur (taps reversed,
    the passes in reverse order)."""

    @staticmethod
    def forward(ctx, images: Tensor, taps: Tensor) -> Tensor:
        ctx.save_for_backward(taps)
        return _blur(images, taps, adjoint=False)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (taps,) = ctx.saved_tensors
        return _blur(grad.contiguous(), taps, adjoint=True), None
