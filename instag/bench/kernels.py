"""`instag bench kernels`: forward and forward+backward medians of each kernel op on every backend present."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from instag.bench.record import header, median_ms
from instag.errors import InputError
from instag.kernels import backend
from instag.kernels.hash_encode_ref import GridLayout

RASTERIZE_CASES = ((10_000, 256), (50_000, 512))  # (Gaussians, image side)
TRIPLANE_CASES = (50_000, 500_000)  # points
HASH3D_CASES = (50_000,)
# --quick: one small case an op, with small hash tables, a smoke run of the same code (scripts/gpu_check.py's
# dry mode) in seconds.
QUICK_CASES = {"rasterize": ((200, 32),), "triplane_hash_encode": (2_000,), "hash_encode": (2_000,)}
QUICK_GRID = {"n_levels": 4, "log2_table_size": 12}


def random_scene(n: int, size: int, channels: int = 3, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """A head-sized cloud of `n` Gaussians ~2.5 units in front of a `size`² pinhole camera (focal ≈ size)."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([1.0, 1.2, 0.8])
    means[:, 2] += 2.5
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.empty(n, 3).uniform_(math.log(0.004), math.log(0.03), generator=g))
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    colors = torch.rand(n, channels, generator=g)
    f = float(size)
    K = torch.tensor([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])
    tensors = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmat=torch.eye(4), K=K)
    return {k: v.to(device) for k, v in tensors.items()} | {"width": size, "height": size}


# The row that stands in for tiny-cuda-nn's 2D grid, which neither the lent GPU image nor any package registry holds
# (docs/gpu_check.md): torch's own bilinear texture sampler doing the tri-plane's lookups on dense planes.
DENSE_REFERENCE = "dense_reference"


def dense_planes(layout: GridLayout, table: torch.Tensor | None = None) -> list[torch.Tensor]:
    """A 2D grid's levels as dense planes, [P, F, res + 1, res + 1] each (rows: the plane's second axis); from the
    `table` [P, plane_size, F] of a layout whose levels are all dense (on its device), else small random values on
    the CPU."""
    planes = []
    for level, res in enumerate(layout.resolutions):
        side = res + 1
        if table is None:
            plane = torch.empty(layout.n_planes, layout.n_features, side, side).uniform_(-1e-4, 1e-4)
        else:
            start, end = layout.offsets[level], layout.offsets[level + 1]
            if end - start != side * side:
                raise ValueError(f"level {level} (resolution {res}) is hashed: it has no dense plane")
            plane = table[:, start:end].reshape(layout.n_planes, side, side, layout.n_features).permute(0, 3, 1, 2)
        planes.append(plane.contiguous())
    return planes


def dense_encode(xyz: torch.Tensor, planes: list[torch.Tensor], layout: GridLayout) -> torch.Tensor:
    """xyz [N, 3] → [N, P * L * F] (plane-major, then level, then feature, as `grid_encode_ref`): bilinear lookups
    of each plane's two coordinates in the dense `planes` [P, F, res + 1, res + 1] per level, by `grid_sample`."""
    axes = torch.tensor(layout.axes, device=xyz.device)  # [P, 2]
    # align_corners puts -bound on the first texel and +bound on the last, as the grids' u · res does
    grid = (xyz[:, axes] / layout.bound).clamp(-1.0, 1.0).permute(1, 0, 2)[:, None]  # [P, 1, N, 2]
    levels = [F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)
              for plane in planes]  # L × [P, F, 1, N]
    return torch.stack(levels, 1)[:, :, :, 0].permute(3, 0, 1, 2).reshape(xyz.shape[0], layout.output_dim)


def _backends(op: backend.Op, device: torch.device) -> Iterator[backend.Choice]:
    # tinycudann beside our CUDA 3D grid where it is installed: the comparison issue #30 asks for.
    fast = ("cuda", "tinycudann") if device.type == "cuda" and op == "hash_encode" else (device.type,)
    for name in (*fast, "torch"):
        impl, reason = backend.available(op, name)
        if impl is not None:
            yield backend.Choice(op, name, impl, reason)


def _time(forward: Callable[[], torch.Tensor], params: list[torch.Tensor], runs: int, device: torch.device) -> tuple[float, float]:
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def fwd() -> None:
        with torch.no_grad():
            forward()

    def fwd_bwd() -> None:
        for p in params:
            p.grad = None
        forward().sum().backward()

    return median_ms(fwd, runs=runs, sync=sync), median_ms(fwd_bwd, runs=runs, sync=sync)


def _rasterize_cases(device: torch.device, runs: int, quick: bool) -> Iterator[dict[str, Any]]:
    from instag.kernels.rasterize import rasterize

    for n, size in QUICK_CASES["rasterize"] if quick else RASTERIZE_CASES:
        scene = random_scene(n, size, device=str(device))
        params = [scene[k].requires_grad_() for k in ("means", "quats", "scales", "opacities", "colors")]
        for choice in _backends("rasterize", device):
            def forward(choice: backend.Choice = choice, scene: dict = scene) -> torch.Tensor:
                return rasterize(**scene, backend=choice.backend).image

            f, fb = _time(forward, params, runs, device)
            yield {"op": "rasterize", "backend": choice.backend, "impl": choice.impl, "N": n, "size": f"{size}x{size}", "channels": 3, "fwd_ms": f, "fwd_bwd_ms": fb}


def _encoder_cases(device: torch.device, runs: int, quick: bool) -> Iterator[dict[str, Any]]:
    from instag.kernels.hash_encode import HashEncoder3D, TriplaneHashEncoder

    g = torch.Generator().manual_seed(0)
    for op, make, cases in (
        ("triplane_hash_encode", TriplaneHashEncoder, TRIPLANE_CASES),
        ("hash_encode", HashEncoder3D, HASH3D_CASES),
    ):
        for n in QUICK_CASES[op] if quick else cases:
            xyz = (torch.rand(n, 3, generator=g) * 2 - 1).to(device)
            encoders = [(choice, make(backend=choice.backend, **(QUICK_GRID if quick else {})).to(device))
                        for choice in _backends(op, device)]  # the torch twin is always among them
            lay = encoders[0][1].layout
            desc = f"{lay.n_planes} planes x {lay.n_levels} levels x {lay.n_features} feat, {lay.plane_size} entries/plane"
            for choice, enc in encoders:
                f, fb = _time(lambda enc=enc, xyz=xyz: enc(xyz), list(enc.parameters()), runs, device)
                yield {"op": op, "backend": choice.backend, "impl": choice.impl, "N": n, "size": desc, "fwd_ms": f, "fwd_bwd_ms": fb}
            if op == "triplane_hash_encode":
                planes = [p.to(device).requires_grad_() for p in dense_planes(lay)]
                f, fb = _time(lambda xyz=xyz, planes=planes, lay=lay: dense_encode(xyz, planes, lay), planes, runs,
                              device)
                yield {"op": op, "backend": DENSE_REFERENCE, "impl": "torch grid_sample on dense planes (no hashing)",
                       "N": n, "size": desc, "fwd_ms": f, "fwd_bwd_ms": fb}


def run(device: str = "cpu", runs: int = 10, progress: Callable[[dict[str, Any]], None] | None = None,
        quick: bool = False) -> dict[str, Any]:
    """Run every case (`quick`: one small case an op) on `device` and return the JSON document; `progress` sees
    each case as it finishes."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: torch sees no CUDA device on this machine")
    if runs < 10:
        raise InputError(f"--runs {runs}: medians need at least 10 runs")
    doc = header("kernels") | {"device": str(dev), "runs": runs, "quick": quick, "cases": []}
    for case in (*_rasterize_cases(dev, runs, quick), *_encoder_cases(dev, runs, quick)):
        doc["cases"].append(case)
        if progress:
            progress(case)
    return doc
