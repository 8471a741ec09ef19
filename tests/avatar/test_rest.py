"""Lips at rest through long silences: which frames rest, the rest shape, and the conditions a dub and `instag eval`
give an avatar with a lip condition."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from instag.avatar.bundle import load_avatar
from instag.avatar.driving import audio_driver
from instag.avatar.rest import REST_AFTER_S, REST_ANTICIPATE_S, REST_PERCENTILE, rest_lip_shape, rest_weights
from instag.config.recipe import from_dict
from instag.data.pose import EXPRESSION_NAMES
from instag.train.adapt import adapt
from instag.train.recipe import AdaptRecipe
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset

RATE = 16000
FPS = 25.0


def _track(*parts: tuple[float, bool]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Mono audio of (seconds, voiced) parts: a 150 Hz buzz at syllable-rate loudness, or digital silence; and each
    part's [first, end) video frames."""
    out, frames, t0 = [], [], 0.0
    for seconds, voiced in parts:
        t = np.arange(int(round(seconds * RATE))) / RATE
        x = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2) * 0.3 * np.sign(np.sin(2 * np.pi * 150 * t))
        out.append(x.astype(np.float32) if voiced else np.zeros_like(t, np.float32))
        frames.append((int(round(t0 * FPS)), int(round((t0 + seconds) * FPS))))
        t0 += seconds
    return np.concatenate(out), frames


def _n(audio: np.ndarray) -> int:
    return int(round(len(audio) / RATE * FPS))


def test_a_long_silence_rests_and_a_breath_pause_does_not():
    audio, (a, pause, b, silence, c) = _track((1.0, True), (0.8, False), (1.0, True), (REST_AFTER_S + 0.8, False),
                                              (1.0, True))
    w = rest_weights(audio, RATE, FPS, _n(audio))
    assert np.all(w[a[0]:a[1]] == 0) and np.all(w[b[0]:b[1]] == 0) and np.all(w[c[0] + 1:c[1]] == 0)
    assert np.all(w[pause[0]:pause[1]] == 0)  # a pause between phrases keeps the predicted lips
    mid = (silence[0] + silence[1]) // 2
    assert w[mid] == 1.0
    assert np.all(np.diff(w[silence[0]:mid + 1]) >= 0) and np.all(np.diff(w[mid:silence[1]]) <= 0)  # eases
    assert w[silence[0]] < 1.0  # closes over REST_EASE_S, not at once
    # back on the prediction before the voice returns
    assert np.all(w[silence[1] - int(REST_ANTICIPATE_S * FPS):silence[1]] == 0)


def test_silences_at_the_edges_rest_to_the_edge_and_a_silent_track_rests_throughout():
    audio, (lead, speech, tail) = _track((REST_AFTER_S + 0.4, False), (1.0, True), (REST_AFTER_S + 0.4, False))
    w = rest_weights(audio, RATE, FPS, _n(audio))
    assert w[0] == 1.0 and w[-1] == 1.0
    assert np.all(w[speech[0] + 1:speech[1] - 1] == 0)
    short = np.zeros(int(0.5 * RATE), np.float32)  # shorter than REST_AFTER_S, but nothing else is in it
    assert np.all(rest_weights(short, RATE, FPS, _n(short)) == 1.0)
    assert rest_weights(np.zeros(0, np.float32), RATE, FPS, 0).shape == (0,)


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


def test_a_dub_rests_the_lips_in_a_long_silence_and_follows_the_voice_elsewhere(tmp_path):
    model = {**TINY_MODEL, "articulation": True, "lip_coeffs": ["mouth_open", "mouth_width"]}
    recipe = {"audio_feature": "mel", "model": model, "init": TINY_INIT, "seed": 0,
              "stages": {"warmup": 2, "align": 1, "fuse": 1}, "run": {"threads": 1, "previews": 0}}
    ds = write_dataset(tmp_path / "ds", size=32, frames=10)
    adapt(ds, tmp_path / "avatar", from_dict(AdaptRecipe, recipe), run_dir=tmp_path / "run")
    avatar = load_avatar(tmp_path / "avatar")
    audio, (speech, silence, _) = _track((1.0, True), (REST_AFTER_S + 0.8, False), (1.0, True))
    driver = audio_driver(avatar, audio, _n(audio))
    rest = rest_lip_shape(avatar.drive, tuple(avatar.cfg.lip_coeffs))
    mid = (silence[0] + silence[1]) // 2
    assert torch.allclose(driver.condition(mid).cond.lip_shape, rest)
    assert driver.condition((speech[0] + speech[1]) // 2).cond.lip_shape is None  # the motion predicts it
    cond = driver.condition(mid).cond
    with torch.no_grad():
        resting = avatar.render(cond).image
        predicted = avatar.render(dataclasses.replace(cond, lip_shape=None)).image
    assert not torch.equal(resting, predicted)  # the rest reaches the picture
