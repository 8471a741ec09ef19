"""The preview server: loopback by default, only its own files, bounded and checked uploads, and a stream whose
frame indices follow the audio time the page reports."""

from __future__ import annotations

import asyncio
import io
import json
import math
import socket
import urllib.error
import urllib.request
from urllib.parse import urlparse

import aiohttp
import cv2
import numpy as np
import pytest
import soundfile
from instag_testing import post_upload

from instag.viewer.camera import Orbit, ViewRange, orbit_viewmat
from instag.viewer.config import LOOPBACK, PreviewConfig
from instag.viewer.server import AHEAD, is_loopback, parse_state, unpack_frame


def raw_get(url: str, target: str, host: str | None = None) -> tuple[int, bytes]:
    """Send `GET target` exactly as written (no client-side path normalisation); → (status, body)."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host or u.netloc}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body




def test_binds_to_loopback_by_default(preview_server):
    assert PreviewConfig(avatar=preview_server.cfg.avatar).host == LOOPBACK
    assert urlparse(preview_server.url).hostname == "127.0.0.1"
    bound = preview_server._runner.addresses
    assert bound and all(is_loopback(a[0]) for a in bound)
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_serves_the_page_and_its_files(preview_server):
    status, body = raw_get(preview_server.url, "/")
    assert status == 200 and b"/static/viewer.js" in body
    for name in ("viewer.js", "viewer.css"):
        assert raw_get(preview_server.url, f"/static/{name}")[0] == 200


@pytest.mark.parametrize("target", [
    "/../../../../etc/passwd",
    "/static/../server.py",
    "/static/../../instag/viewer/server.py",
    "/static/..%2fserver.py",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/%252e%252e%252fserver.py",
    "/static/..\\server.py",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "//etc/passwd",
    "/etc/passwd",
    "/static/__init__.py",
    "/static/index.html/../../server.py",
    "/audio/../../etc/passwd",
    "/audio/%2Fetc%2Fpasswd.wav",
    "/audio/c999.wav",
    "/server.py",
    "http://127.0.0.1/../../etc/passwd",
])
def test_traversal_and_absolute_paths_get_404(preview_server, target):
    status, body = raw_get(preview_server.url, target)
    assert status == 404, (target, status, body[:200])
    assert b"root:" not in body and b"import" not in body


def test_foreign_host_names_are_refused(preview_server):
    """A loopback server answers only loopback Host names (a DNS-rebinding page cannot read it)."""
    assert raw_get(preview_server.url, "/", host="evil.example:80")[0] == 403


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(buf, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def test_oversized_upload_is_refused_with_a_clear_message(preview_server):
    status, doc = post_upload(preview_server.url, wav_bytes(10.0))  # 320 kB > the 256 KiB limit
    assert status == 413 and "limit" in doc["error"] and "MiB" in doc["error"]


@pytest.mark.parametrize("data, expect", [
    (b"hello, I am a text file\n" * 20, "not an audio file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(500), "not an audio file"),
    (b"", "empty"),
    (b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4, "not playable audio"),
])
def test_non_audio_upload_is_refused_with_a_clear_message(preview_server, data, expect):
    status, doc = post_upload(preview_server.url, data, name="../../etc/passwd")
    assert status == 415 and expect in doc["error"], doc
    assert "/tmp" not in doc["error"] and "instag-preview" not in doc["error"]


def test_uploaded_audio_becomes_a_playable_clip(preview_server):
    status, doc = post_upload(preview_server.url, wav_bytes(1.0, 44100), name="../my%20line.wav")
    assert status == 200, doc
    assert doc["name"] == "my line.wav" and abs(doc["duration"] - 1.0) < 0.01 and doc["frames"] == 25
    with urllib.request.urlopen(preview_server.url + doc["url"].lstrip("/"), timeout=10) as r:
        samples, rate = soundfile.read(io.BytesIO(r.read()))
    assert rate == 44100 and abs(len(samples) - 44100) < 10
    assert preview_server.app.renderer.driver(preview_server.app.clips.get(doc["id"])).n_frames == 25


async def _collect(url: str, messages: list[dict], until) -> list[tuple[dict, bytes]]:
    """Send `messages` over /ws, then collect binary frames until `until(frames)`."""
    frames: list[tuple[dict, bytes]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "ws") as ws:
        hello = await ws.receive_json(timeout=30)
        assert hello["type"] == "hello"
        for m in messages:
            await ws.send_json(m)
        while not until(frames):
            msg = await ws.receive(timeout=30)
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames.append(unpack_frame(msg.data))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                assert json.loads(msg.data)["type"] != "error", msg.data
    return frames


def state(clip, t, playing=True, epoch=1, rev=0, **cam):
    return {"type": "state", "clip": clip, "playing": playing, "t": t, "epoch": epoch, "rev": rev, **cam}


def test_stream_frames_follow_the_requested_audio_time(preview_server):
    clip = preview_server.app.clips.list()[0]
    fps = preview_server.app.renderer.fps
    for t in (0.4, 1.6):
        frames = asyncio.run(_collect(preview_server.url, [state(clip.id, t)],
                                      lambda fs: sum(h["mode"] == "play" for h, _ in fs) >= 6))
        play = [h for h, _ in frames if h["mode"] == "play"]
        first = math.floor(t * fps)
        assert first <= play[0]["i"] <= first + AHEAD, (t, play[0])
        idx = [h["i"] for h in play]
        assert idx == sorted(idx) and len(set(idx)) == len(idx)
        assert all(h["clip"] == clip.id for h in play)
        # Never further ahead than the clock allows (the clock ran for at most a few seconds here).
        assert idx[-1] <= first + AHEAD + 5 * fps


def test_stream_idles_with_the_clip_poses_when_nothing_plays(preview_server):
    frames = asyncio.run(_collect(preview_server.url, [state(None, 0.0, playing=False)],
                                  lambda fs: len(fs) >= 4))
    assert all(h["mode"] == "idle" for h, _ in frames)
    assert [h["i"] for h, _ in frames] == sorted(h["i"] for h, _ in frames)
    img = cv2.imdecode(np.frombuffer(frames[-1][1], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (64, 64, 3)


def test_orbit_changes_the_rendered_view(preview_server):
    def idle_image(rev, **cam):
        frames = asyncio.run(_collect(preview_server.url, [state(None, 0.0, playing=False, rev=rev, **cam)],
                                      lambda fs: any(h["rev"] == rev for h, _ in fs)))
        jpeg = next(j for h, j in frames if h["rev"] == rev)
        return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(float)

    renderer = preview_server.app.renderer
    trained = renderer.view
    assert trained.yaw == trained.pitch == (0.0, 0.0)  # the tiny avatar's clip never turns its head
    base = idle_image(0)
    assert np.abs(idle_image(1, yaw=0.6, pitch=0.2) - base).max() == 0  # so it cannot be turned
    zoomed = idle_image(2, zoom=2.0)
    try:  # as if its clip had turned ±0.3 rad, +0.1 rad
        renderer.view = ViewRange((-0.3, 0.3), (0.0, 0.1))
        turned = idle_image(3, yaw=0.6, pitch=0.2)
        assert np.abs(idle_image(4, yaw=0.3, pitch=0.1) - turned).max() == 0  # the turn stops at the bounds
    finally:
        renderer.view = trained
    assert np.abs(turned - base).mean() > 3 and np.abs(zoomed - base).mean() > 3


def test_bad_stream_messages_get_an_error_not_a_crash(preview_server):
    async def go():
        async with aiohttp.ClientSession() as http, http.ws_connect(preview_server.url + "ws") as ws:
            await ws.receive_json(timeout=30)
            replies = []
            for bad in ({"type": "state", "clip": "../../etc/passwd", "playing": True},
                        {"type": "state", "clip": None, "t": "NaN"}, {"type": "shell"}):
                await ws.send_json(bad)
                while (msg := await ws.receive(timeout=30)).type != aiohttp.WSMsgType.TEXT:
                    pass
                replies.append(json.loads(msg.data))
            return replies

    replies = asyncio.run(go())
    assert [r["type"] for r in replies] == ["error"] * 3
    assert "unknown clip" in replies[0]["message"]


def test_orbit_turns_about_the_centre_and_zoom_keeps_its_pixel():
    import torch

    viewmat = torch.eye(4)
    viewmat[2, 3] = 0.5
    centre = torch.tensor([0.01, -0.02, 0.03])
    for orbit in (Orbit(0.7, -0.3, 1.0), Orbit(0.0, 0.0, 2.0), Orbit(-2.0, 0.5, 0.7)):
        v = orbit_viewmat(viewmat, centre, orbit)
        assert torch.allclose(v[:3, :3] @ v[:3, :3].T, torch.eye(3), atol=1e-6)
        before = viewmat[:3, :3] @ centre + viewmat[:3, 3]
        after = v[:3, :3] @ centre + v[:3, 3]
        assert torch.allclose(after, before / orbit.zoom, atol=1e-6)
    assert orbit_viewmat(viewmat, centre, Orbit()) is viewmat
    assert Orbit(float("nan"), 9.0, 100.0).clamped() == Orbit(0.0, math.radians(80.0), 4.0)


def test_an_orbit_leaves_out_the_clip_s_pixels_drawn_over_the_head():
    import torch

    from instag.render.avatar import FrameCondition
    from instag.viewer.renderer import seen_from

    viewmat = torch.eye(4)
    viewmat[2, 3] = 0.5  # the head centre half a unit in front of the camera
    cond = FrameCondition(torch.zeros(2, 2, 2), torch.zeros(1), viewmat, torch.eye(3), 8, 8, torch.zeros(3),
                          foreground=torch.ones(8, 8, 4))
    centre = torch.zeros(3)
    assert seen_from(cond, centre, Orbit()).foreground is cond.foreground  # the replayed view: kept
    for orbit in (Orbit(0.2, 0.0, 1.0), Orbit(0.0, 0.0, 1.5)):
        turned = seen_from(cond, centre, orbit)
        assert turned.foreground is None and not torch.equal(turned.viewmat, cond.viewmat)


def test_a_state_says_whether_its_sound_is_a_song_only_when_it_says_true():
    known = {"c1"}.__contains__
    assert parse_state({"type": "state", "clip": "c1", "song": True}, known, 0.0).song
    for value in (False, "yes", 1, None):
        assert not parse_state({"type": "state", "clip": "c1", "song": value}, known, 0.0).song
    assert not parse_state({"type": "state", "clip": "c1"}, known, 0.0).song
