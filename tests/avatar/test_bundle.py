"""The avatar dir: round trip, and the loader refusing unknown versions, pickles and incomplete files."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from instag.avatar import AVATAR_VERSION, load_avatar, save_avatar
from instag.avatar.driving import DriveLayers, Driver
from instag.config.model import AudioConfig, ModelConfig, MotionFieldConfig, TriplaneConfig
from instag.config.recipe import to_dict
from instag.errors import FormatVersionError, InputError
from instag.gaussians import GaussianField, Region
from instag.motion import MotionModel
from instag.render import FrameCondition, render_avatar
from instag.render.views import view_range

SIZE = 24


def _cfg() -> ModelConfig:
    plane = TriplaneConfig(n_levels=2, log2_table_size=8, base_resolution=4, max_resolution=16)
    return ModelConfig(audio=AudioConfig(feature_dim=8, window=4, hidden_dim=8, code_dim=4, smooth_window=4),
                       umf=MotionFieldConfig(triplane=plane, hidden_dim=8, n_layers=1),
                       personalized=MotionFieldConfig(triplane=plane, hidden_dim=8, n_layers=1),
                       lip_coeffs=("mouth_open",))


@pytest.fixture
def avatar_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    cfg = _cfg()
    pts = torch.randn(60, 3) * 0.03
    region = torch.where(pts[:, 1] > 0.02, int(Region.LIPS), int(Region.FACE))
    face = GaussianField.from_points(pts, torch.rand(60, 3), cfg.gaussians, region=region)
    mouth = GaussianField.from_points(torch.randn(10, 3) * 0.01, torch.rand(10, 3), cfg.gaussians)
    motion = MotionModel(cfg, with_aligner=True)
    t = 3
    view = np.tile(np.eye(4, dtype=np.float32), (t, 1, 1))
    view[:, 2, 3] = 0.4
    drive = {"viewmats": view, "blink": np.zeros(t, np.float32), "expression": np.zeros((t, 8), np.float32),
             "mouth_open": np.zeros(t, np.float32), "frame_index": np.arange(t), "crop_box": np.array([0, 0, 64])}
    plate = np.full((SIZE, SIZE, 3), 90, np.uint8)
    torso = {i: np.zeros((SIZE, SIZE, 4), np.uint8) for i in range(t)}
    torso[1][-4:, :, :] = (10, 20, 200, 255)
    torso[2][-6:-4, :, :] = (200, 20, 10, 128)  # a hair band: drawn over the head at half weight
    meta = {"recipe": {"model": to_dict(cfg)}, "audio_feature": "mel", "audio_feature_shape": [4, 8],
            "image_size": [SIZE, SIZE], "intrinsics": {"fx": 30.0, "fy": 30.0, "cx": SIZE / 2, "cy": SIZE / 2},
            "fps": 25.0, "provenance": {"test": True}}
    path = tmp_path / "av"
    save_avatar(path, meta, face, mouth, motion, drive, plate, torso)
    return path


def _cond(av) -> FrameCondition:
    g = torch.Generator().manual_seed(1)
    a = av.cfg.audio
    return FrameCondition(torch.randn(a.smooth_window, a.window, a.feature_dim, generator=g) - 50,
                          torch.zeros(av.cfg.expression_dim), torch.from_numpy(av.drive["viewmats"][0]), av.K,
                          SIZE, SIZE, torch.from_numpy(av.layers(1)[0]).float() / 255)


def test_round_trip_renders_identically(avatar_dir):
    a, b = load_avatar(avatar_dir), load_avatar(avatar_dir)
    assert a.meta["format_version"] == AVATAR_VERSION and a.face.num_gaussians == 60
    assert (a.face.region_mask(Region.LIPS)).any()
    img = a.render(_cond(a)).image
    assert img.shape == (SIZE, SIZE, 3)
    assert torch.equal(img, b.render(_cond(b)).image)
    # Rendering reuses the motion's frame-independent terms; the frame is the one computed from scratch.
    with torch.no_grad():
        fresh = render_avatar(a.face, a.mouth, a.motion, _cond(a), backend=a.cfg.backend).image
    assert torch.equal(a.render(_cond(a)).image, fresh)
    # The torso layer of drive frame 1 is replayed over the plate.
    assert (a.layers(1)[0][-1] == (10, 20, 200)).all() and (a.layers(0)[0] == 90).all()
    assert a.layers(1)[1] is None  # no hair band in this layer


def test_a_driven_frame_carries_what_its_torso_layer_draws_over_the_head(avatar_dir):
    av = load_avatar(avatar_dir)
    under, over = av.layers(2)
    assert (under == 90).all() and over is not None and (over[-6:-4, :, 3] == 128).all() and (over[:-6, :, 3] == 0).all()
    a = av.cfg.audio
    driver = Driver(av, torch.zeros(6, a.window, a.feature_dim))
    frames = {driver.drive_index(i): driver.condition(i).cond for i in range(6)}
    assert frames[0].foreground is None and frames[1].foreground is None
    fg = frames[2].foreground
    assert fg.shape == (SIZE, SIZE, 4) and torch.allclose(fg[-5, 0], torch.tensor([200, 20, 10, 128]) / 255.0)
    plain = dataclasses.replace(frames[2], foreground=None)
    with torch.no_grad():
        drawn, bare = av.render(frames[2]).image, av.render(plain).image
    assert torch.allclose(drawn[-5], bare[-5] + (128 / 255) * (fg[-5, :, :3] - bare[-5]))
    assert torch.equal(drawn[:-6], bare[:-6])


def test_drivers_sharing_layers_decode_each_torso_layer_once_and_drive_the_same_frames(avatar_dir, monkeypatch):
    av = load_avatar(avatar_dir)
    reads = []
    own_layers = av.layers
    monkeypatch.setattr(av, "layers", lambda j: reads.append(j) or own_layers(j))
    a = av.cfg.audio
    shared = DriveLayers(av, SIZE)
    drivers = [Driver(av, torch.randn(7, a.window, a.feature_dim), layers=shared) for _ in range(3)]
    private = Driver(av, drivers[0].features)
    for i in range(7):
        for d in drivers:
            d.condition(i)
    assert sorted(reads) == list(range(av.n_drive_frames))  # once each, for all three Drivers
    for i in range(7):
        got, want = drivers[0].condition(i).cond, private.condition(i).cond
        assert torch.equal(got.background, want.background)
        assert (got.foreground is None) == (want.foreground is None)
        assert got.foreground is None or torch.equal(got.foreground, want.foreground)
    with pytest.raises(ValueError, match="shared layers"):
        Driver(av, drivers[0].features, size=2 * SIZE, layers=shared)
    with pytest.raises(ValueError, match="another avatar"):
        Driver(load_avatar(avatar_dir), drivers[0].features, layers=shared)


def test_motion_calibration_round_trips_and_is_validated(avatar_dir, tmp_path):
    a = load_avatar(avatar_dir)
    assert a.motion.speaker_code is None and a.motion.lip_bias.tolist() == [0.0]
    assert a.motion.lip_gain.tolist() == [1.0]
    code = torch.linspace(-1, 1, a.cfg.audio.code_dim)
    a.motion.set_calibration(code, [0.3], [0.45])
    path = tmp_path / "calibrated"
    save_avatar(path, {k: v for k, v in a.meta.items() if k not in ("format", "format_version", "gaussians")},
                a.face, a.mouth, a.motion, a.drive, a.plate, {i: a.torso(i) for i in range(a.n_drive_frames)})
    b = load_avatar(path)
    assert torch.equal(b.motion.speaker_code, code) and float(b.motion.lip_bias[0]) == pytest.approx(0.3)
    assert float(b.motion.lip_gain[0]) == pytest.approx(0.45)
    assert torch.equal(a.render(_cond(a)).image, b.render(_cond(b)).image)
    meta_path = path / "avatar.json"
    doc = json.loads(meta_path.read_text())
    # Avatars written when the head read the opening alone, one before the gain existed: it moves unscaled.
    meta_path.write_text(json.dumps({**doc, "motion_calibration": {"speaker_code": None, "opening_bias": 0.1,
                                                                   "opening_gain": 0.5}}))
    old = load_avatar(path).motion
    assert float(old.lip_bias[0]) == pytest.approx(0.1) and float(old.lip_gain[0]) == 0.5
    meta_path.write_text(json.dumps({**doc, "motion_calibration": {"speaker_code": None, "opening_bias": 0.1}}))
    assert load_avatar(path).motion.lip_gain.tolist() == [1.0]
    for bad in ({"speaker_code": [1.0], "lip_bias": [0.0], "lip_gain": [1.0]},
                {"speaker_code": None, "lip_bias": ["x"], "lip_gain": [1.0]},
                {"speaker_code": None, "lip_bias": [float("nan")], "lip_gain": [1.0]}, {"lip_bias": [0.0]},
                {"speaker_code": None, "lip_bias": [0.0], "lip_gain": [float("inf")]},
                {"speaker_code": None, "lip_bias": [0.0, 1.0], "lip_gain": [1.0, 1.0]},
                {"speaker_code": None, "opening_bias": "x"}):
        meta_path.write_text(json.dumps({**doc, "motion_calibration": bad}))
        with pytest.raises(InputError, match="motion_calibration"):
            load_avatar(path)


def test_unknown_version_is_refused(avatar_dir):
    meta = json.loads((avatar_dir / "avatar.json").read_text())
    meta["format_version"] = AVATAR_VERSION + 1
    (avatar_dir / "avatar.json").write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match="version"):
        load_avatar(avatar_dir)


def test_pickled_weights_are_refused_not_executed(avatar_dir, tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (avatar_dir / "model.safetensors").write_bytes(pickle.dumps({"face.means": Evil()}))
    with pytest.raises(InputError, match="safetensors"):
        load_avatar(avatar_dir)
    assert not marker.exists()


def test_pickled_drive_arrays_are_refused(avatar_dir):
    np.savez(avatar_dir / "drive.npz", viewmats=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="drive.npz"):
        load_avatar(avatar_dir)


def test_not_an_avatar(tmp_path):
    with pytest.raises(InputError, match="avatar.json"):
        load_avatar(tmp_path)
    (tmp_path / "avatar.json").write_text(json.dumps({"format": "something-else", "format_version": 1}))
    with pytest.raises(InputError, match="not an instag avatar"):
        load_avatar(tmp_path)


@pytest.mark.parametrize("bad", [{"yaw_deg": [5, 10], "pitch_deg": [-3, 3]}, {"yaw_deg": [-5, 5]},
                                 {"yaw_deg": [-5, 5, 9], "pitch_deg": [-3, 3]},
                                 {"yaw_deg": [-5, "x"], "pitch_deg": [-3, 3]}, [1, 2]])
def test_the_view_range_is_read_from_avatar_json_and_checked(avatar_dir, bad):
    a = load_avatar(avatar_dir)  # written without one: taken from the training views it replays
    assert a.view == view_range(a.drive["viewmats"])
    meta_path = avatar_dir / "avatar.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"view_range": {"yaw_deg": [-12.5, 4.0], "pitch_deg": [-6.0, 2.0]}}))
    view = load_avatar(avatar_dir).view
    assert [round(math.degrees(v), 6) for v in (*view.yaw, *view.pitch)] == [-12.5, 4.0, -6.0, 2.0]
    meta_path.write_text(json.dumps(meta | {"view_range": bad}))
    with pytest.raises(InputError, match="view_range"):
        load_avatar(avatar_dir)
