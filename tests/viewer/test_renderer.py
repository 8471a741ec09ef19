"""The preview's frame source: what its drivers share."""

from __future__ import annotations

import numpy as np
import torch
from e2e.conftest import speech_like

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
