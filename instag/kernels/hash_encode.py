"""Multi-resolution hash-grid encoders: `TriplaneHashEncoder` (the UMF's tri-plane) and `HashEncoder3D` (the
motion aligner's 3D grid), with the backend that runs them picked lazily at the first forward (DESIGN §5).

Backends: our CUDA kernel (`cuda_ext/csrc/cuda/hash_encode.cu`), our C++/OpenMP kernel
(`cuda_ext/csrc/cpu/hash_encode.cpp`) or the pure-torch reference (`hash_encode_ref`). They share one table
layout and one state dict, so a module trained on one runs on the others, on any device. The exception is
`HashEncoder3D` on the explicit `tinycudann` backend, which keeps its own parameters in its own layout (see
`_TcnnHashGrid`); `auto` never picks it.
"""

from __future__ import annotations

import ctypes
import functools
import math

import torch

from cuda_ext import build
from instag.errors import BackendUnavailableError
from instag.kernels import _ffi
from instag.kernels.backend import BACKENDS, Choice, Op, resolve
from instag.kernels.hash_encode_ref import TRIPLANE_AXES, GridLayout, grid_encode_ref, grid_layout

TABLE_INIT = 1e-4  # tables start uniform in [-TABLE_INIT, TABLE_INIT]


def _signature(lib: ctypes.CDLL, stream: bool) -> tuple:
    i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    # dim, n_planes, axes, n_levels, n_features, resolutions, offsets, bound
    grid = [i32, i32, ptr, i32, i32, ptr, ptr, ctypes.c_float]
    last = [ptr] if stream else [i32]  # CUDA stream or CPU thread count
    suffix = "cuda" if stream else "cpu"
    forward = getattr(lib, f"instag_grid_encode_forward_{suffix}")
    forward.argtypes = [ptr, i64, ptr, ptr, *grid, *last]
    forward.restype = i32
    backward = getattr(lib, f"instag_grid_encode_backward_{suffix}")
    backward.argtypes = [ptr, i64, ptr, ptr, ptr, ptr, *grid, *last]
    backward.restype = i32
    return forward, backward


@functools.cache
def _cpu_functions() -> tuple:
    return _signature(build.cpu_library(), stream=False)


@functools.cache
def _cuda_functions() -> tuple:
    return _signature(build.cuda_library(), stream=True)


@functools.cache
def _layout_arrays(layout: GridLayout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Host arrays the kernels read the layout from: axes [P, D] int32, resolutions [L] int32, offsets [L+1] int64."""
    return (
        torch.tensor(layout.axes, dtype=torch.int32),
        torch.tensor(layout.resolutions, dtype=torch.int32),
        torch.tensor(layout.offsets, dtype=torch.int64),
    )


def _grid_args(layout: GridLayout) -> list:
    axes, res, offsets = _layout_arrays(layout)
    return [
        layout.dim,
        layout.n_planes,
        _ffi.ptr(axes),
        layout.n_levels,
        layout.n_features,
        _ffi.ptr(res),
        _ffi.ptr(offsets),
        layout.bound,
    ]


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with status {status}")


class _GridEncodeKernel(torch.autograd.Function):
    """Our C++ or CUDA kernel: xyz [N, 3], table [P, S, F] (float32, contiguous) → [N, P * L * F]."""

    @staticmethod
    def forward(ctx, xyz: torch.Tensor, table: torch.Tensor, layout: GridLayout) -> torch.Tensor:
        out = torch.empty(xyz.shape[0], layout.output_dim, device=xyz.device, dtype=torch.float32)
        forward, _ = _cuda_functions() if xyz.is_cuda else _cpu_functions()
        last = _ffi.cuda_stream(xyz.device) if xyz.is_cuda else _ffi.num_threads()
        status = forward(
            _ffi.ptr(xyz), xyz.shape[0], _ffi.ptr(table), _ffi.ptr(out), *_grid_args(layout), last
        )
        _check(status, "hash-grid encode forward")
        ctx.save_for_backward(xyz, table)
        ctx.layout = layout
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        xyz, table = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_table = torch.empty_like(table) if ctx.needs_input_grad[1] else None
        grad_xyz = torch.empty_like(xyz) if ctx.needs_input_grad[0] else None
        if grad_table is None and grad_xyz is None:
            return None, None, None
        _, backward = _cuda_functions() if xyz.is_cuda else _cpu_functions()
        last = _ffi.cuda_stream(xyz.device) if xyz.is_cuda else _ffi.num_threads()
        status = backward(
            _ffi.ptr(xyz),
            xyz.shape[0],
            _ffi.ptr(table),
            _ffi.ptr(grad_out),
            None if grad_table is None else _ffi.ptr(grad_table),
            None if grad_xyz is None else _ffi.ptr(grad_xyz),
            *_grid_args(ctx.layout),
            last,
        )
        _check(status, "hash-grid encode backward")
        return grad_xyz, grad_table, None


def grid_encode(xyz: torch.Tensor, table: torch.Tensor, layout: GridLayout, choice: Choice) -> torch.Tensor:
    """Encode xyz [N, 3] with table [P, S, F] on the backend `choice` names → [N, P * L * F]."""
    if choice.backend == "torch":
        return grid_encode_ref(xyz, table, layout)
    if table.dtype != torch.float32:
        raise TypeError(f"the {choice.impl} hash-grid kernel works in float32, the table is {table.dtype}")
    if table.device != xyz.device:  # the kernels take raw pointers: a mismatch would read the wrong memory
        raise ValueError(f"points are on {xyz.device} but the hash table is on {table.device}")
    return _GridEncodeKernel.apply(xyz.float().contiguous(), table.contiguous(), layout)


class _GridEncoder(torch.nn.Module):
    """What both encoders share: the table parameter, its layout and the lazily resolved backend."""

    op: Op

    def __init__(self, layout: GridLayout, table_shape: tuple[int, ...], backend: str) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise BackendUnavailableError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.layout = layout
        self.backend = backend
        self.output_dim = layout.output_dim
        self.embeddings = torch.nn.Parameter(torch.empty(table_shape).uniform_(-TABLE_INIT, TABLE_INIT))
        self._choices: dict[torch.device, Choice] = {}

    def choice(self, device: torch.device) -> Choice:
        """The backend that runs this encoder on `device` (resolved once per device, building nothing)."""
        device = torch.device(device)
        if device not in self._choices:
            self._choices[device] = resolve(self.op, self.backend, device)
        return self._choices[device]

    def _check_input(self, xyz: torch.Tensor) -> None:
        if xyz.dim() != 2 or xyz.shape[1] != 3:
            raise ValueError(f"xyz must be [N, 3], got {list(xyz.shape)}")

    def extra_repr(self) -> str:
        layout = self.layout
        return (
            f"levels={layout.n_levels}, features={layout.n_features}, resolutions={layout.resolutions[0]}.."
            f"{layout.resolutions[-1]}, table={tuple(self.embeddings.shape)}, backend={self.backend}"
        )


class TriplaneHashEncoder(_GridEncoder):
    """Three 2D multi-resolution hash grids on the planes xy, yz, xz; their features concatenated."""

    op: Op = "triplane_hash_encode"

    def __init__(
        self,
        n_levels: int = 12,
        n_features: int = 1,
        log2_table_size: int = 17,
        base_resolution: int = 16,
        max_resolution: int = 512,
        bound: float = 1.0,
        backend: str = "auto",
    ) -> None:
        layout = grid_layout(
            2, TRIPLANE_AXES, n_levels, n_features, log2_table_size, base_resolution, max_resolution, bound
        )
        super().__init__(layout, (3, layout.plane_size, n_features), backend)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: [N, 3] in [-bound, bound] (clamped) → [N, 3 * n_levels * n_features]."""
        self._check_input(xyz)
        return grid_encode(xyz, self.embeddings, self.layout, self.choice(xyz.device))


class HashEncoder3D(_GridEncoder):
    """The motion aligner's 3D multi-resolution hash grid (trilinear interpolation)."""

    op: Op = "hash_encode"

    def __init__(
        self,
        n_levels: int = 16,
        n_features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        bound: float = 1.0,
        backend: str = "auto",
    ) -> None:
        layout = grid_layout(
            3, ((0, 1, 2),), n_levels, n_features, log2_table_size, base_resolution, max_resolution, bound
        )
        super().__init__(layout, (layout.plane_size, n_features), backend)
        self._hyper = (n_levels, n_features, log2_table_size, base_resolution, max_resolution)
        # tinycudann's own grid, made at the first forward on the explicit `tinycudann` backend or when loading
        # its state; None (no state) on every other backend.
        self.register_module("tcnn", None)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: [N, 3] in [-bound, bound] (clamped) → [N, n_levels * n_features]."""
        self._check_input(xyz)
        choice = self.choice(xyz.device)
        if choice.impl == "tinycudann":
            if self.tcnn is None:
                self.tcnn = _TcnnHashGrid(*self._hyper).to(xyz.device)
            return self.tcnn(xyz, self.layout.bound)
        return grid_encode(xyz, self.embeddings.unsqueeze(0), self.layout, choice)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # A state saved on tinycudann holds `tcnn.*`, which only tinycudann can read: make its grid to load into
        # when this encoder runs on tinycudann, and say plainly why it cannot load anywhere else.
        if self.tcnn is None and any(k.startswith(prefix + "tcnn.") for k in state_dict):
            if self.backend == "tinycudann":
                self.tcnn = _TcnnHashGrid(*self._hyper)
            else:
                errors.append(f"{prefix}tcnn.*: a hash grid trained on the tinycudann backend, whose parameters are "
                              f"its own; it loads only with backend 'tinycudann' on CUDA (this one is "
                              f"{self.backend!r})")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)


class _TcnnHashGrid(torch.nn.Module):
    """tinycudann's HashGrid with our hyper-parameters.

    Its parameters are tinycudann's own (flat, its own level sizes and half-cell offset), created at the first
    forward on CUDA and unrelated to `HashEncoder3D.embeddings`, which that path leaves unused: build the
    optimizer after a first forward, and expect checkpoints from this path to load only where tinycudann runs
    (`HashEncoder3D._load_from_state_dict` refuses them elsewhere). An avatar is checked against a freshly built
    model's state dict, which has no `tcnn.*`, so an avatar trained on this backend does not load: it is for
    benchmarks and experiments, not for avatars.
    """

    def __init__(
        self, n_levels: int, n_features: int, log2_table_size: int, base_resolution: int, max_resolution: int
    ) -> None:
        super().__init__()
        import tinycudann

        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(n_levels - 1, 1))
        config = {
            "otype": "HashGrid",
            "n_levels": n_levels,
            "n_features_per_level": n_features,
            "log2_hashmap_size": log2_table_size,
            "base_resolution": base_resolution,
            "per_level_scale": growth,
        }
        self.encoding = tinycudann.Encoding(3, config, dtype=torch.float32)

    def forward(self, xyz: torch.Tensor, bound: float) -> torch.Tensor:
        """xyz: [N, 3] in [-bound, bound] → [N, n_levels * n_features]; tinycudann takes [0, 1]."""
        u = ((xyz + bound) / (2.0 * bound)).clamp(0.0, 1.0)
        return self.encoding(u).float()
