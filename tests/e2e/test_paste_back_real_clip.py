"""Paste-back into real phone-style portrait footage: a real H.264 clip from ../shared (skipped without it), its
streams copied (not re-encoded) into a file that says "show me turned 90°", as a phone stores portrait video. The
dub must come back at the clip's size, rotation and frame rate, showing the clip's own picture around the head.
The footage stays in the test's temp dir."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile
from instag_testing import run_instag

from e2e.conftest import speech_like
from e2e.test_dubbing import _pasteable_copy, _read_mp4, with_rotation
from instag.data.video import probe

pytestmark = [pytest.mark.real_data, pytest.mark.slow]
CLIP = "ajay-sainy_Wav2Lip-GFPGAN_kim_7s_raw.mp4"  # 1920×1080 H.264 at 30 fps, a landscape-coded recording
CROP = (280, 700, 480)  # x0, y0, side in the shown 1080×1920 portrait frame


def _first_shown(path, k: int) -> np.ndarray:
    """The first frame of the MP4 as a player shows it, RGB [H, W, 3] uint8."""
    with av.open(str(path)) as c:
        return np.rot90(next(c.decode(video=0)).to_ndarray(format="rgb24"), k)


def _audio_s(path) -> float:
    """The audio stream's duration as the file states it (what players play; decoding gives whole AAC frames)."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return float(s.duration * s.time_base)


def test_paste_back_into_a_real_rotated_clip_keeps_its_rotation_size_and_rate(real_data, pasteable_avatar,
                                                                              tmp_path):
    if not (real_data / CLIP).is_file():
        pytest.skip(f"{CLIP} not among the real clips")
    portrait = with_rotation(real_data / CLIP, tmp_path / "portrait.mp4", 90)
    source = probe(portrait, 0.0)
    assert (source.width, source.height, source.rotation_k) == (1080, 1920, 1)  # coded 1920×1080, shown upright
    avatar = _pasteable_copy(pasteable_avatar, tmp_path, portrait, source.width, source.height, CROP)
    seconds = 0.4
    audio = tmp_path / "line.wav"
    soundfile.write(audio, speech_like(seconds, 16000, 1, seed=5), 16000)
    r = run_instag("render", avatar, "--audio", audio, "-o", tmp_path / "out", "--paste-back")
    assert r.returncode == 0, r.stderr

    out = tmp_path / "out" / "line.mp4"
    dub = probe(out, 0.0)
    assert (dub.width, dub.height, dub.rotation_k) == (source.width, source.height, source.rotation_k)
    frames, video_s, _, counts, rate = _read_mp4(out)
    assert counts == (1, 1) and rate == 30.0 and len(frames) == round(seconds * 30)
    assert abs(_audio_s(out) - seconds) <= 1 / 30 and abs(video_s - seconds) <= 1 / 30
    # shown the same way round as the clip: its picture outside the crop, up to codec loss
    shown, clip = _first_shown(out, dub.rotation_k), _first_shown(portrait, source.rotation_k)
    x0, y0, side = CROP
    outside = np.ones(shown.shape[:2], bool)
    outside[y0 - 2: y0 + side + 2, x0 - 2: x0 + side + 2] = False
    mse = np.mean((shown[outside].astype(float) - clip[outside].astype(float)) ** 2)
    assert 10 * np.log10(255.0**2 / mse) >= 35.0
