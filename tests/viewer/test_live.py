"""The preview's live microphone mode over its WebSocket: silence renders the idle loop's closed mouth with the
head still moving, speech drives the mouth, and a page that sends malformed, oversized or faster-than-real-time
audio is cut off with a message while the server goes on; one page holds the microphone at a time; nothing heard
reaches the disk. Plus the ring buffer, the chunk parser and the orbit's bounds."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import os
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
import torch
from e2e.conftest import speech_like

from instag.avatar.rest import REST_AFTER_S
from instag.render.views import ViewRange, view_range
from instag.train.lips import live_windows
from instag.viewer.camera import Orbit
from instag.viewer.config import LIVE_LOOKAHEAD_FRAMES
from instag.viewer.live import (
    BURST_S,
    FLOOR_MIN_S,
    GATE_DBFS,
    MAX_CHUNK_SAMPLES,
    RATE,
    LiveFeatures,
    LiveRefused,
    LiveStream,
    RingBuffer,
    parse_chunk,
    to_chunk,
)
from instag.viewer.server import unpack_frame

CHUNK = RATE // 100  # what the page sends: 10 ms


pcm = to_chunk


def feed(stream: LiveStream, samples: np.ndarray) -> None:
    """Push `samples` [N] into `stream` in the largest messages allowed, at real-time pace from its first."""
    for start in range(0, len(samples), MAX_CHUNK_SAMPLES):
        stream.push(pcm(samples[start:start + MAX_CHUNK_SAMPLES]), (stream.buffer.total + MAX_CHUNK_SAMPLES) / RATE)


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)


async def _hello(ws) -> dict:
    hello = await ws.receive_json(timeout=30)
    assert hello["type"] == "hello"
    return hello


async def _take_mic(ws) -> None:
    await ws.send_json({"type": "state", "clip": None, "playing": False, "live": True})
    while (msg := await ws.receive(timeout=30)).type != aiohttp.WSMsgType.TEXT:
        pass
    assert json.loads(msg.data) == {"type": "live", "on": True, "rate": RATE}, msg.data


async def _speak(url: str, audio: np.ndarray) -> list[tuple[dict, bytes]]:
    """Send `audio` [N] over /ws in 10 ms chunks at real-time pace; → the live frames received."""
    frames: list[tuple[dict, bytes]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "ws") as ws:
        await _hello(ws)
        await _take_mic(ws)

        async def receive() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    head, jpeg = unpack_frame(msg.data)
                    if head["mode"] == "live":
                        frames.append((head, jpeg))
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    assert json.loads(msg.data)["type"] != "error", msg.data

        reader = asyncio.create_task(receive())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for start in range(0, len(audio), CHUNK):
            await asyncio.sleep(max(t0 + start / RATE - loop.time(), 0))
            await ws.send_bytes(pcm(audio[start:start + CHUNK]))
        await asyncio.sleep(1.0)  # the last frames
        reader.cancel()
    return frames


def test_silence_closes_the_mouth_and_speech_moves_it(preview_server):
    app = preview_server.app
    fps = app.renderer.fps
    quiet, talk = 0.8, 1.6  # s
    audio = np.concatenate([np.zeros(int(quiet * RATE)), speech_like(talk, RATE, 1)[:, 0] * 2,
                            np.zeros(int(1.2 * RATE))]).astype(np.float32)
    frames = asyncio.run(asyncio.wait_for(_speak(preview_server.url, audio), 60))
    idx = [h["i"] for h, _ in frames]
    assert idx == sorted(set(idx)) and len(frames) >= 0.5 * len(audio) / RATE * fps, idx
    look_back = app.renderer.avatar.cfg.audio.smooth_window // 2
    in_speech = [(h, j) for h, j in frames if (quiet + 0.1) * fps < h["i"] < (quiet + talk - 0.1) * fps]
    after = [(h, j) for h, j in frames if h["i"] > (quiet + talk) * fps + look_back + 1]
    before = [(h, j) for h, j in frames if h["i"] < quiet * fps - 1 - app.renderer.live.lookahead]
    assert in_speech and after and before
    assert all(h["voiced"] for h, _ in in_speech)
    assert not any(h["voiced"] for h, _ in before + after)

    def idle(k: int) -> np.ndarray:
        return decode(app.renderer.render_idle(k, Orbit()).jpeg)

    # Silence: exactly the idle loop's frame (mouth closed) at the same step, so the head goes on moving.
    for h, jpeg in before + after:
        assert np.abs(decode(jpeg) - idle(h["i"])).max() == 0, h
    poses = {app.renderer.idle.drive_index(h["i"]) for h, _ in after}
    assert len(poses) > 1, "the head stood still in the silence"
    # Speech: every frame leaves the closed-mouth one (how far the lips open on a real avatar: `instag bench
    # preview --live`, and the browser test below).
    moved = [np.abs(decode(jpeg) - idle(h["i"])).max() for h, jpeg in in_speech]
    assert min(moved) > 0, moved
    # Every frame was made from the audio heard up to its own end.
    assert all(h["end"] == round((h["i"] + 1) * RATE / fps) for h, _ in frames)


async def _misbehave(url: str, send) -> tuple[str | None, int | None]:
    """Take the microphone, `send(ws)`, → (the error message, the close code)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "ws", max_msg_size=1 << 22) as ws:
        await _hello(ws)
        await _take_mic(ws)
        await send(ws)
        error = None
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "error":
                error = json.loads(msg.data)["message"]
        return error, ws.close_code


async def _send_all(ws, chunks: list[bytes]) -> None:
    for c in chunks:
        await ws.send_bytes(c)


@pytest.mark.parametrize("chunks, expect", [
    ([b"\x00"], "odd length"),
    ([b""], "empty"),
    ([bytes(2 * (MAX_CHUNK_SAMPLES + 1))], "over the limit"),
    ([pcm(np.zeros(MAX_CHUNK_SAMPLES))] * int((BURST_S + 1) * RATE / MAX_CHUNK_SAMPLES + 2), "faster than real time"),
])
def test_bad_audio_cuts_the_page_off_with_a_message_and_the_server_goes_on(preview_server, chunks, expect):
    async def go():
        async with aiohttp.ClientSession() as http, http.ws_connect(preview_server.url + "ws") as other:
            await _hello(other)
            error, code = await _misbehave(preview_server.url, lambda ws: _send_all(ws, chunks))
            # The other page still gets frames, and the microphone is free again.
            await other.send_json({"type": "state", "clip": None, "playing": False, "rev": 5})
            while not ((m := await other.receive(timeout=30)).type == aiohttp.WSMsgType.BINARY
                       and unpack_frame(m.data)[0]["rev"] == 5):
                pass
            await _take_mic(other)
            return error, code

    error, code = asyncio.run(asyncio.wait_for(go(), 60))
    assert error is not None and expect in error and error.startswith("microphone stream refused"), error
    assert code == aiohttp.WSCloseCode.POLICY_VIOLATION


def test_an_audio_message_over_the_socket_limit_is_cut_off(preview_server):
    async def go():
        return await _misbehave(preview_server.url, lambda ws: ws.send_bytes(bytes(1 << 20)))

    _, code = asyncio.run(asyncio.wait_for(go(), 60))
    assert code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    # aiohttp sends this close frame itself; the server's session lets the slot go just after, in its own loop.
    deadline = time.monotonic() + 10
    while preview_server.app.live_owner is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert preview_server.app.live_owner is None


def test_audio_without_the_microphone_is_refused(preview_server):
    async def go():
        async with aiohttp.ClientSession() as http, http.ws_connect(preview_server.url + "ws") as ws:
            await _hello(ws)
            await ws.send_bytes(pcm(np.zeros(CHUNK)))
            error = None
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "error":
                    error = json.loads(msg.data)["message"]
            return error, ws.close_code

    message, code = asyncio.run(asyncio.wait_for(go(), 60))
    assert "microphone is off" in message and code == aiohttp.WSCloseCode.POLICY_VIOLATION


def test_a_second_tab_is_refused_the_microphone_until_the_first_lets_go(preview_server):
    async def go():
        async with aiohttp.ClientSession() as http:
            first = await http.ws_connect(preview_server.url + "ws")
            await _hello(first)
            await _take_mic(first)
            async with http.ws_connect(preview_server.url + "ws") as second:
                await _hello(second)
                await second.send_json({"type": "state", "clip": None, "playing": False, "live": True})
                while (msg := await second.receive(timeout=30)).type != aiohttp.WSMsgType.TEXT:
                    pass
                refusal = json.loads(msg.data)
                await first.close()
                await asyncio.sleep(0.2)
                await _take_mic(second)
            return refusal

    refusal = asyncio.run(asyncio.wait_for(go(), 60))
    assert refusal["type"] == "error" and refusal["live"] is False and "another tab" in refusal["message"]


def open_files() -> set[str]:
    """Regular files this process has open (Linux /proc)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and Path(target).is_file():
            out.add(target)
    return out


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_nothing_heard_is_written_to_disk(preview_server):
    before = open_files()
    tmp = Path(preview_server.app.clips._tmp.name)

    async def go():
        seen = set()
        async with aiohttp.ClientSession() as http, http.ws_connect(preview_server.url + "ws") as ws:
            await _hello(ws)
            await _take_mic(ws)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            audio = speech_like(1.0, RATE, 1)[:, 0]
            for start in range(0, len(audio), CHUNK):
                await asyncio.sleep(max(t0 + start / RATE - loop.time(), 0))
                await ws.send_bytes(pcm(audio[start:start + CHUNK]))
                seen |= open_files() | {str(p) for p in tmp.iterdir()}
        return seen

    seen = asyncio.run(asyncio.wait_for(go(), 60))
    assert seen <= before, seen - before


def test_parse_chunk_and_ring_buffer():
    assert np.allclose(parse_chunk(np.array([0, 16384, -32768], "<i2").tobytes()), [0, 0.5, -1])
    for bad in (b"", b"\x01", bytes(2 * MAX_CHUNK_SAMPLES + 2)):
        with pytest.raises(LiveRefused):
            parse_chunk(bad)
    ring = RingBuffer(10)
    ring.push(np.arange(1, 8, dtype=np.float32))  # 1..7
    assert ring.read(7, 9).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7]
    ring.push(np.arange(8, 14, dtype=np.float32))  # 8..13: 1..3 dropped
    assert ring.total == 13 and ring.read(13, 12).tolist() == [0, 0] + list(range(4, 14))
    assert ring.read(10, 3).tolist() == [8, 9, 10]


def test_a_stream_may_not_run_ahead_of_real_time():
    stream = LiveStream(fps=25.0)
    chunk = pcm(np.zeros(MAX_CHUNK_SAMPLES))
    t = 10.0
    for _ in range(int(BURST_S * RATE / MAX_CHUNK_SAMPLES)):  # a burst of BURST_S is allowed at once
        stream.push(chunk, t)
    with pytest.raises(LiveRefused, match="faster than real time"):
        stream.push(chunk, t)
    stream = LiveStream(fps=25.0)
    for k in range(40):  # 10 s in real time
        stream.push(chunk, t + k * MAX_CHUNK_SAMPLES / RATE)
    assert stream.newest_frame() == 40 * MAX_CHUNK_SAMPLES * 25 // RATE - 1


def test_a_live_silence_rests_the_lips_only_once_it_has_lasted(preview_server):
    live, fps = preview_server.app.renderer.live, preview_server.app.renderer.fps
    stream = LiveStream(fps)
    quiet, talk = 0.6, 1.0  # s, then 2.4 s of silence
    audio = np.concatenate([np.zeros(int(quiet * RATE)), speech_like(talk, RATE, 1)[:, 0] * 2,
                            np.zeros(int(2.4 * RATE))]).astype(np.float32)
    for i, start in enumerate(range(0, len(audio), MAX_CHUNK_SAMPLES)):
        stream.push(pcm(audio[start:start + MAX_CHUNK_SAMPLES]), 10.0 + (i + 1) * MAX_CHUNK_SAMPLES / RATE)
    last = int((quiet + talk) * fps)
    assert live.resting(stream, int(quiet * fps) - 2)  # before it, and before the stream: nobody spoke
    assert not live.resting(stream, last - 2)
    assert not live.resting(stream, last + int(1.0 * fps))  # a pause: the lips the silence predicts
    assert live.resting(stream, last + int((REST_AFTER_S + 0.3) * fps))


def test_a_live_frame_waits_for_its_look_ahead_and_hears_the_voice_in_it(preview_server):
    live, fps = preview_server.app.renderer.live, preview_server.app.renderer.fps
    assert live.lookahead == LIVE_LOOKAHEAD_FRAMES > 0  # the server's default
    quiet = 20  # frames of silence, then speech
    audio = np.concatenate([np.zeros(int(quiet * RATE / fps)), speech_like(1.0, RATE, 1)[:, 0] * 2]).astype(np.float32)
    stream = LiveStream(fps)
    feed(stream, audio[:stream.frame_end(quiet - 1)])
    # Silence has been heard through frame quiet - 1: the frames that can be drawn are those whose context (their
    # look-ahead, rounded up to the feature hop) it covers, and none of them is voiced.
    k = live.newest(stream)
    assert live.context_end(k) <= quiet - 1 < live.context_end(k + 1)
    assert quiet - 1 - live.lookahead - (live.hop - 1) <= k <= quiet - 1 - live.lookahead
    assert not any(live.voiced(stream, k) for k in range(live.newest(stream) + 1))
    feed(stream, audio[stream.frame_end(quiet - 1):stream.frame_end(quiet + 5)])
    k = live.newest(stream)
    assert live.context_end(k) <= quiet + 5 < live.context_end(k + 1)
    with pytest.raises(ValueError, match="has not arrived"):
        live.windows(stream, k + 1)
    # The last silent frame hears the voice that follows it, as a dub's does: the lips start to move before it.
    assert live.voiced(stream, quiet - 1) and not live.voiced(stream, quiet - 1 - live.lookahead)
    # Its windows hold that voice: they differ from those of the same silent frame heard without what followed.
    ahead = live.windows(stream, quiet - 1)
    alone = LiveStream(fps)
    feed(alone, np.concatenate([audio[:stream.frame_end(quiet - 1)],
                                np.zeros(stream.frame_end(quiet + 5) - stream.frame_end(quiet - 1), np.float32)]))
    assert ahead.shape == live.windows(alone, quiet - 1).shape
    assert not torch.equal(ahead, live.windows(alone, quiet - 1))


def test_the_live_read_out_is_fitted_on_the_windows_the_preview_computes(preview_server):
    """`train.lips.live_windows`, which the UMF's live read-out is fitted on, gives each frame of a clip the windows
    the preview computes for it from a microphone stream of the same sound, to the bit."""
    renderer = preview_server.app.renderer
    live, fps = renderer.live, renderer.fps
    sound = (speech_like(2.0, RATE, 1)[:, 0] * 2).astype(np.float32)
    audio = np.concatenate([parse_chunk(pcm(sound[i:i + CHUNK])) for i in range(0, len(sound), CHUNK)])  # as heard
    stream = LiveStream(fps)
    feed(stream, sound)
    n = int(len(audio) * fps / RATE)
    got = {t: w for group, windows in live_windows(audio, fps, list(range(n)), n, live.kind, live.front,
                                                  renderer.avatar.cfg.audio, live.shape[1])
           for t, w in zip(group, windows, strict=True)}
    assert sorted(got) == list(range(live.newest(stream) + 1))
    assert all(torch.equal(w, live.windows(stream, t)) for t, w in got.items())


def test_a_voiced_live_frame_is_driven_as_live_audio(preview_server, monkeypatch):
    """A live frame's audio windows are marked as the live mode's, so the UMF reads its live read-out there
    (`UniversalMotionField.lip_shape`); a clip's frames are not."""
    renderer = preview_server.app.renderer
    seen = []
    frame = renderer._frame
    monkeypatch.setattr(renderer, "_frame", lambda cond, *a: seen.append(cond.live_audio) or frame(cond, *a))
    stream = LiveStream(renderer.fps)
    feed(stream, (speech_like(2.0, RATE, 1)[:, 0] * 2).astype(np.float32))
    k = renderer.live.newest(stream)
    assert renderer.live.voiced(stream, k)
    renderer.render_live(stream, k, Orbit())
    renderer.render(renderer.pause, 3, Orbit())
    assert seen == [True, False]


def test_neighbouring_live_frames_share_one_feature_pass(preview_server, monkeypatch):
    """The `hop` frames whose contexts end together get their windows from one pass of the feature model, also when
    two workers ask for them at once; each frame still gets its own windows."""
    live, fps = preview_server.app.renderer.live, preview_server.app.renderer.fps
    assert live.hop == 2  # on the CPU; where the features are cheap each frame has its own pass
    assert LiveFeatures(preview_server.app.renderer.avatar, torch.device("cuda")).hop == 1
    stream = LiveStream(fps)
    feed(stream, (speech_like(2.0, RATE, 1)[:, 0] * 2).astype(np.float32))
    calls = []
    compute = live._features

    def slow(audio, start_s):
        calls.append(start_s)
        time.sleep(0.2)  # long enough that both workers ask while it runs
        return compute(audio, start_s)

    monkeypatch.setattr(live, "_features", slow)
    last = live.context_end(live.newest(stream))
    pair = [last - live.lookahead - 1, last - live.lookahead]
    assert [live.context_end(k) for k in pair] == [last, last]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        windows = list(pool.map(lambda k: live.windows(stream, k), pair))
    assert len(calls) == 1
    assert windows[0].shape == windows[1].shape and not torch.equal(windows[0], windows[1])
    assert torch.equal(windows[1], live.windows(stream, pair[1])) and len(calls) == 1  # kept: no second pass
    live.windows(stream, pair[0] - 1)  # the frame before belongs to the context before
    assert len(calls) == 2


def _stream_of(audio: np.ndarray, fps: float = 25.0, look_back: int = 4) -> tuple[LiveStream, list[bool]]:
    """A stream fed `audio` [N] in 10 ms chunks at real-time pace, and each frame judged loud once it arrived."""
    stream, loud = LiveStream(fps), []
    for i, start in enumerate(range(0, len(audio), CHUNK)):
        stream.push(pcm(audio[start:start + CHUNK]), (i + 1) * CHUNK / RATE)
        loud += [stream.loud(k, look_back) for k in range(len(loud), stream.newest_frame() + 1)]
    return stream, loud


def _at(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * 10 ** (dbfs / 20) / np.sqrt(np.mean(np.square(x)))


@pytest.mark.parametrize("noise_dbfs, speech_dbfs", [(-45.0, -25.0), (-80.0, -56.0)])
def test_the_silence_gate_follows_the_room(noise_dbfs, speech_dbfs):
    """A fan under the microphone is silence and a quiet voice on a quiet microphone is speech, though the first is
    louder than GATE_DBFS and the second quieter."""
    rng = np.random.default_rng(0)
    talk = _at(speech_like(2.0, RATE, 1, seed=3)[:, 0], speech_dbfs)
    clean = np.concatenate([np.zeros(3 * RATE), talk, np.zeros(3 * RATE)])
    audio = (clean + _at(rng.standard_normal(len(clean)), noise_dbfs)).astype(np.float32)
    assert (noise_dbfs > GATE_DBFS) != (speech_dbfs < GATE_DBFS)  # each case defeats a fixed gate one way
    stream, loud = _stream_of(audio)
    fps = 25
    assert stream.gate(int(FLOOR_MIN_S * fps) - 2) == GATE_DBFS  # the room not heard yet
    assert noise_dbfs < stream.gate(3 * fps - 1) < speech_dbfs
    in_speech = loud[3 * fps + 2 : 5 * fps]
    assert np.mean(in_speech) > 0.9
    assert not any(loud[int(1.5 * fps) : 3 * fps]) and not any(loud[6 * fps :])  # the noise before and after
    assert stream.quiet(len(loud) - 1, int(np.ceil(REST_AFTER_S * fps)))  # and after it, the lips rest


def _turned(yaw: float, pitch: float) -> np.ndarray:
    """A world → camera matrix [4, 4] turned as the orbit turns a frontal one."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    m = np.eye(4)
    m[:3, :3] = rx @ ry
    m[2, 3] = 0.5
    return m


def test_the_orbit_is_bounded_by_the_training_views():
    yaws = np.radians(np.linspace(-4.0, 12.0, 41))  # median 4°
    pitches = np.radians(np.linspace(-3.0, 3.0, 41))[::-1]
    view = view_range(np.stack([_turned(y, p) for y, p in zip(yaws, pitches, strict=True)]))
    assert np.allclose(np.degrees(view.yaw), [-7.2, 7.2], atol=0.05)
    assert np.allclose(np.degrees(view.pitch), [-2.7, 2.7], atol=0.1)  # turns compose: yaw moves pitch a little
    # A few frames where the tracker slipped do not widen it.
    slipped = np.stack([_turned(y, 0.0) for y in yaws] + [_turned(math.radians(60), 0.0)])
    assert math.degrees(view_range(slipped).yaw[1]) < 8
    bounded = Orbit(1.0, -1.0, 2.0).clamped(view)
    assert bounded == Orbit(view.yaw[1], view.pitch[0], 2.0)
    assert Orbit(1.0, -1.0).clamped(ViewRange()) == Orbit(1.0, -1.0)


def test_the_microphone_is_refused_to_another_machine(preview_server, monkeypatch):
    from instag.viewer import server as server_module

    monkeypatch.setattr(server_module, "is_loopback", lambda host: False)  # as if the page were elsewhere

    async def go():
        async with aiohttp.ClientSession() as http, http.ws_connect(preview_server.url + "ws") as ws:
            await _hello(ws)
            await ws.send_json({"type": "state", "clip": None, "playing": False, "live": True})
            while (msg := await ws.receive(timeout=30)).type != aiohttp.WSMsgType.TEXT:
                pass
            return json.loads(msg.data)

    refusal = asyncio.run(asyncio.wait_for(go(), 60))
    assert refusal["type"] == "error" and refusal["live"] is False and "this machine" in refusal["message"]
    assert preview_server.app.live_owner is None


@pytest.mark.parametrize("kwargs", [{"lookahead": -1}, {"context_s": 0.0}, {"context_s": 3.5}])
def test_live_features_refuse_a_negative_look_ahead_or_a_context_the_buffer_cannot_hold(preview_server, kwargs):
    with pytest.raises(ValueError, match="lookahead|context_s"):
        LiveFeatures(preview_server.app.renderer.avatar, torch.device("cpu"), **kwargs)


def test_music_with_no_voice_rests_the_live_lips_and_a_voice_wakes_them(preview_server):
    """Loud sound without a voice (`audio.voice`) for REST_AFTER_S through the look-ahead: the idle loop's frame, as
    in silence; the frames that hear a voice again are driven by it."""
    renderer = preview_server.app.renderer
    fps, live = renderer.fps, renderer.live
    t = np.arange(int(4.0 * RATE)) / RATE
    root = np.array([220.0, 174.6, 196.0, 261.6])[(t // 2.0).astype(int) % 4]
    chords = sum(np.sin(2 * np.pi * root * ratio * h * t) / h for ratio in (1.0, 1.26, 1.5) for h in range(1, 7))
    music = 0.3 * chords / np.abs(chords).max()
    stream = LiveStream(fps)
    feed(stream, np.concatenate([music, speech_like(1.0, RATE, 1)[:, 0] * 2]).astype(np.float32))
    in_music = int(3.8 * fps)  # REST_AFTER_S after the chord change at 2 s (its click reads as a hint of a voice)
    assert live.voiced(stream, in_music) and live.voiceless(stream, in_music)  # loud, but nobody speaks
    frame = renderer.render_live(stream, in_music, Orbit())
    assert not frame.header["voiced"]
    assert np.abs(decode(frame.jpeg) - decode(renderer.render_idle(in_music, Orbit()).jpeg)).max() == 0
    assert not live.voiceless(stream, int(1.0 * fps))  # not yet REST_AFTER_S of it
    talking = int(4.5 * fps)
    assert not live.voiceless(stream, talking) and renderer.render_live(stream, talking, Orbit()).header["voiced"]
    # the look-ahead meets the voice: its frames wake before the voice is under them
    assert not live.voiceless(stream, int(4.0 * fps) - live.lookahead + 1)
    # a preview for songs (`--no-voice-rest`) hears no voice detector: the same music moves the lips
    song = LiveStream(fps, hear_voice=False)
    feed(song, np.concatenate([music, speech_like(1.0, RATE, 1)[:, 0] * 2]).astype(np.float32))
    assert not live.voiceless(song, in_music) and live.shows(song, in_music) == "voice"
    assert live.shows(stream, in_music, song=True) == "voice"  # the page's *song* box, the detector still running


def test_a_sound_out_of_a_long_silence_wakes_the_lips_by_the_gate_as_soon_as_the_look_ahead_hears_it(preview_server):
    """The voice detector needs a few chunks of a voice to be sure of it; out of silence the gate's look-ahead wakes
    the lips first, even when what comes first is no voice (here 80 ms of noise, as a breath before a word)."""
    live = preview_server.app.renderer.live
    stream = LiveStream(live.fps)
    breath = 0.1 * np.random.default_rng(0).standard_normal(int(0.08 * RATE))
    feed(stream, np.concatenate([np.zeros(int(2.4 * RATE)), breath, speech_like(1.0, RATE, 1)[:, 0] * 2]).astype(np.float32))
    onset = int(2.4 * live.fps)
    assert live.shows(stream, onset - live.lookahead - 2) == "rest"
    assert live.shows(stream, onset - live.lookahead) == "voice"
