"""Fixtures for the preview tests: the e2e tests' tiny adapted avatar, a speech-like wav, a running server."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile
from e2e.conftest import speech_like, tiny_avatar  # noqa: F401  (tiny_avatar is a fixture; tests/ is on sys.path)

from instag.viewer.config import PreviewConfig
from instag.viewer.server import PreviewServer

SPEECH_S = 3.0


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("viewer-audio") / "line.wav"
    soundfile.write(path, speech_like(SPEECH_S, 22050, 1), 22050)
    return path


@pytest.fixture(scope="module")
def preview_server(tiny_avatar, speech_wav):  # noqa: F811
    """The preview of the tiny avatar with one clip, on a free loopback port, small upload limit."""
    server = PreviewServer(PreviewConfig(avatar=tiny_avatar, audio=(speech_wav,), port=0, device="cpu",
                                         max_upload_bytes=256 << 10))
    server.start()
    yield server
    server.stop()
