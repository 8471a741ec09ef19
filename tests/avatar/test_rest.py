"""Lips at rest through long silences: which frames rest, the rest shape, and the conditions a dub and `instag eval`
give an avatar with a lip condition."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from e2e.conftest import talking_avatar  # noqa: F401  (a fixture; tests/ is on sys.path)

from instag.audio.synthetic_speech import SAMPLE_VOICE, synthesize
from instag.avatar.bundle import load_avatar
from instag.avatar.driving import audio_driver
from instag.avatar.rest import (
    REST_AFTER_S,
    REST_ANTICIPATE_S,
    REST_PERCENTILE,
    quiet_frames,
    rest_lip_shape,
    rest_weights,
    weights_over,
)
from instag.data.pose import EXPRESSION_NAMES

RATE = 16000
FPS = 25.0


def _voice(seconds: float, seed: int = 0) -> np.ndarray:
    """[N] float32: a synthesised voice (`audio.synthetic_speech`): phrases of syllables with short pauses between them."""
    return synthesize(seconds, SAMPLE_VOICE, seed=seed).samples.astype(np.float32)


def _chords(seconds: float) -> np.ndarray:
    """[N] float32: two-second chords of three harmonic tones, as loud as the synthesised voice."""
    t = np.arange(int(round(seconds * RATE))) / RATE
    root = np.array([220.0, 174.6, 196.0, 261.6])[(t // 2.0).astype(int) % 4]
    x = sum(np.sin(2 * np.pi * root * ratio * h * t) / h for ratio in (1.0, 1.26, 1.5) for h in range(1, 7))
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


def _frames(seconds: float) -> int:
    return int(round(seconds * FPS))


def _n(audio: np.ndarray) -> int:
    return _frames(len(audio) / RATE)


def test_a_long_quiet_run_rests_and_a_breath_pause_does_not():
    quiet = np.zeros(_frames(6.0), bool)
    pause = (_frames(1.0), _frames(1.8))  # a breath between phrases
    silence = (_frames(2.8), _frames(2.8 + REST_AFTER_S + 0.8))
    quiet[pause[0]:pause[1]] = quiet[silence[0]:silence[1]] = True
    w = weights_over(quiet, FPS)
    assert np.all(w[~quiet] == 0)
    assert np.all(w[pause[0]:pause[1]] == 0)  # a pause between phrases keeps the predicted lips
    mid = (silence[0] + silence[1]) // 2
    assert w[mid] == 1.0
    assert np.all(np.diff(w[silence[0]:mid + 1]) >= 0) and np.all(np.diff(w[mid:silence[1]]) <= 0)  # eases
    assert w[silence[0]] < 1.0  # closes over REST_EASE_S, not at once
    # back on the prediction before the voice returns
    assert np.all(w[silence[1] - int(REST_ANTICIPATE_S * FPS):silence[1]] == 0)


def test_quiet_runs_at_the_edges_rest_to_the_edge_and_a_quiet_track_rests_throughout():
    quiet = np.zeros(_frames(2 * REST_AFTER_S + 1.8), bool)
    quiet[:_frames(REST_AFTER_S + 0.4)] = quiet[-_frames(REST_AFTER_S + 0.4):] = True
    w = weights_over(quiet, FPS)
    assert w[0] == 1.0 and w[-1] == 1.0
    assert np.all(w[~quiet] == 0)
    short = np.zeros(int(0.5 * RATE), np.float32)  # shorter than REST_AFTER_S, but nothing else is in it
    assert np.all(rest_weights(short, RATE, FPS, _n(short)) == 1.0)
    assert rest_weights(np.zeros(0, np.float32), RATE, FPS, 0).shape == (0,)


def test_nobody_speaks_in_silence_or_music_and_a_voice_is_heard_through_its_pauses():
    voice = _voice(8.0)
    heard = ~quiet_frames(voice, RATE, FPS, _n(voice))
    first, last = np.flatnonzero(heard)[[0, -1]]
    assert first < _frames(0.6) and last > _frames(7.2)  # from its first syllable to its last
    assert np.all(weights_over(~heard, FPS)[first:last] == 0)  # pauses between its phrases never rest
    music = _chords(8.0)
    assert quiet_frames(music, RATE, FPS, _n(music)).mean() > 0.9  # loud, but no voice in it
    assert np.all(quiet_frames(np.zeros(RATE, np.float32), RATE, FPS, _frames(1.0)))


def test_music_between_lines_rests_the_lips_and_under_a_voice_does_not():
    # The detector's belief in a voice fades over a second or two of tonal music after it stops.
    before, music, after = _voice(4.0, seed=1), _chords(REST_AFTER_S + 5.0), _voice(4.0, seed=2)
    track = np.concatenate([before, music, after])
    w = rest_weights(track, RATE, FPS, _n(track))
    gap = (_n(before), _n(before) + _n(music))
    assert np.all(w[(gap[0] + gap[1]) // 2:gap[1] - _frames(REST_ANTICIPATE_S + 0.3)] == 1.0)
    assert np.all(w[_frames(0.6):_frames(3.6)] == 0) and np.all(w[gap[1] + _frames(0.6):-_frames(0.4)] == 0)
    assert not np.any(rest_weights(track, RATE, FPS, _n(track), without_voice=False)[gap[0]:gap[1]])  # a song's
    bed = _voice(6.0, seed=3) + 0.3 * _chords(6.0)  # music 10 dB under the voice
    assert np.all(rest_weights(bed, RATE, FPS, _n(bed))[_frames(0.6):_frames(5.4)] == 0)
    # 8 kHz audio is heard as 16 kHz is
    assert np.array_equal(rest_weights(track[::2], RATE // 2, FPS, _n(track)) > 0.5, w > 0.5)


def test_the_rest_shape_is_the_persons_own_most_closed_opening():
    rng = np.random.default_rng(0)
    expression = rng.normal(size=(80, len(EXPRESSION_NAMES))).astype(np.float32)
    expression[:, EXPRESSION_NAMES.index("mouth_open")] = rng.gamma(2.0, 0.05, 80)  # skewed, as openings are
    opening = expression[:, EXPRESSION_NAMES.index("mouth_open")]
    rest = rest_lip_shape({"expression": expression}, ("mouth_open", "mouth_width"))
    want = (np.percentile(opening, REST_PERCENTILE) - opening.mean()) / opening.std()
    assert rest.shape == (2,)
    assert abs(float(rest[0]) - want) < 1e-5 and float(rest[0]) < -0.5  # well under the mean
    assert float(rest[1]) == 0.0  # the width at its mean


def test_a_dub_rests_the_lips_in_a_long_silence_and_follows_the_voice_elsewhere(talking_avatar):  # noqa: F811
    avatar = load_avatar(talking_avatar)
    voice, silence = _voice(2.0), np.zeros(int((REST_AFTER_S + 0.8) * RATE), np.float32)
    audio = np.concatenate([voice, silence, _voice(2.0, seed=1)])
    driver = audio_driver(avatar, audio, _n(audio))
    rest = rest_lip_shape(avatar.drive, tuple(avatar.cfg.lip_coeffs))
    mid = _n(voice) + _n(silence) // 2
    assert torch.allclose(driver.condition(mid).cond.lip_shape, rest)
    assert driver.condition(_n(voice) // 2).cond.lip_shape is None  # the motion predicts it
    # Music between the lines rests them too, unless the job says the track is a song (`--no-voice-rest`).
    music = np.concatenate([voice, _chords(REST_AFTER_S + 5.0), _voice(2.0, seed=1)])
    in_music = _n(voice) + _frames(REST_AFTER_S + 4.0)
    assert torch.allclose(audio_driver(avatar, music, _n(music)).condition(in_music).cond.lip_shape, rest)
    song = audio_driver(avatar, music, _n(music), rest_without_voice=False)
    assert song.condition(in_music).cond.lip_shape is None
    cond = driver.condition(mid).cond
    with torch.no_grad():
        resting = avatar.render(cond).image
        predicted = avatar.render(dataclasses.replace(cond, lip_shape=None)).image
    assert not torch.equal(resting, predicted)  # the rest reaches the picture
