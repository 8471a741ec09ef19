"""Calling the `cuda_ext` libraries through ctypes: raw pointers of contiguous tensors."""

from __future__ import annotations

import ctypes

import torch


def ptr(t: torch.Tensor) -> ctypes.c_void_p:
    """Address of a contiguous tensor's first element (the kernels take raw pointers)."""
    if not t.is_contiguous():
        raise ValueError("kernel arguments must be contiguous")
    return ctypes.c_void_p(t.data_ptr())


def cuda_stream(device: torch.device) -> ctypes.c_void_p:
    """The current CUDA stream on `device`, so kernels run in order with torch's own work."""
    return ctypes.c_void_p(torch.cuda.current_stream(device).cuda_stream)


def num_threads() -> int:
    """Threads the CPU kernels use: the same as torch's intra-op pool, so `torch.set_num_threads` governs both."""
    return max(1, torch.get_num_threads())
