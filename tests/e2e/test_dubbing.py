"""`instag render`: dubbed MP4s from audio of several formats and rates, paste-back into the source frames (plain
and phone-rotated sources, dubs longer and shorter than the clip), a batch with a corrupt audio (reported, exit 1,
the others done) and its resumed re-run; ping-pong replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from instag_testing import run_instag

from e2e.conftest import CROP, SIZE, source_frame, speech_like
from instag.avatar.bundle import load_avatar
from instag.avatar.driving import pingpong_index
from instag.avatar.dubbing import RenderOptions, jobs_from_audio, read_manifest, run_jobs
from instag.avatar.source_video import SourceVideo
from instag.data.video import probe, sha256_of
from instag.errors import InputError
from instag.media.encoding import Encoding
from instag.media.mp4 import Mp4Writer

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


def with_rotation(src: Path, dst: Path, degrees: int) -> Path:
    """A copy of clip `src` (streams copied, not re-encoded) that players show rotated by `degrees` (CCW)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        out.streams.video[0].set_display_rotation(degrees)
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return dst


def clip_at_30fps(path: Path, n_frames: int) -> Path:
    """H.264 (crf 0) + AAC clip of `source_frame`s at 30 fps."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt, vs.options = 176, 120, "yuv420p", {"crf": "0"}
        aus = c.add_stream("aac", rate=16000, layout="mono")
        for i in range(n_frames):
            c.mux(vs.encode(av.VideoFrame.from_ndarray(source_frame(i), format="rgb24")))
        c.mux(vs.encode(None))
        f = av.AudioFrame.from_ndarray(np.zeros((1, 16000 * n_frames // 30), np.float32), format="flt", layout="mono")
        f.sample_rate, f.pts = 16000, 0
        c.mux(aus.encode(f))
        c.mux(aus.encode(None))
    return path


def _pasteable_copy(pasteable_avatar: Path, root: Path, clip: Path, width: int, height: int,
                    crop: tuple[int, int, int]) -> Path:
    """The pasteable avatar made from `clip` (shown width × height) with crop box `crop`."""
    out = root / "avatar"
    shutil.copytree(pasteable_avatar, out)
    meta = json.loads((out / "avatar.json").read_text())
    meta["provenance"]["source"] = {"path": str(clip), "sha256": sha256_of(clip), "width": width, "height": height}
    (out / "avatar.json").write_text(json.dumps(meta))
    with np.load(out / "drive.npz") as z:
        drive = {k: z[k] for k in z.files}
    drive["crop_box"] = np.array(crop, np.int64)
    np.savez(out / "drive.npz", **drive)
    return out


def _source_of(avatar_dir: Path) -> Path:
    return Path(load_avatar(avatar_dir).meta["provenance"]["source"]["path"])


@pytest.fixture(scope="module")
def rotated_avatar(pasteable_avatar, tmp_path_factory) -> Path:
    """The pasteable avatar, its source clip stored as a phone stores portrait video: coded 176×120, shown rotated
    90° (120×176); the crop box is in shown pixels."""
    root = tmp_path_factory.mktemp("rotated")
    clip = with_rotation(_source_of(pasteable_avatar), root / "portrait.mp4", 90)
    return _pasteable_copy(pasteable_avatar, root, clip, 120, 176, ROTATED_CROP)


@pytest.fixture(scope="module")
def fast_avatar(pasteable_avatar, tmp_path_factory) -> Path:
    """The pasteable avatar (25 fps) whose source clip runs at 30 fps: its 10 clip frames span 12 of the source."""
    root = tmp_path_factory.mktemp("fast")
    clip = clip_at_30fps(root / "fast.mp4", 12)
    return _pasteable_copy(pasteable_avatar, root, clip, 176, 120, CROP)


ROTATED_CROP = (20, 50, 96)  # x0, y0, side in the shown 120×176 frame (reaching past its right edge)


# x264's choices (adaptive quantisers, references) for the pixels outside the head shift with what is inside it,
# so two encodes of frames that differ only there differ outside too, by codec loss: at crf 18 on these smooth
# 176×120 frames by 39–45 dB. A lower crf for both keeps that loss below the 40 dB the test holds the rest to.
TEST_CRF = 12


def _reencoded_source(avatar_dir: Path, n_frames: int, rate: float, path: Path) -> Path:
    """The source frames the dub replays (ping-pong at the source's `rate` over the source frames the clip's
    training frames span), encoded as the dub is (TEST_CRF, the paste-back preset, rotation, colour): what the
    dub's pixels outside the head should equal up to codec loss."""
    preset = Encoding().preset_for(paste_back=True)
    src = SourceVideo(_source_of(avatar_dir), rate)
    span = int(len(load_avatar(avatar_dir).drive["frame_index"]) * rate / FPS + 1e-6)
    try:
        silence = np.zeros((1, int(16000 * n_frames / rate)), np.float32)  # a clip has audio
        with Mp4Writer(path, src.coded_width, src.coded_height, rate, silence, 16000, crf=TEST_CRF, preset=preset,
                       prepare=src.frame, rotation_deg=src.rotation_deg, colour=src.colour) as writer:
            for i in range(n_frames):
                writer.write(pingpong_index(i, span))
    finally:
        src.close()
    return path


def _shown_frames(path: Path) -> list[np.ndarray]:
    """Every frame of the MP4 as a player shows it (rotation applied), RGB [H, W, 3] uint8."""
    k = probe(path, 0.0).rotation_k
    with av.open(str(path)) as c:
        return [np.rot90(f.to_ndarray(format="rgb24"), k) for f in c.decode(c.streams.video[0])]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")


@pytest.mark.slow
@pytest.mark.parametrize(("which", "seconds", "rate"), [("plain", 0.9, 25), ("rotated", 0.2, 25), ("fast", 0.9, 30)])
def test_paste_back_keeps_the_source_outside_the_head_its_size_rotation_and_rate(
        which, seconds, rate, pasteable_avatar, rotated_avatar, fast_avatar, tmp_path):
    # plain: a dub longer than the 10-frame clip (replayed back and forth); rotated: shorter than the clip; fast: a
    # 30 fps source of the 25 fps avatar, dubbed at 30 fps
    avatar_dir = {"plain": pasteable_avatar, "rotated": rotated_avatar, "fast": fast_avatar}[which]
    audio = tmp_path / "line.wav"
    soundfile.write(audio, speech_like(seconds, 22050, 1, seed=3), 22050)
    r = run_instag("render", avatar_dir, "--audio", audio, "-o", tmp_path / "out", "--paste-back",
                   "--crf", str(TEST_CRF))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / "line.mp4"
    source = probe(_source_of(avatar_dir), 0.0)
    dub = probe(out, 0.0)
    assert (dub.width, dub.height, dub.rotation_k) == (source.width, source.height, source.rotation_k)
    frames, video_s, audio_s, counts, video_rate = _read_mp4(out)
    assert (video_rate, counts) == (rate, (1, 1))
    assert len(frames) == round(seconds * rate)
    assert abs(audio_s - seconds) <= 1 / rate and abs(video_s - seconds) <= 1 / rate

    reference = _reencoded_source(avatar_dir, len(frames), rate, tmp_path / "reference.mp4")
    shown, expected = _shown_frames(out), _shown_frames(reference)
    x0, y0, side = ROTATED_CROP if which == "rotated" else CROP
    outside = np.ones((source.height, source.width), bool)
    outside[max(0, y0 - 2): y0 + side + 2, max(0, x0 - 2): x0 + side + 2] = False  # ±2 px: a chroma sample
    for i, (img, ref) in enumerate(zip(shown, expected, strict=True)):
        assert _psnr(img[outside], ref[outside]) >= 40.0, i
    inside = ~outside
    changed = [np.abs(img.astype(int) - ref.astype(int))[inside].max()
               for img, ref in zip(shown, expected, strict=True)]
    assert min(changed) > 40  # a head is pasted in every frame


def test_paste_back_without_the_source_clip_is_a_clear_error(pasteable_avatar, audio_files, tmp_path):
    r = run_instag("render", pasteable_avatar, "--audio", audio_files["flac"], "-o", tmp_path / "o", "--paste-back",
                   "--source", tmp_path / "missing.mp4")
    assert r.returncode == 1
    assert "missing.mp4: no such file" in r.stderr + r.stdout


def test_an_unknown_paste_region_is_a_clear_error(pasteable_avatar, audio_files, tmp_path):
    r = run_instag("render", pasteable_avatar, "--audio", audio_files["flac"], "-o", tmp_path / "o", "--paste-back",
                   "--paste-region", "chin")
    assert r.returncode == 2
    assert "--paste-region chin: must be one of lower_face, head" in r.stderr + r.stdout
    assert not (tmp_path / "o").exists()


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


def test_a_batch_decodes_each_torso_layer_once_for_all_its_jobs(tiny_avatar, audio_files, tmp_path, monkeypatch):
    av = load_avatar(tiny_avatar)
    reads = []
    own_layers = av.layers
    monkeypatch.setattr(av, "layers", lambda j: reads.append(j) or own_layers(j))
    jobs = jobs_from_audio([audio_files[k] for k in ("wav", "flac", "m4a")], tmp_path / "out", paste_back=False)
    results = run_jobs(av, jobs, RenderOptions())
    assert [r.status for r in results] == ["done"] * 3
    frames = max(r.frames for r in results)
    assert frames > av.n_drive_frames  # every job replays the whole clip …
    assert sorted(reads) == list(range(av.n_drive_frames))  # … and its layers were decoded once for the three


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


def test_a_track_in_which_nobody_is_heard_speaking_gets_a_note_pointing_songs_to_no_voice_rest(talking_avatar,
                                                                                                 tmp_path):
    t = np.arange(int(4.0 * 16000)) / 16000
    chords = sum(np.sin(2 * np.pi * 220.0 * ratio * h * t) / h for ratio in (1.0, 1.26, 1.5) for h in range(1, 7))
    music, speech = tmp_path / "music.wav", tmp_path / "speech.wav"
    soundfile.write(music, 0.3 * chords / np.abs(chords).max(), 16000)
    soundfile.write(speech, speech_like(4.0, 16000, 1), 16000)
    r = run_instag("render", talking_avatar, "--audio", music, "--audio", speech, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and "music.wav" in notes[0] and "--no-voice-rest" in notes[0], r.stderr
    song = run_jobs(load_avatar(talking_avatar), jobs_from_audio([music], tmp_path / "song", False, voice_rest=False),
                    RenderOptions())
    assert song[0].status == "done" and song[0].note == ""


def test_a_manifest_row_says_whether_its_track_is_a_song(tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("audio,output,paste_back,voice_rest\nline.wav,line.mp4\nsong.mp3,song.mp4,,no\n"
                        "duet.flac,duet.mp4,1,yes\n")
    line, song, duet = read_manifest(manifest, tmp_path / "out", paste_back=False)
    assert (line.paste_back, line.voice_rest) == (False, True)  # the command's defaults
    assert (song.paste_back, song.voice_rest) == (False, False) and (duet.paste_back, duet.voice_rest) == (True, True)
    assert not read_manifest(manifest, tmp_path / "out", paste_back=False, voice_rest=False)[0].voice_rest
    manifest.write_text("a.wav,a.mp4,0,sometimes\n")
    with pytest.raises(InputError, match=r"jobs.csv:1: voice_rest 'sometimes' is not one of"):
        read_manifest(manifest, tmp_path / "out", paste_back=False)
    manifest.write_text("a.wav,a.mp4,0,1,extra\n")
    with pytest.raises(InputError, match=r"expected 'audio,output\[,paste_back\[,voice_rest\]\]'"):
        read_manifest(manifest, tmp_path / "out", paste_back=False)
