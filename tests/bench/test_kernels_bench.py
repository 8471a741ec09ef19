"""`instag bench kernels`' dense reference: the tri-plane's own lookups, done by torch's grid_sample on dense planes,
so its row times the same work as our kernel's (the stand-in for tiny-cuda-nn's 2D grid, docs/gpu_check.md)."""

from __future__ import annotations

import pytest
import torch
from kernel_tolerances import assert_close

from instag.bench.kernels import DENSE_REFERENCE, dense_encode, dense_planes, run
from instag.kernels.hash_encode_ref import TRIPLANE_AXES, grid_encode_ref, grid_layout


def test_the_dense_reference_encodes_as_the_grid_where_every_level_is_dense(device):
    layout = grid_layout(2, TRIPLANE_AXES, n_levels=3, n_features=2, log2_table_size=12, base_resolution=4,
                         max_resolution=40, bound=0.7)
    assert all((r + 1) ** 2 == layout.offsets[i + 1] - layout.offsets[i] for i, r in enumerate(layout.resolutions))
    g = torch.Generator().manual_seed(0)
    table = (torch.rand(layout.n_planes, layout.plane_size, layout.n_features, generator=g) * 2 - 1).to(device)
    xyz = ((torch.rand(500, 3, generator=g) * 2 - 1) * 0.7).to(device)
    xyz[:4] = torch.tensor([[-0.7, -0.7, -0.7], [0.7, 0.7, 0.7], [0.7, -0.7, 0.0], [0.0, 0.0, 0.0]])
    # The sampler finds a point's cell by another float32 formula ((x / bound + 1) / 2 · res): an ulp of its
    # position, times neighbours up to 2 apart, moves the output by up to twice an ulp of res.
    assert_close(dense_encode(xyz, dense_planes(layout, table), layout), grid_encode_ref(xyz, table, layout),
                 "output", scale=2.0)


def test_a_hashed_level_has_no_dense_plane():
    layout = grid_layout(2, TRIPLANE_AXES, n_levels=2, n_features=1, log2_table_size=6, base_resolution=4,
                         max_resolution=16, bound=1.0)
    with pytest.raises(ValueError, match="hashed"):
        dense_planes(layout, torch.zeros(layout.n_planes, layout.plane_size, 1))


def test_the_kernel_bench_times_the_dense_reference_beside_the_triplane_backends():
    cases = run(quick=True)["cases"]
    triplane = [c for c in cases if c["op"] == "triplane_hash_encode"]
    assert {c["backend"] for c in triplane} >= {"torch", DENSE_REFERENCE}
    dense = next(c for c in triplane if c["backend"] == DENSE_REFERENCE)
    assert dense["size"] == triplane[0]["size"] and dense["N"] == triplane[0]["N"]
    assert dense["fwd_ms"] > 0 and dense["fwd_bwd_ms"] > 0
    assert not any(c["backend"] == DENSE_REFERENCE for c in cases if c["op"] != "triplane_hash_encode")
