"""The dataset dir's own files: meta.json written and read back, the face mesh as a PLY (and the older npz)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from instag.data import facemesh as fm
from instag.data.dataset import MESH_NPZ, MESH_PLY, Dataset, load_dataset, write_face_mesh, write_meta
from instag.errors import InputError


def _mesh() -> tuple[np.ndarray, np.ndarray]:
    """The mediapipe triangles on a bumpy sheet [478, 3] (iris points unused by any triangle)."""
    rng = np.random.default_rng(0)
    verts = rng.normal(0, 0.05, (fm.N_LANDMARKS, 3)).astype(np.float32)
    return verts, fm.mesh_triangles()


def _dataset(root, mesh_rel: str | None) -> Dataset:
    (root / "geometry").mkdir(parents=True, exist_ok=True)
    geometry = {} if mesh_rel is None else {"mesh": mesh_rel}
    return Dataset(root, {"geometry": geometry})


def test_meta_written_is_what_the_reader_reads(tmp_path):
    write_meta(tmp_path, n_frames=50, fps=25.0, size=256, focal=300.0, focal_fitted=True, n_train=40,
               source={"path": "clip.mp4"}, crop_box={"x0": 1}, audio={"sample_rate": 16000, "features": {}},
               tracking={}, preprocess={})
    ds = load_dataset(tmp_path)
    assert ds.n_frames == 50 and ds.fps == 25.0 and ds.size == 256
    assert np.array_equal(ds.intrinsics, [[300, 0, 128], [0, 300, 128], [0, 0, 1]])
    assert np.array_equal(ds.train_indices, np.arange(40)) and np.array_equal(ds.test_indices, np.arange(40, 50))
    assert json.loads((tmp_path / "meta.json").read_text())["geometry"]["mesh"] == MESH_PLY


def test_face_mesh_ply_round_trips_and_opens_as_a_mesh(tmp_path):
    verts, tris = _mesh()
    ds = _dataset(tmp_path, MESH_PLY)
    write_face_mesh(tmp_path, verts, tris)
    got_v, got_t = ds.face_mesh()
    assert got_v.dtype == np.float32 and np.array_equal(got_v, verts)  # float32 in the file: no rounding
    assert got_t.dtype == np.int64 and np.array_equal(got_t, tris)
    # What a viewer sees: a triangle mesh with unit normals at every vertex a triangle uses.
    mesh = trimesh.load(tmp_path / MESH_PLY, process=False)
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) == len(tris)
    used = np.unique(tris)
    assert np.allclose(np.linalg.norm(mesh.vertex_normals[used], axis=1), 1.0, atol=1e-5)
    assert b"property float nx" in (tmp_path / MESH_PLY).read_bytes()[:400]


@pytest.mark.parametrize("named", [MESH_NPZ, None])
def test_older_datasets_keep_their_npz_mesh(tmp_path, named):
    verts, tris = _mesh()
    ds = _dataset(tmp_path, named)
    np.savez(tmp_path / MESH_NPZ, vertices=verts, triangles=tris)
    got_v, got_t = ds.face_mesh()
    assert np.array_equal(got_v, verts) and np.array_equal(got_t, tris)


def test_mesh_outside_the_layout_is_refused(tmp_path):
    ds = _dataset(tmp_path, "../../etc/passwd")
    with pytest.raises(InputError, match="geometry.mesh"):
        ds.face_mesh()


@pytest.mark.parametrize("damage", ["truncated", "text", "index_out_of_range"])
def test_damaged_ply_is_one_line(tmp_path, damage):
    verts, tris = _mesh()
    ds = _dataset(tmp_path, MESH_PLY)
    path = tmp_path / MESH_PLY
    write_face_mesh(tmp_path, verts, tris)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    elif damage == "text":
        path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\nx\n")
    else:  # a well-formed file whose triangle names a vertex that is not there
        head = (f"ply\nformat ascii 1.0\nelement vertex {len(verts)}\nproperty float x\nproperty float y\n"
                f"property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n")
        body = "".join(f"{x} {y} {z}\n" for x, y, z in verts) + f"3 0 1 {fm.N_LANDMARKS + 3}\n"
        path.write_text(head + body)
    with pytest.raises(InputError) as exc:
        ds.face_mesh()
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
