"""`instag export-ply`: the avatar's Gaussians (neutral, and deformed as at a driven frame) round-trip through
the 3DGS PLY file exactly."""

from __future__ import annotations

import torch
from instag_testing import run_instag

from instag.avatar.bundle import load_avatar
from instag.avatar.driving import Driver, audio_features, frame_count
from instag.gaussians import GaussianField, read_ply
from instag.media.audio import decode_audio

NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


def _assert_same(a: GaussianField, b: GaussianField) -> None:
    for name in NAMES:
        assert torch.equal(getattr(a, name).detach(), getattr(b, name).detach()), name


def test_neutral_export_round_trips(tiny_avatar, tmp_path):
    out = tmp_path / "neutral.ply"
    r = run_instag("export-ply", tiny_avatar, "-o", out)
    assert r.returncode == 0, r.stderr
    av = load_avatar(tiny_avatar)
    back = read_ply(out)
    assert back.num_gaussians == av.face.num_gaussians + av.mouth.num_gaussians
    _assert_same(back, GaussianField.concatenate(av.face, av.mouth))


def test_driven_frame_export_is_the_rendered_frames_gaussians(tiny_avatar, audio_files, tmp_path):
    out = tmp_path / "frame5.ply"
    r = run_instag("export-ply", tiny_avatar, "-o", out, "--audio", audio_files["wav"], "--frame", "5")
    assert r.returncode == 0, r.stderr
    av = load_avatar(tiny_avatar)
    audio = decode_audio(audio_files["wav"])
    n = frame_count(audio.duration_s, av.meta["fps"])
    cond = Driver(av, audio_features(av, audio.mono16k, n)).condition(5).cond
    m = av.render(cond).motion  # the motion the rendered frame used
    face = av.face
    expected = GaussianField.concatenate(
        face.with_motion(m.face.d_means, m.face.d_log_scales, m.face.d_quats), av.mouth.with_motion(m.mouth_d_means))
    back = read_ply(out)
    _assert_same(back, expected)
    assert not torch.equal(back.means, GaussianField.concatenate(av.face, av.mouth).means)  # it moved


def test_frame_beyond_the_audio_is_refused(tiny_avatar, audio_files, tmp_path):
    r = run_instag("export-ply", tiny_avatar, "-o", tmp_path / "x.ply", "--audio", audio_files["flac"],
                   "--frame", "500")
    assert r.returncode == 2 and "--frame 500" in r.stderr
    assert not (tmp_path / "x.ply").exists()


def test_frame_without_audio_is_refused(tiny_avatar, tmp_path):
    r = run_instag("export-ply", tiny_avatar, "-o", tmp_path / "x.ply", "--frame", "3")
    assert r.returncode == 2 and "--frame needs --audio" in r.stderr
