"""What the C++ compositor costs on a real avatar's frame, per branch, forward and backward, on one thread.

    python benchmarks/scripts/raster_frame.py AVATAR... [--runs 30] [--json OUT.json]

Renders frame 3 of each avatar's idle loop from the front at 256² (as the preview does on a CPU), keeps what each
branch hands to the compositor (screen-space Gaussians and tile lists), and times `instag_rasterize_forward`
and `instag_rasterize_backward` on exactly those inputs (the backward with a fixed random incoming gradient).
Run it at two commits to compare two versions of the kernel on the same inputs: the outputs' digests say whether
they compute the same bits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from instag.avatar.bundle import load_avatar
from instag.bench.record import header, median_ms
from instag.kernels import _ffi
from instag.kernels.rasterize import _CompositeCPU, _kernels
from instag.viewer.camera import Orbit
from instag.viewer.renderer import PreviewRenderer


def capture(avatar_dir: Path) -> list[dict]:
    """The compositor's inputs of each branch (face, then mouth) for one preview frame."""
    renderer = PreviewRenderer(load_avatar(avatar_dir), torch.device("cpu"))
    seen: list[dict] = []
    forward = _CompositeCPU.forward

    def keep(ctx, means2d, conics, opacities, features, bins, width, height):
        seen.append({"means2d": means2d.clone(), "conics": conics.clone(), "opacities": opacities.clone(),
                     "features": features.clone(), "offsets": bins.offsets.clone(), "ids": bins.ids.clone(),
                     "width": width, "height": height})
        return forward(ctx, means2d, conics, opacities, features, bins, width, height)

    _CompositeCPU.forward = staticmethod(keep)
    try:
        with torch.inference_mode():
            renderer._frame(renderer.idle.condition(3).cond, 3, Orbit(), time.perf_counter())
    finally:
        _CompositeCPU.forward = staticmethod(forward)
    return seen


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def time_branch(b: dict, runs: int) -> dict:
    lib, ptr = _kernels(), _ffi.ptr
    w, h = b["width"], b["height"]
    n, c = b["features"].shape
    sums, trans = torch.empty(h, w, c), torch.empty(h, w)
    count = torch.empty(h, w, dtype=torch.int32)
    inputs = [ptr(b[k]) for k in ("means2d", "conics", "opacities", "features")]
    lists = [ptr(b["offsets"]), ptr(b["ids"])]

    def forward():
        lib.instag_rasterize_forward(*inputs, c, *lists, w, h, ptr(sums), ptr(trans), ptr(count), 1)

    fwd_ms = median_ms(forward, runs, warmup=3)
    g = torch.Generator().manual_seed(0)
    grad_sums, grad_trans = torch.randn(h, w, c, generator=g), torch.randn(h, w, generator=g)
    scratch = torch.empty(b["ids"].numel() * (6 + c))
    grads = [torch.empty(n, 2), torch.empty(n, 3), torch.empty(n), torch.empty(n, c)]

    def backward():
        lib.instag_rasterize_backward(*inputs, c, *lists, w, h, ptr(trans), ptr(count), ptr(grad_sums),
                                      ptr(grad_trans), n, ptr(scratch), *(ptr(t) for t in grads), 1)

    bwd_ms = median_ms(backward, max(runs // 3, 5), warmup=3)
    lengths = (b["offsets"][1:] - b["offsets"][:-1]).float()
    return {"gaussians": n, "channels": c, "list_entries": int(b["ids"].numel()),
            "mean_list": round(lengths.mean().item(), 1), "forward_ms": round(fwd_ms, 2),
            "backward_ms": round(bwd_ms, 2), "forward_digest": digest(sums, trans, count),
            "backward_digest": digest(*grads)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("avatars", nargs="+", type=Path)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = {}
    for avatar in args.avatars:
        branches = capture(avatar)
        results[str(avatar)] = {name: time_branch(b, args.runs)
                                for name, b in zip(("face", "mouth"), branches, strict=True)}
    for avatar, branches in results.items():
        for name, r in branches.items():
            print(f"{avatar} {name}: {r['gaussians']} Gaussians, {r['list_entries']} list entries; forward "
                  f"{r['forward_ms']} ms, backward {r['backward_ms']} ms ({r['forward_digest']}, {r['backward_digest']})")
    if args.json:
        record = {**header("raster-frame"), "command": "python benchmarks/scripts/raster_frame.py " + " ".join(
            str(a) for a in args.avatars), "threads": 1, "size": "256x256", "frame": "idle loop 3, front",
                  "avatars": results}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
