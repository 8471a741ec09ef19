"""Pieces of preprocessing on inputs with known answers: VFR → CFR, rotation, cropping, rasteriser, pose fit,
background plate."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from instag.bench.geometry import compare_maps, exact_depth_normal
from instag.data import facemesh as fm
from instag.data.crop import crop_square, frame_ranges, place_crop
from instag.data.geometry import camera_facing_vertex_normals, render_depth_normal
from instag.data.labels import background_plate
from instag.data.pose import face_signals, fit_pose, intrinsics
from instag.data.video import cfr_frame_count, iter_frames, probe, read_audio


def _write_vfr(path, times_s, rotation=0):
    """Frames whose grey level is 4 × their index, shown at irregular `times_s`; a 1 kHz tone from t = 0."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 32, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.time_base = Fraction(1, 1000)
        if rotation:
            vs.set_display_rotation(rotation)
        aus = c.add_stream("aac", rate=16000)
        aus.layout = "mono"
        for i, t in enumerate(times_s):
            img = np.full((32, 64, 3), 4 * i, np.uint8)
            img[:, :8] = 255  # a bright band on the left edge shows the orientation
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = int(round(t * 1000)), Fraction(1, 1000)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        n = int(16000 * (times_s[-1] + 0.1))
        tone = (0.25 * np.sin(2 * np.pi * 1000 * np.arange(n) / 16000)).astype(np.float32)
        for s in range(0, n, 1024):
            f = av.AudioFrame.from_ndarray(tone[None, s : s + 1024], format="flt", layout="mono")
            f.sample_rate, f.pts = 16000, s
            for p in aus.encode(f):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)


def test_variable_frame_rate_becomes_constant(tmp_path):
    rng = np.random.default_rng(1)
    times = np.cumsum(np.r_[0, rng.uniform(0.02, 0.09, 59)])  # 60 frames at 11–50 fps
    clip = tmp_path / "vfr.mp4"
    _write_vfr(clip, times)
    info = probe(clip, min_duration_s=1.0)
    n = cfr_frame_count(info, 25)
    assert abs(n - (times[-1] + 0.05) * 25) <= 2.5
    got = [int(round(img[:, 16:].mean() / 4)) for img in iter_frames(info, 25, n)]
    for i, g in enumerate(got):
        t = i / 25
        nearest = int(np.argmin(np.abs(times - t)))
        assert abs(times[g] - t) <= abs(times[nearest] - t) + 0.021, (i, g, nearest)  # ≈ the nearest frame
    audio = read_audio(info, 16000, int(round(n / 25 * 16000)))
    assert audio.shape == (int(round(n / 25 * 16000)),) and 0.1 < np.abs(audio).max() <= 0.3


def test_rotation_metadata_is_applied(tmp_path):
    clip = tmp_path / "rot.mp4"
    _write_vfr(clip, np.arange(40) / 10, rotation=90)
    info = probe(clip, min_duration_s=1.0)
    assert (info.width, info.height) == (32, 64)
    img = next(iter(iter_frames(info, 25, 5)))
    assert img.shape == (64, 32, 3)
    assert img[-8:].mean() > 200 and img[:-8].mean() < 120  # the left band turned counter-clockwise: bottom


def test_crop_pads_outside_the_frame():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 200
    out = crop_square(img, -50, -20, 100, 50)
    assert out.shape == (50, 50, 3)
    assert np.all(out == 200)  # replicated from the left part
    assert frame_ranges(np.array([0, 1, 2, 5, 7, 8])) == "0–2, 5, 7–8"


@pytest.mark.parametrize("lo, hi, side, extent", [(100.0, 300.0, 260, 512), (5.0, 120.0, 200, 512),
                                                    (400.0, 560.0, 200, 512), (-10.0, 597.0, 512, 512)])
def test_a_crop_lies_in_the_frame(lo, hi, side, extent):
    x0 = place_crop(lo, hi, side, extent)
    assert 0 <= x0 and x0 + side <= extent
    if 0 < (lo + hi - side) / 2 < extent - side:
        assert x0 == round((lo + hi - side) / 2)  # centred on the face where that is already inside


def test_background_plate_is_exact_up_to_the_person_edge():
    # A textured background behind a 16 × 8 "person" sliding right one pixel per frame, with a faint (below the
    # labels' person threshold) halo a pixel wide on its left.
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    frames, person = np.repeat(bg[None], 6, 0), np.zeros((6, 64, 64), np.uint8)
    for k in range(6):
        person[k, 8:24, 7 + k] = 100
        person[k, 8:24, 8 + k : 16 + k] = 255
        frames[k, 8:24, 8 + k : 16 + k] = 255
    plate = background_plate(frames, person)
    # Uncovered in at least one frame, even right beside the person or under its halo: the true background.
    assert np.array_equal(plate[8:24, 7:13], bg[8:24, 7:13]) and np.array_equal(plate[8:24, 16:22], bg[8:24, 16:22])
    assert np.array_equal(plate[:7], bg[:7])
    # Covered in every frame (columns 13–15): filled from the surroundings, not the person's white.
    assert plate[8:24, 13:16].max() < 255


def test_rasteriser_depth_and_normals_of_a_tilted_plane():
    size, f = 64, 80.0
    k = intrinsics(f, size)
    # A plane through (0, 0, 2) tilted about y: z = 2 + 0.5 x.  Two big triangles cover the view.
    xy = np.array([[-2, -2], [2, -2], [2, 2], [-2, 2]], np.float64)
    verts = np.c_[xy, 2 + 0.5 * xy[:, 0]]
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    depth, normal = render_depth_normal(verts, tris, k, size)
    j, i = 40, 20
    ray = np.linalg.inv(k) @ np.array([j + 0.5, i + 0.5, 1.0])
    z = 2 / (1 - 0.5 * ray[0])  # intersect z = 2 + 0.5 x with x = ray_x z
    assert depth[i, j] == pytest.approx(z, rel=1e-5)
    expect = np.array([0.5, 0, -1]) / np.linalg.norm([0.5, 0, -1])  # facing the camera (negative z)
    assert np.allclose(normal[i, j], expect, atol=1e-5)


def test_exact_reference_ray_cast_and_painter_on_a_tilted_plane():
    size, f = 64, 80.0
    k = intrinsics(f, size)
    xy = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], np.float64)  # inside the view: edges
    verts = np.c_[xy, 2 + 0.5 * xy[:, 0]]
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    exact = exact_depth_normal(verts, tris, k, size)
    ray = np.linalg.inv(k) @ np.array([40.5, 20.5, 1.0])
    assert exact[0][20, 40] == pytest.approx(2 / (1 - 0.5 * ray[0]), rel=1e-12)
    # Pixel centres inside the quad's projection (convex: on the inner side of all four edges), and no others.
    uv = (verts @ k.T)[:, :2] / verts[:, 2:]
    jj, ii = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    e = [(uv[(a + 1) % 4] - uv[a]) for a in range(4)]
    signs = [np.sign(e[a][0] * (ii - uv[a][1]) - e[a][1] * (jj - uv[a][0])) for a in range(4)]
    assert np.array_equal(exact[0] > 0, np.all(np.array(signs) == signs[0][32, 32], axis=0))
    c = compare_maps(render_depth_normal(verts, tris, k, size), exact)
    assert c["px_only_want"] == 0 and c["depth_max_abs_mm"] < 0.01 and c["normal_max_deg"] < 0.1  # float32


def test_vertex_normals_face_the_camera_whatever_the_winding():
    # Two triangles of the plane z = 2 wound opposite ways, a vertex no triangle uses, a fold at x = 1.
    verts = np.array([[-1, -1, 2], [1, -1, 2], [-1, 1, 2], [1, 1, 2], [9, 9, 9], [2, -1, 1], [2, 1, 1]], np.float64)
    tris = np.array([[0, 1, 2], [1, 2, 3], [1, 5, 6]])
    vn = camera_facing_vertex_normals(verts, tris)
    assert np.allclose(vn[[0, 2, 3]], [0, 0, -1])
    assert np.allclose(vn[4], 0)
    fold = np.array([1, 0, 1]) / np.sqrt(2) * [-1, 0, -1]  # the folded triangle's normal, turned to the camera
    mean = fold + [0, 0, -2]  # vertex 1 is in both plane triangles and the fold: an unweighted mean
    assert np.allclose(vn[5], fold) and np.allclose(vn[1], mean / np.linalg.norm(mean))


def test_face_mesh_topology():
    tris = fm.mesh_triangles()
    assert tris.shape[1] == 3 and tris.max() < fm.N_MESH_VERTICES and len(tris) > 850
    c = fm.contours()
    assert len(c["face_oval"]) == 36 and len(c["lips_outer"]) == 20 and len(c["lips_inner"]) == 20
    # The lip set written out for training and evaluation is the one mediapipe's edges give.
    assert np.array_equal(fm.LIP_INDICES, np.unique(np.concatenate([c["lips_outer"], c["lips_inner"]])))


def _synthetic_landmarks(t_frames: int, focal: float, size: int):
    """A rigid 3D 'face' (478 points, metres) moved by known rotations and projected mediapipe-style."""
    rng = np.random.default_rng(0)
    shape = rng.normal(0, 0.035, (478, 3)) * [1.0, 1.3, 0.5]
    shape[fm.RIGHT_EYE_OUTER], shape[fm.LEFT_EYE_OUTER] = [-0.045, -0.02, 0], [0.045, -0.02, 0]
    shape[fm.FOREHEAD], shape[fm.CHIN] = [0, -0.08, 0], [0, 0.1, 0]
    yaw = 15 * np.sin(np.linspace(0, 2 * np.pi, t_frames))
    rots = Rotation.from_euler("yx", np.c_[yaw, 0.3 * yaw], degrees=True)
    pts = np.zeros((t_frames, 478, 3))
    for t in range(t_frames):
        cam = rots[t].apply(shape) + [0.01, 0.0, 0.5]
        uv = cam[:, :2] / cam[:, 2:] * focal + size / 2
        pts[t] = np.c_[uv, (cam[:, 2] - 0.5) * focal / 0.5]
    return pts.astype(np.float32), rots


def test_pose_fit_recovers_rotation():
    size = 256
    pts, rots = _synthetic_landmarks(100, 300.0, size)
    fit = fit_pose(pts, size, fps=25, cutoff_hz=4.0, default_fov_deg=24.0, eye_distance_m=0.09)
    est = Rotation.from_matrix(fit.viewmats[:, :3, :3].astype(np.float64))
    rel_est = est * est[0].inv()
    rel_true = rots * rots[0].inv()
    err = np.degrees((rel_est * rel_true.inv()).magnitude())
    assert np.median(err) < 1.0 and err.max() < 3.0
    assert fit.reprojection_px < 2.0
    sig = face_signals(fit.local_shapes)
    assert sig["expression"].shape == (100, 8)
    mouth = sig["mouth_open"]  # a rigid face keeps its mouth; perspective leaves ~3 % in the weak-perspective lift
    assert np.ptp(mouth) < 0.05 * mouth.mean()


@pytest.mark.parametrize("ext,vcodec,acodec", [("webm", "libvpx-vp9", "libopus"), ("mkv", "hevc", "flac"),
                                               ("avi", "mpeg4", "mp3"), ("mov", "h264", "aac")])
def test_containers_and_codecs(tmp_path, ext, vcodec, acodec):
    clip = tmp_path / f"clip.{ext}"
    with av.open(str(clip), "w") as c:
        vs = c.add_stream(vcodec if vcodec in av.codecs_available else "libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 96, 64, "yuv420p"
        aus = c.add_stream(acodec, rate=48000)
        aus.layout = "stereo"
        for i in range(90):
            img = np.full((64, 96, 3), 2 * i, np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        tone = 0.2 * np.sin(2 * np.pi * 300 * np.arange(48000 * 3) / 48000)
        step = 1024  # PyAV converts the planar float frames to each encoder's own format and frame size
        for s in range(0, len(tone) - step + 1, step):
            chunk = np.repeat(tone[None, s : s + step], 2, 0).astype(np.float32)
            f = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            f.sample_rate, f.pts = 48000, s
            for p in aus.encode(f):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)
    info = probe(clip, min_duration_s=2.5)
    n = cfr_frame_count(info, 25)
    assert 73 <= n <= 75  # 3 s at 25 fps
    frames = list(iter_frames(info, 25, n))
    assert len(frames) == n and frames[0].shape == (64, 96, 3)
    assert frames[-1].mean() > frames[0].mean() + 100  # time runs forward through the resampled frames
    audio = read_audio(info, 16000, int(round(n / 25 * 16000)))
    assert 0.1 < np.abs(audio[4000:-4000]).max() < 0.3


def test_mediapipe_prints_nothing_of_its_own():
    # Its graphs start on worker threads after construction returns and print start-up notes to stderr then; a
    # user's terminal must not show them. A fresh process, since some print only once per process.
    code = ("import time, numpy as np; from instag.data import facemesh as fm\n"
            "for make in (fm.FaceDetector, fm.FaceTracker, fm.PersonSegmenter):\n"
            "    m = make(); time.sleep(0.3); m.close()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "INSTAG_MEDIAPIPE_LOGS"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
