"""Each kind of bad input gets one line naming the file and the problem, exit code 2, and leaves no output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clipsynth import first_frame, noise_frame, write_clip
from instag_testing import run_instag, run_instag_subprocess


def assert_refused(proc, out: Path, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(line) == 1, proc.stderr
    for needle in needles:
        assert needle in line[0], line[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temporary output left behind"


def preprocess(clip: Path, out: Path, *extra: str):
    return run_instag("preprocess", clip, "-o", out, "--size", "128", *extra)


def test_unreadable_file(tmp_path):
    clip = tmp_path / "junk.mp4"
    clip.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    out = tmp_path / "ds"
    proc = run_instag_subprocess("preprocess", clip, "-o", out)  # once end to end, as a user's shell runs it
    assert_refused(proc, out, str(clip), "unreadable or corrupt")


def test_missing_file(tmp_path):
    out = tmp_path / "ds"
    assert_refused(preprocess(tmp_path / "nope.mp4", out), out, "nope.mp4", "no such file")


def test_no_audio_stream(tmp_path):
    clip = write_clip(tmp_path / "silent.mp4", noise_frame(), 100, audio=False)
    out = tmp_path / "ds"
    assert_refused(preprocess(clip, out), out, str(clip), "no audio stream")


def test_no_video_stream(tmp_path):
    import soundfile

    clip = tmp_path / "speech.wav"
    soundfile.write(clip, np.zeros(16000 * 4, np.float32), 16000)
    out = tmp_path / "ds"
    assert_refused(preprocess(clip, out), out, str(clip), "no video stream")


def test_too_short(tmp_path):
    clip = write_clip(tmp_path / "short.mp4", noise_frame(), 25)
    out = tmp_path / "ds"
    assert_refused(preprocess(clip, out), out, str(clip), "1.00 s long", "3 s minimum")


def test_no_face(tmp_path):
    clip = write_clip(tmp_path / "noface.mp4", noise_frame(smooth=True), 100)
    out = tmp_path / "ds"
    assert_refused(preprocess(clip, out), out, str(clip), "no face in frames 0–99")


def test_existing_output_kept_without_force(tmp_path):
    clip = write_clip(tmp_path / "noface.mp4", noise_frame(), 100)
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = preprocess(clip, out)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_unknown_dataset_version(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "meta.json").write_text(json.dumps({"format": "instag-dataset", "format_version": 99}))
    out = tmp_path / "sheet.png"
    assert_refused(run_instag("inspect", ds, "-o", out), out, str(ds / "meta.json"), "format version 99")


def _paste(canvas_hw: tuple[int, int], face: np.ndarray, places: list[tuple[int, int, int]]):
    """Frames of a grey canvas with `face` resized to each (x, y, side) of `places`."""
    import cv2

    canvas = np.full((*canvas_hw, 3), 90, np.uint8)
    for x, y, side in places:
        canvas[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return lambda i: canvas


def test_tiny_face(tmp_path, real_data):
    face = first_frame(real_data / "yerfor_Real3DPortrait_May_5s.mp4")  # face ≈ 42 % of the frame width
    clip = write_clip(tmp_path / "tiny.mp4", _paste((360, 480), face, [(200, 120, 120)]), 100)
    out = tmp_path / "ds"
    assert_refused(preprocess(clip, out), out, str(clip), "smaller than 64 px")


def test_two_faces_none_dominant(tmp_path, real_data):
    face = first_frame(real_data / "yerfor_Real3DPortrait_May_5s.mp4")
    clip = write_clip(tmp_path / "two.mp4", _paste((320, 640), face, [(0, 0, 320), (320, 0, 320)]), 100)
    out = tmp_path / "ds"
    assert_refused(preprocess(clip, out), out, str(clip), "several faces", "none dominates")


def test_face_lost_in_part_of_clip(tmp_path, real_data):
    face = first_frame(real_data / "yerfor_Real3DPortrait_May_5s.mp4")
    with_face = _paste((256, 256), face, [(0, 0, 256)])
    blank = np.full((256, 256, 3), 90, np.uint8)
    clip = write_clip(tmp_path / "lost.mp4", lambda i: with_face(i) if i < 70 else blank, 100)
    out = tmp_path / "ds"
    assert_refused(preprocess(clip, out), out, str(clip), "no face in frames 70–99")


@pytest.mark.parametrize("flag", [["--audio-features", "hubert"], ["--audio-features", "bogus"]])
def test_bad_audio_feature_flags(tmp_path, flag):
    clip = write_clip(tmp_path / "noface.mp4", noise_frame(), 100)
    out = tmp_path / "ds"
    assert_refused(preprocess(clip, out, *flag), out, "--audio")


def test_dominant_face_tracked_with_warning(tmp_path, real_data):
    face = first_frame(real_data / "yerfor_Real3DPortrait_May_5s.mp4")
    clip = write_clip(tmp_path / "crowd.mp4", _paste((360, 640), face, [(20, 20, 320), (460, 200, 140)]), 80)
    out = tmp_path / "ds"
    res = preprocess(clip, out)
    assert res.returncode == 0, res.stderr
    assert "several faces" in res.stderr and "tracking the largest" in res.stderr
    from instag.data.dataset import load_dataset

    ds = load_dataset(out)
    crop = ds.meta["crop_box"]
    assert crop["x0"] < 180 < crop["x0"] + crop["side"]  # centred on the large face at x ≈ 180, not the small one
    assert crop["x0"] + crop["side"] < 530
