"""The preview's frame source: what its drivers share."""

from __future__ import annotations

import numpy as np
import torch
from e2e.conftest import speech_like, talking_avatar  # noqa: F401  (a fixture)

from instag.avatar.bundle import load_avatar
from instag.viewer.camera import Orbit
from instag.viewer.clips import Clip
from instag.viewer.renderer import PreviewRenderer


def test_the_idle_loop_its_pauses_and_every_clip_decode_each_torso_layer_once(tiny_avatar, monkeypatch):
    av = load_avatar(tiny_avatar)
    reads = []
    own_layers = av.layers
    monkeypatch.setattr(av, "layers", lambda j: reads.append(j) or own_layers(j))
    renderer = PreviewRenderer(av, torch.device("cpu"))
    mono = speech_like(1.2, 16000, 1, seed=2)[:, 0].astype(np.float32)
    n = int(round(1.2 * renderer.fps))
    clips = [Clip(f"c{k}", "line", 1.2, n, b"", mono) for k in range(2)]
    frames = range(max(n, renderer.idle.n_frames))
    for k in frames:
        renderer.render_idle(k, Orbit())
        renderer.render(renderer.pause, k, Orbit())
        for clip in clips:
            renderer.render(renderer.driver(clip), k, Orbit())
    assert sorted(reads) == list(range(av.n_drive_frames))


def test_a_preview_for_songs_moves_a_clips_lips_over_music_that_a_preview_for_speech_rests(talking_avatar):  # noqa: F811
    """`instag preview --no-voice-rest`: a clip's lips rest in silence only, as `instag render --no-voice-rest`."""
    av = load_avatar(talking_avatar)
    t = np.arange(int(4.0 * 16000)) / 16000
    chords = sum(np.sin(2 * np.pi * 220.0 * ratio * h * t) / h for ratio in (1.0, 1.26, 1.5) for h in range(1, 7))
    music = (0.3 * chords / np.abs(chords).max()).astype(np.float32)
    n = int(round(4.0 * av.meta["fps"]))
    clip, sung = Clip("music", "music", 4.0, n, b"", music), Clip("sung", "sung", 4.0, n, b"", music)
    speech = PreviewRenderer(av, torch.device("cpu")).driver(clip)
    song = PreviewRenderer(av, torch.device("cpu"), voice_rest=False).driver(sung)
    assert speech.rest.weights[n // 2] == 1.0  # nobody speaks: at rest
    assert not song.rest.weights.any()  # a song: the lips move over it
    # the page says why the lips rest through the clip, and what a song wants; of a song it says nothing
    assert "--no-voice-rest" in clip.describe()["note"] and sung.describe()["note"] == ""
    # the page's *song* box: the same clip, its lips moving over the music, on the same features
    renderer = PreviewRenderer(av, torch.device("cpu"))
    sung_here = renderer.driver(clip, song=True)
    assert not sung_here.rest.weights.any() and renderer.driver(clip).features is sung_here.features
    assert renderer.driver(clip).rest.weights[n // 2] == 1.0 and "--no-voice-rest" in clip.note
    voice = Clip("voice", "voice", 4.0, n, b"", speech_like(4.0, 16000, 1, seed=3)[:, 0].astype(np.float32))
    PreviewRenderer(av, torch.device("cpu")).driver(voice)
    assert voice.note == ""
