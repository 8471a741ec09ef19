"""Geometry prior: depth and normal maps of the tracked face mesh, rasterised in the dataset's camera model."""

from __future__ import annotations

import cv2
import numpy as np
import trimesh

DEPTH_SCALE = 10000.0  # depth PNGs store metres × this as uint16 (0.1 mm steps, 0 = no face)


def camera_facing_vertex_normals(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Unit vertex normals [V, 3] of the mesh `verts` [V, 3] (camera space), `tris` [F, 3]: the mean of the unit
    normals of the triangles around each vertex, each triangle's turned to face the camera first (0 for a vertex
    no triangle uses)."""
    mesh = trimesh.Trimesh(verts, tris, process=False)  # process=False keeps the unused iris vertices
    fn = mesh.face_normals * np.sign((mesh.face_normals * -mesh.triangles_center).sum(1, keepdims=True) + 1e-12)
    return trimesh.geometry.mean_vertex_normals(len(verts), tris, fn)


def render_depth_normal(verts: np.ndarray, tris: np.ndarray, k: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a mesh with vertices `verts` [V, 3] in camera space (metres, OpenCV axes, z > 0) and triangles
    `tris` [F, 3] through intrinsics `k` [3, 3] into `size`² maps: depth [S, S] float32 (camera z, 0 where empty)
    and unit normals [S, S, 3] float32 (camera axes, facing the camera, 0 where empty).

    Visibility is resolved far-to-near per triangle (painter's order); depth and normals are interpolated
    perspective-correctly at pixel centres (j + 0.5, i + 0.5).
    """
    z = verts[:, 2]
    uv = (verts @ k.T)[:, :2] / z[:, None]
    vn = camera_facing_vertex_normals(verts, tris)

    # 1/z and n/z are affine in screen space: fit each triangle's plane coefficients once.
    # Closed-form 3×3 inverses (adjugate columns are cross products of the rows): no LAPACK call per frame.
    r = np.concatenate([uv[tris], np.ones((len(tris), 3, 1))], axis=2)  # [F, 3, 3] rows (u, v, 1)
    adj = np.stack([np.cross(r[:, 1], r[:, 2]), np.cross(r[:, 2], r[:, 0]), np.cross(r[:, 0], r[:, 1])], axis=2)
    det = np.einsum("fj,fj->f", r[:, 0], adj[:, :, 0])
    ok = np.abs(det) > 1e-9
    attrs = np.concatenate([1.0 / z[tris][..., None], vn[tris] / z[tris][..., None]], axis=2)  # [F, 3, 4]
    coeff = np.einsum("fij,fjk->fik", adj, attrs) / np.where(ok, det, 1.0)[:, None, None]

    ids = np.zeros((size, size), np.int32)
    order = [f for f in np.argsort(-z[tris].max(1)) if ok[f]]
    pix = np.round((uv - 0.5) * 16).astype(np.int32)
    for f in order:
        cv2.fillConvexPoly(ids, pix[tris[f]], int(f) + 1, lineType=cv2.LINE_8, shift=4)
    depth = np.zeros((size, size), np.float32)
    normal = np.zeros((size, size, 3), np.float32)
    yy, xx = np.nonzero(ids)
    if len(yy) == 0:
        return depth, normal
    c = coeff.astype(np.float32)[ids[yy, xx] - 1]  # [P, 3, 4]
    vals = (xx + 0.5).astype(np.float32)[:, None] * c[:, 0] + (yy + 0.5).astype(np.float32)[:, None] * c[:, 1] + c[:, 2]
    depth[yy, xx] = 1.0 / np.maximum(vals[:, 0], 1e-6)
    n = vals[:, 1:]
    normal[yy, xx] = n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)
    return depth, normal


def encode_depth(depth: np.ndarray) -> np.ndarray:
    """Depth [S, S] metres → uint16 PNG payload (DEPTH_SCALE steps per metre)."""
    return np.clip(np.round(depth * DEPTH_SCALE), 0, 65535).astype(np.uint16)


def encode_normal(normal: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Unit normals [S, S, 3] → uint8 RGB (x, y, z mapped from [-1, 1] to [0, 255]); 0 where `depth` [S, S] is 0."""
    out = np.zeros(normal.shape, np.uint8)
    mask = depth > 0
    out[mask] = np.clip(np.round((normal[mask] + 1.0) * 127.5), 1, 255).astype(np.uint8)
    return out
