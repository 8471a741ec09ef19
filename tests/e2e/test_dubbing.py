"""`instag render`: dubbed MP4s from audio of several formats and rates, paste-back into the source frames, a
batch with a corrupt audio (reported, exit 1, the others done) and its resumed re-run; ping-pong replay."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile
from instag_testing import run_instag

from e2e.conftest import CLIP_FRAMES, CROP, SIZE
from instag.avatar.bundle import load_avatar
from instag.avatar.driving import pingpong_index
from instag.data.video import iter_frames, probe

FPS = 25.0


def _audio_duration(path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        n = sum(f.samples for f in c.decode(s))
        return n / s.codec_context.sample_rate


def _read_mp4(path):
    """(video frames [T, H, W, 3] uint8, video duration s, audio duration s, stream counts)."""
    with av.open(str(path)) as c:
        counts = (len(c.streams.video), len(c.streams.audio))
        vs = c.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(vs)])
        rate = float(vs.average_rate)
    return frames, len(frames) / rate, _audio_duration(path), counts, rate


@pytest.mark.slow
def test_two_audio_formats_give_two_decodable_dubbed_mp4s(tiny_avatar, audio_files, tmp_path):
    out = tmp_path / "out"
    r = run_instag("render", tiny_avatar, "--audio", audio_files["wav"], "--audio", audio_files["m4a"],
                   "-o", out, "--crf", "18")
    assert r.returncode == 0, r.stderr
    for key, name in (("wav", "line_de.mp4"), ("m4a", "line_it.mp4")):
        frames, video_s, audio_s, counts, rate = _read_mp4(out / name)
        assert counts == (1, 1)
        assert rate == FPS and frames.shape[1:] == (SIZE, SIZE, 3)
        source_s = _audio_duration(audio_files[key])
        assert abs(video_s - source_s) <= 1 / FPS, (name, video_s, source_s)
        assert abs(audio_s - source_s) <= 1 / FPS, (name, audio_s, source_s)
        assert frames.reshape(len(frames), -1).std(axis=1).min() > 5  # not flat images
        assert np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3)).max() > 0.5  # they move
    assert sorted(p.name for p in out.iterdir()) == ["line_de.mp4", "line_it.mp4"]  # no temporaries left


@pytest.mark.slow
def test_render_size_scales_the_frames(tiny_avatar, audio_files, tmp_path):
    r = run_instag("render", tiny_avatar, "--audio", audio_files["flac"], "-o", tmp_path, "--size", "48")
    assert r.returncode == 0, r.stderr
    frames, video_s, *_ = _read_mp4(tmp_path / "line_fr.mp4")
    assert frames.shape[1:] == (48, 48, 3)
    assert abs(video_s - soundfile.info(str(audio_files["flac"])).duration) <= 1 / FPS


@pytest.mark.slow
def test_paste_back_keeps_the_source_frames_outside_the_crop(pasteable_avatar, audio_files, tmp_path):
    # crf 0 makes x264 lossless in YUV 4:2:0; what remains is the RGB → YUV 4:2:0 → RGB round trip of smooth
    # frames (chroma halved, 8-bit rounding twice): a few levels per pixel, ~1 on average.
    r = run_instag("render", pasteable_avatar, "--audio", audio_files["flac"], "-o", tmp_path, "--paste-back",
                   "--crf", "0")
    assert r.returncode == 0, r.stderr
    frames, video_s, *_ = _read_mp4(tmp_path / "line_fr.mp4")
    meta = load_avatar(pasteable_avatar).meta
    clip = probe(meta["provenance"]["source"]["path"], 0.0)
    source = np.stack(list(iter_frames(clip, FPS, CLIP_FRAMES)))
    assert frames.shape[1:] == (120, 176, 3)  # the source resolution
    x0, y0, side = CROP
    outside = np.ones((120, 176), bool)
    outside[max(0, y0 - 1): y0 + side + 1, max(0, x0 - 1): x0 + side + 1] = False  # ±1 px: chroma of the seam
    drive_frames = load_avatar(pasteable_avatar).drive["frame_index"]
    changed = []
    for i, img in enumerate(frames):
        src = source[int(drive_frames[pingpong_index(i, len(drive_frames))])]
        diff = np.abs(img.astype(np.int16) - src.astype(np.int16))
        assert diff[outside].mean() < 1.5 and np.percentile(diff[outside], 99.9) <= 8, i
        inside = diff[max(0, y0) + 20: y0 + side - 20, x0 + 20: x0 + side - 20]
        changed.append(inside.mean())
    assert min(changed) > 10  # the rendered head is in the crop


def test_paste_back_without_the_source_clip_is_a_clear_error(pasteable_avatar, audio_files, tmp_path):
    r = run_instag("render", pasteable_avatar, "--audio", audio_files["flac"], "-o", tmp_path / "o", "--paste-back",
                   "--source", tmp_path / "missing.mp4")
    assert r.returncode == 1
    assert "missing.mp4: no such file" in r.stderr + r.stdout


@pytest.mark.slow
def test_batch_reports_a_corrupt_audio_runs_the_rest_and_resumes(tiny_avatar, audio_files, tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("audio,output,paste_back\n"
                        f"{audio_files['wav']},de.mp4,0\n"
                        f"{audio_files['corrupt']},broken.mp4,\n"
                        f"{audio_files['silence']},quiet/silence.mp4\n")
    out = tmp_path / "out"
    r = run_instag("render", tiny_avatar, "--manifest", manifest, "-o", out)
    assert r.returncode == 1
    text = r.stdout + r.stderr
    assert "broken.wav" in text and "unreadable or not an audio file" in text
    assert "1 of 3 job(s) failed" in text
    assert (out / "de.mp4").is_file() and (out / "quiet" / "silence.mp4").is_file()
    assert not (out / "broken.mp4").exists()
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["de.mp4", "silence.mp4"]
    _, video_s, _, counts, _ = _read_mp4(out / "quiet" / "silence.mp4")  # silence is fine
    assert counts == (1, 1) and abs(video_s - 0.5) <= 1 / FPS

    stamp = (out / "de.mp4").stat().st_mtime_ns
    again = run_instag("render", tiny_avatar, "--manifest", manifest, "-o", out)
    assert again.returncode == 1
    assert again.stdout.count("skipped") == 2
    assert (out / "de.mp4").stat().st_mtime_ns == stamp


def test_manifest_errors_name_the_row(tiny_avatar, tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("a.wav,a.mp4\nb.wav\n")
    r = run_instag("render", tiny_avatar, "--manifest", manifest, "-o", tmp_path)
    assert r.returncode == 2 and "jobs.csv:2" in r.stderr


def test_audio_and_manifest_are_exclusive(tiny_avatar, tmp_path):
    r = run_instag("render", tiny_avatar, "-o", tmp_path)
    assert r.returncode == 2 and "--manifest" in r.stderr


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_pingpong_replay_never_jumps(n):
    seq = [pingpong_index(i, n) for i in range(5 * n + 3)]
    assert set(seq) == set(range(n))
    assert all(abs(a - b) <= 1 for a, b in zip(seq, seq[1:], strict=False))
    if n == 4:
        assert seq[:9] == [0, 1, 2, 3, 2, 1, 0, 1, 2]
