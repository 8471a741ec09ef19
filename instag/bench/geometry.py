"""`instag bench geometry CLIP`: the depth and normal priors' rasteriser on a real clip's tracked face meshes.

Time per frame, and exactness against a float64 ray cast through every pixel centre (the nearest hit, what the
priors mean). Open3D's `RaycastingScene` is measured beside it where `open3d` is importable: it is not a
dependency of instag (the README says why), so install it into the environment to compare.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from instag.bench.record import header
from instag.config import to_dict
from instag.config.preprocess import PreprocessConfig
from instag.data.geometry import camera_facing_vertex_normals, render_depth_normal

Rasteriser = Callable[[np.ndarray, np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
OURS = "painter"
OPEN3D = "open3d_raycast"


def clip_meshes(clip: Path, cfg: PreprocessConfig) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The face mesh of every frame of `clip` as preprocessing builds it: vertices [468, 3] per frame (camera
    space), the triangles [F, 3] and the intrinsics K [3, 3]."""
    from instag.data import facemesh as fm
    from instag.data.crop import plan_crop
    from instag.data.pose import fit_pose, intrinsics
    from instag.data.preprocess import frame_mesh_vertices, read_clip, track_frames

    info, n, _ = read_clip(clip, cfg)
    plan = plan_crop(info, cfg, n)
    with tempfile.TemporaryDirectory(prefix="instag-bench-") as tmp:
        for sub in ("frames", "labels"):
            (Path(tmp) / sub).mkdir()
        tracked = track_frames(Path(tmp), info, plan, cfg, n, None)
    pose = fit_pose(tracked.pts, cfg.size, cfg.fps, cfg.pose_cutoff_hz, cfg.default_fov_deg, cfg.eye_distance_m)
    k = intrinsics(pose.focal, cfg.size)
    tris = fm.orient_triangles(fm.mesh_triangles(), pose.shape)
    return list(frame_mesh_vertices(tracked.pts, pose, k)), tris, k


def exact_depth_normal(verts: np.ndarray, tris: np.ndarray, k: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: for each pixel centre of a `size`² image, the nearest hit of its ray with the mesh `verts`
    [V, 3] (camera space), `tris` [F, 3], in float64 (Möller–Trumbore per triangle over its pixel box, a depth
    buffer across triangles). Depth [S, S] (camera z, 0 where no hit) and the vertex normals of
    `camera_facing_vertex_normals` interpolated at the hit [S, S, 3]."""
    verts = verts.astype(np.float64)
    uv = (verts @ k.T)[:, :2] / verts[:, 2:3]
    kinv = np.linalg.inv(k)
    depth = np.full((size, size), np.inf)
    face = np.full((size, size), -1)
    bary = np.zeros((size, size, 2))
    for f, (ia, ib, ic) in enumerate(tris):
        corners = uv[[ia, ib, ic]]
        lo = np.clip(np.floor(corners.min(0)).astype(int), 0, size)
        hi = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, size)
        if (hi <= lo).any():
            continue
        jj, ii = np.meshgrid(np.arange(lo[0], hi[0]) + 0.5, np.arange(lo[1], hi[1]) + 0.5)
        d = np.stack([jj, ii, np.ones_like(jj)], -1) @ kinv.T  # ray directions with z = 1: the hit's t is its depth
        a = verts[ia]
        e1, e2 = verts[ib] - a, verts[ic] - a
        p = np.cross(d, e2)
        det = p @ e1
        ok = np.abs(det) > 1e-15
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        u = (p @ -a) * inv
        q = np.cross(-a, e1)
        v = (d @ q) * inv
        t = (q @ e2) * inv
        ys, xs = np.nonzero(ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0))
        near = t[ys, xs] < depth[ys + lo[1], xs + lo[0]]
        ys, xs = ys[near], xs[near]
        depth[ys + lo[1], xs + lo[0]] = t[ys, xs]
        face[ys + lo[1], xs + lo[0]] = f
        bary[ys + lo[1], xs + lo[0]] = np.stack([u[ys, xs], v[ys, xs]], -1)
    hit = face >= 0
    vn = camera_facing_vertex_normals(verts, tris)
    b = bary[hit]
    n = np.einsum("pj,pjc->pc", np.c_[1 - b.sum(1), b], vn[tris[face[hit]]])
    normal = np.zeros((size, size, 3))
    normal[hit] = n / np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(hit, depth, 0.0), normal


def open3d_rasteriser(threads: int) -> Rasteriser | None:
    """Open3D's RaycastingScene as a rasteriser with `render_depth_normal`'s contract, or None without open3d."""
    try:
        import open3d as o3d
    except ImportError:
        return None

    def raycast(verts: np.ndarray, tris: np.ndarray, k: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(tris.astype(np.uint32)))
        uv = (verts @ k.T)[:, :2] / verts[:, 2:3]
        x0, y0 = np.clip(np.floor(uv.min(0)).astype(int), 0, size)  # rays outside the mesh's box cannot hit
        x1, y1 = np.clip(np.ceil(uv.max(0)).astype(int) + 1, 0, size)
        rays = np.zeros((y1 - y0, x1 - x0, 6), np.float32)  # origin at the camera, direction with z = 1
        rays[..., 3] = ((np.arange(x0, x1) + 0.5 - k[0, 2]) / k[0, 0])[None, :]
        rays[..., 4] = ((np.arange(y0, y1) + 0.5 - k[1, 2]) / k[1, 1])[:, None]
        rays[..., 5] = 1.0
        ans = scene.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=threads)
        t = ans["t_hit"].numpy()
        yy, xx = np.nonzero(np.isfinite(t))
        b = ans["primitive_uvs"].numpy()[yy, xx]
        corner = tris[ans["primitive_ids"].numpy()[yy, xx]]
        vn = camera_facing_vertex_normals(verts, tris).astype(np.float32)
        n = vn[corner[:, 0]] * (1 - b[:, :1] - b[:, 1:]) + vn[corner[:, 1]] * b[:, :1] + vn[corner[:, 2]] * b[:, 1:]
        depth = np.zeros((size, size), np.float32)
        normal = np.zeros((size, size, 3), np.float32)
        depth[yy + y0, xx + x0] = t[yy, xx]
        normal[yy + y0, xx + x0] = n / np.linalg.norm(n, axis=1, keepdims=True)
        return depth, normal

    return raycast


def compare_maps(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """How depth [S, S] and normals [S, S, 3] `got` differ from `want`: face pixels of each, pixels only one has,
    and over the pixels both cover the depth difference (mm) and the angle between the normals (degrees)."""
    (dg, ng), (dw, nw) = got, want
    mg, mw = dg > 0, dw > 0
    both = mg & mw
    dd = np.abs(dg[both].astype(np.float64) - dw[both]) * 1000.0
    cos = np.clip((ng[both].astype(np.float64) * nw[both]).sum(1), -1.0, 1.0)
    ang = np.degrees(np.arccos(cos))
    return {"face_px": int(mg.sum()), "face_px_want": int(mw.sum()), "px_only_got": int((mg & ~mw).sum()),
            "px_only_want": int((mw & ~mg).sum()), "depth_mean_abs_mm": float(dd.mean()),
            "depth_max_abs_mm": float(dd.max()), "px_depth_over_1mm": int((dd > 1.0).sum()),
            "normal_mean_deg": float(ang.mean()), "normal_max_deg": float(ang.max()),
            "px_normal_over_10deg": int((ang > 10.0).sum())}


def _summarise(cases: list[dict[str, float]]) -> dict[str, float]:
    """Per-frame comparisons → maxima of the maxima, means of the rest (per frame)."""
    return {key: round(max(c[key] for c in cases) if "max" in key else statistics.fmean(c[key] for c in cases), 5)
            for key in cases[0]}


def run(clip: str | Path, cfg: PreprocessConfig, every: int = 10, threads: int = 1,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Track `clip` as preprocessing does, then time each rasteriser on every frame's mesh (median ms) and compare
    it with `exact_depth_normal` on every `every`-th frame, and the two rasterisers with each other on all frames."""
    clip = Path(clip)
    meshes, tris, k = clip_meshes(clip, cfg)
    impls: dict[str, Rasteriser] = {OURS: render_depth_normal}
    raycast = open3d_rasteriser(threads)
    if raycast is not None:
        impls[OPEN3D] = raycast
    checked = list(range(0, len(meshes), every))
    maps: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    timing: dict[str, float] = {}
    for name, fn in impls.items():
        times, out = [], []
        for verts in meshes:
            t0 = time.perf_counter()
            out.append(fn(verts, tris, k, cfg.size))
            times.append(time.perf_counter() - t0)
        maps[name], timing[name] = out, round(statistics.median(times) * 1000.0, 3)
        if progress:
            progress(f"{name}: {timing[name]:.2f} ms/frame")
    reference, exact_times = {}, []
    for i in checked:
        t0 = time.perf_counter()
        reference[i] = exact_depth_normal(meshes[i], tris, k, cfg.size)
        exact_times.append(time.perf_counter() - t0)
    doc = header("geometry")
    doc.update({
        "clip": str(clip),
        "config": to_dict(cfg),
        "frames": len(meshes),
        "triangles": len(tris),
        "threads": threads,
        "ms_per_frame": timing,
        "exact_ms_per_frame": round(statistics.median(exact_times) * 1000.0, 3),
        "against_exact": {name: _summarise([compare_maps(maps[name][i], reference[i]) for i in checked])
                          for name in impls},
        "exact_frames": checked,
    })
    if raycast is not None:
        import open3d

        doc["open3d_version"] = open3d.__version__
        doc[f"{OPEN3D}_vs_{OURS}"] = _summarise([compare_maps(r, p) for r, p in zip(maps[OPEN3D], maps[OURS], strict=True)])
    return doc
