"""Backend resolution for the kernel ops (DESIGN §5).

`auto` picks the fastest backend that can run the op on the tensors' device and, when it has to fall back
because CUDA is absent, says so once per op with a warning. An explicitly requested backend that cannot
run raises `BackendUnavailableError`. Resolution is lazy and builds nothing: the libraries are built by
the op on first use.

`tinycudann` is `cuda` with tiny-cuda-nn running the 3D hash grid (`hash_encode`); the other ops run as on
`cuda`. `auto` never picks it: its grid keeps its own parameters in its own layout, so a model trained on it
saves state that loads only where tinycudann runs, while every other backend shares one table layout and
one state dict (`instag.kernels.hash_encode`).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from cuda_ext import build
from instag.errors import BackendUnavailableError

Op = Literal["triplane_hash_encode", "hash_encode", "rasterize"]
OPS: tuple[Op, ...] = ("triplane_hash_encode", "hash_encode", "rasterize")
BACKENDS = ("auto", "cuda", "cpu", "torch", "tinycudann")


class BackendFallbackWarning(UserWarning):
    """`auto` could not use the fastest backend (no CUDA) and fell back to a slower one."""


@dataclass(frozen=True)
class Choice:
    """What runs an op: the backend family, the implementation behind it, and why it was chosen."""

    op: Op
    backend: Literal["cuda", "cpu", "torch"]
    impl: str
    reason: str


@functools.cache  # asked on every CUDA kernel call, like the toolchain checks in cuda_ext/build.py
def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _cuda_impl(op: Op) -> tuple[str | None, str]:
    """The CUDA implementation of `op` usable here, or None and why not."""
    if not torch.cuda.is_available():
        return None, "torch reports no CUDA device"
    if op == "rasterize":
        if _has_module("gsplat"):
            return "gsplat", "gsplat on CUDA"
        return None, "gsplat is not installed"
    if build.nvcc_available():
        return "instag-cuda", "our CUDA kernel, nvcc found"
    return None, "nvcc not found to build our CUDA kernel"


def _cpu_impl(op: Op) -> tuple[str | None, str]:
    if build.compiler_available():
        return "instag-cpp", "our C++/OpenMP kernel"
    return None, "no C++ compiler or ninja to build our CPU kernel"


def _tinycudann_impl(op: Op) -> tuple[str | None, str]:
    if op != "hash_encode":
        return _cuda_impl(op)  # tinycudann runs the 3D grid only; the other ops run as on `cuda`
    if not torch.cuda.is_available():
        return None, "torch reports no CUDA device"
    if _has_module("tinycudann"):
        return "tinycudann", "tinycudann on CUDA (its own parameters; asked for explicitly)"
    return None, "tinycudann is not installed"


def available(op: Op, backend: Literal["cuda", "cpu", "torch", "tinycudann"]) -> tuple[str | None, str]:
    """(implementation, reason) for `backend` on `op`; implementation is None when it cannot run here."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; known: {', '.join(OPS)}")
    if backend == "cuda":
        return _cuda_impl(op)
    if backend == "tinycudann":
        return _tinycudann_impl(op)
    if backend == "cpu":
        return _cpu_impl(op)
    if backend == "torch":
        return "torch-reference", "pure-torch reference"
    raise ValueError(f"unknown backend {backend!r}")


@functools.cache
def _warn_fallback(op: Op, impl: str, reason: str) -> None:
    # Cached so that each (op, fallback) is reported once per process, not once per call.
    warnings.warn(f"{op}: backend 'auto' fell back to {impl} ({reason})", BackendFallbackWarning, stacklevel=4)


def resolve(op: Op, requested: str = "auto", device: torch.device | str | None = None, *, quiet: bool = False) -> Choice:
    """Choose the backend that runs `op` for tensors on `device` (default: CUDA when present, else CPU)."""
    if requested not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")

    if requested != "auto":
        if requested in ("cuda", "tinycudann") and dev.type != "cuda":
            raise BackendUnavailableError(f"{op}: backend '{requested}' needs tensors on a CUDA device, got {dev}")
        if requested == "cpu" and dev.type != "cpu":
            raise BackendUnavailableError(f"{op}: backend 'cpu' needs tensors on the CPU, got {dev}")
        impl, reason = available(op, requested)
        if impl is None:
            raise BackendUnavailableError(f"{op}: backend '{requested}' is unavailable here: {reason}")
        return Choice(op, "cuda" if requested == "tinycudann" else requested, impl, reason)

    if dev.type == "cuda":
        impl, reason = available(op, "cuda")
        if impl is not None:
            return Choice(op, "cuda", impl, reason)
        fallback = Choice(op, "torch", "torch-reference", f"no CUDA kernel: {reason}")
    else:
        impl, reason = available(op, "cpu")
        if impl is not None:
            choice = Choice(op, "cpu", impl, reason)
            if torch.cuda.is_available():
                return choice  # the caller chose CPU tensors on a CUDA machine: nothing to warn about
            fallback = Choice(op, "cpu", impl, f"no CUDA: {reason}")
        else:
            fallback = Choice(op, "torch", "torch-reference", f"no CUDA and {reason}")
    if not quiet:
        _warn_fallback(op, fallback.impl, fallback.reason)
    return fallback


def reset_warnings() -> None:
    """Forget which fallbacks were already reported (tests use it to see the warning again)."""
    _warn_fallback.cache_clear()
