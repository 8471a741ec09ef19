"""The demo's sample: a decodable talking-face MP4 whose mouth follows its synthetic speech, and a different line."""

from __future__ import annotations

import av
import numpy as np
import pytest

from instag.audio.synthetic_speech import DUB_VOICE, SAMPLE_VOICE, synthesize
from instag.data import facemesh as fm
from instag.data.pose import face_signals
from instag.demo.sample import FPS, SAMPLE_SECONDS, make_sample_clip
from instag.media.audio import decode_audio


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "sample.mp4"
    clip = make_sample_clip(path)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return clip, np.stack(frames)


def _frame_rms(samples: np.ndarray, rate: int, n_frames: int) -> np.ndarray:
    """RMS [T] of the audio over one frame period centred on each frame instant."""
    half = int(rate / FPS / 2)
    centres = (np.arange(n_frames) / FPS * rate).astype(int)
    return np.array([np.sqrt(np.mean(samples[max(0, c - half):c + half] ** 2)) for c in centres])


def test_mp4_has_one_video_and_one_audio_stream_of_the_expected_length(sample):
    clip, frames = sample
    with av.open(str(clip.path)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "video"]
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
    assert frames.shape == (int(SAMPLE_SECONDS * FPS), 512, 512, 3)
    audio = decode_audio(clip.path)
    assert audio.duration_s == pytest.approx(SAMPLE_SECONDS, abs=0.05)
    assert clip.n_frames == len(frames)


def test_mediapipe_finds_one_face_in_the_frames(sample):
    _, frames = sample
    det = fm.FaceDetector()
    try:
        for k in (0, len(frames) // 2, len(frames) - 1):
            boxes = det.detect(frames[k])
            assert len(boxes) == 1, k
            assert 0.25 < boxes[0].w / frames.shape[2] < 0.7  # a face-centred crop
    finally:
        det.close()


def test_tracked_mouth_opening_follows_the_speech_envelope(sample):
    clip, frames = sample
    tracker = fm.FaceTracker()
    try:
        pts = [tracker.track(f, (256.0, 256.0)) for f in frames]
    finally:
        tracker.close()
    assert all(p is not None for p in pts)
    mouth = face_signals(np.stack(pts))["mouth_open"]
    assert np.corrcoef(mouth, clip.mouth_drive)[0, 1] > 0.9
    audio = decode_audio(clip.path)  # the envelope as heard in the file, not only the one that drove the warp
    rms = _frame_rms(audio.samples.mean(0), audio.sample_rate, len(frames))
    assert np.corrcoef(mouth, rms)[0, 1] > 0.75
    assert mouth.max() - mouth.min() > 0.15  # a clearly visible opening (fraction of the eye distance)


def test_head_moves_and_eyes_blink(sample):
    clip, frames = sample
    assert clip.blink.max() == pytest.approx(1.0, abs=0.05) and (clip.blink > 0.5).sum() >= 4
    still = frames[:, :48].astype(np.float32)  # background above the head: shifts with the head motion
    assert np.abs(still - still[0]).mean(axis=(1, 2, 3)).max() > 1.0


def _f0(samples: np.ndarray, rate: int) -> float:
    import librosa

    f0, voiced, _ = librosa.pyin(samples, fmin=60, fmax=400, sr=rate, frame_length=1024)
    return float(np.nanmedian(f0[voiced]))


def test_dubbing_line_differs_from_the_sample_voice():
    a = synthesize(SAMPLE_SECONDS, SAMPLE_VOICE, seed=7)
    b = synthesize(8.0, DUB_VOICE, seed=11)
    assert b.duration_s == pytest.approx(8.0)
    assert abs(np.log(_f0(a.samples, a.sample_rate) / _f0(b.samples, b.sample_rate))) > np.log(1.3)
    ea, eb = a.frame_envelope(FPS, 150), b.frame_envelope(FPS, 150)
    assert abs(np.corrcoef(ea, eb)[0, 1]) < 0.5  # a different rhythm


def test_speech_is_syllabic_and_deterministic():
    a = synthesize(SAMPLE_SECONDS, SAMPLE_VOICE, seed=7)
    assert np.array_equal(a.samples, synthesize(SAMPLE_SECONDS, SAMPLE_VOICE, seed=7).samples)
    env = a.frame_envelope(100.0, int(a.duration_s * 100))
    spec = np.abs(np.fft.rfft(env - env.mean()))
    freqs = np.fft.rfftfreq(len(env), 1 / 100.0)
    fast = freqs > 1.5  # above the phrase rate
    assert 2.0 < freqs[fast][np.argmax(spec[fast])] < 8.0  # loudness rises and falls at a syllable rate
    assert (env < 0.02).mean() > 0.1  # pauses between phrases
    assert np.abs(a.samples).max() <= 1.0
