"""Pure-torch twins of the hash-grid encoders: the definition the C++ and CUDA kernels are tested against.

A grid of dimension D (2 for the tri-plane's planes, 3 for the aligner's grid) has `n_levels` levels; level l
has resolution floor(base * b^l) cells per axis, b = exp((ln max - ln base) / (L - 1)), so (res + 1)^D
vertices. Its table holds min(2^log2_table_size, (res + 1)^D) entries: vertices are indexed densely when
they fit and hashed otherwise (XOR of coordinate x prime, masked to the power-of-two table size). All levels
of a plane live in one table at per-level offsets; a tri-plane encoder stacks three such tables (xy, yz, xz).

Points are mapped from [-bound, bound] to [0, 1] and clamped (NaN to 0); values are interpolated (bi- or
trilinearly) from the cell's corners. Everything here is vectorised over points and levels and differentiable with
respect to both the table and the points (float64 works too, for gradcheck).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PRIMES = (1, 2654435761, 805459861)
TRIPLANE_AXES = ((0, 1), (1, 2), (0, 2))  # xy, yz, xz: the order of the features in the output
FEATURE_COUNTS = (1, 2, 4, 8)  # features per level the kernels are compiled for (tinycudann's choices too)


@dataclass(frozen=True)
class GridLayout:
    """Levels, table offsets and plane axes of a multi-resolution grid (shared by every backend)."""

    dim: int  # 2 or 3
    axes: tuple[tuple[int, ...], ...]  # [n_planes][dim]: the xyz coordinates each plane reads
    resolutions: tuple[int, ...]  # [n_levels] cells per axis
    offsets: tuple[int, ...]  # [n_levels + 1] first entry of each level in one plane's table
    n_features: int
    bound: float

    @property
    def n_planes(self) -> int:
        return len(self.axes)

    @property
    def n_levels(self) -> int:
        return len(self.resolutions)

    @property
    def plane_size(self) -> int:
        """Entries of one plane's table (all levels)."""
        return self.offsets[-1]

    @property
    def output_dim(self) -> int:
        return self.n_planes * self.n_levels * self.n_features


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int) -> tuple[int, ...]:
    """floor(base * b^l) for l < n_levels, with b spreading the levels geometrically from base to max."""
    if n_levels < 1 or base_resolution < 1 or max_resolution < base_resolution:
        raise ValueError(
            f"need n_levels >= 1 and 1 <= base_resolution <= max_resolution, got "
            f"{n_levels}, {base_resolution}, {max_resolution}"
        )
    if n_levels == 1:
        return (base_resolution,)
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    # The 1e-9 keeps floor from losing a whole cell to rounding (16 * 32 evaluates to 511.99999...).
    return tuple(int(math.floor(base_resolution * growth**level + 1e-9)) for level in range(n_levels))


def grid_layout(
    dim: int,
    axes: tuple[tuple[int, ...], ...],
    n_levels: int,
    n_features: int,
    log2_table_size: int,
    base_resolution: int,
    max_resolution: int,
    bound: float,
) -> GridLayout:
    """The layout of a grid with these hyper-parameters (tables sized per level, dense where they fit)."""
    if not 1 <= log2_table_size <= 30:
        raise ValueError(f"log2_table_size must be in [1, 30], got {log2_table_size}")
    if n_features not in FEATURE_COUNTS or bound <= 0:
        raise ValueError(f"need n_features in {FEATURE_COUNTS} and bound > 0, got {n_features}, {bound}")
    resolutions = level_resolutions(n_levels, base_resolution, max_resolution)
    offsets = [0]
    for res in resolutions:
        offsets.append(offsets[-1] + min(2**log2_table_size, (res + 1) ** dim))
    return GridLayout(dim, axes, resolutions, tuple(offsets), n_features, float(bound))


def grid_encode_ref(xyz: torch.Tensor, table: torch.Tensor, layout: GridLayout) -> torch.Tensor:
    """Encode points with a multi-plane grid.

    xyz: [N, 3]; table: [n_planes, plane_size, n_features] → [N, n_planes * n_levels * n_features]
    (plane-major, then level, then feature).
    """
    n = xyz.shape[0]
    dim, n_features = layout.dim, layout.n_features
    res = torch.tensor(layout.resolutions, device=xyz.device)  # [L]
    offsets = torch.tensor(layout.offsets, device=xyz.device)  # [L + 1]
    sizes = offsets[1:] - offsets[:-1]  # [L]
    dense = (res + 1) ** dim <= sizes  # [L]
    resf = res.to(xyz.dtype)

    corners = torch.tensor(
        [[(c >> d) & 1 for d in range(dim)] for c in range(1 << dim)], device=xyz.device
    )  # [2^D, D]
    strides = torch.stack([(res + 1) ** d for d in range(dim)], dim=-1)  # [L, D]
    primes = torch.tensor(PRIMES[:dim], device=xyz.device)  # [D]

    u = (xyz + layout.bound) / (2.0 * layout.bound)
    # NaN counts as 0 (the grid's lower corner, no gradient) and ±inf clamps, as in the kernels: never an index
    # outside the table.
    u = torch.where(u.isnan(), torch.zeros_like(u), u).clamp(0.0, 1.0)  # [N, 3]
    features = []
    for p, axes in enumerate(layout.axes):
        pos = u[:, list(axes)].unsqueeze(1) * resf[:, None]  # [N, L, D]
        # pos >= 0, so floor is truncation; the last cell is closed (u = 1 → frac = 1), as in the kernels.
        cell = torch.minimum(pos.detach().floor().long(), (res - 1)[:, None])  # [N, L, D]
        frac = pos - cell.to(pos.dtype)  # [N, L, D]
        coords = cell.unsqueeze(2) + corners  # [N, L, 2^D, D]
        dense_index = (coords * strides[:, None, :]).sum(-1)  # [N, L, 2^D]
        hashed = coords * primes
        hashed_index = hashed[..., 0]
        for d in range(1, dim):
            hashed_index = hashed_index ^ hashed[..., d]
        hashed_index = hashed_index & (sizes[:, None] - 1)
        index = torch.where(dense[:, None], dense_index, hashed_index) + offsets[:-1, None]  # [N, L, 2^D]
        weights = torch.where(corners.bool(), frac.unsqueeze(2), 1.0 - frac.unsqueeze(2)).prod(
            -1
        )  # [N, L, 2^D]
        values = table[p][index]  # [N, L, 2^D, F]
        features.append((weights.unsqueeze(-1) * values).sum(2).reshape(n, layout.n_levels * n_features))
    return torch.cat(features, dim=1)
