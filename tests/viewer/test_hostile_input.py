"""The preview under hostile uploads and stream messages: decompression bombs are refused (413) before they are
decoded and with bounded memory, non-finite audio is refused (415) and never listed, and out-of-range numbers in
a stream message get an error answer while the stream goes on."""

from __future__ import annotations

import asyncio
import io
import json
import random
import urllib.error
import urllib.parse
import urllib.request

import aiohttp
import numpy as np
import pytest
import soundfile
from hostile import mutate, peak_rss_growth, silent_flac
from instag_testing import post_upload


def listed(server) -> list[str]:
    return [c.name for c in server.app.clips.list()]


@pytest.mark.parametrize("header", [True, False])
def test_a_decompression_bomb_is_refused_with_bounded_memory(preview_server, tmp_path, header):
    bomb = silent_flac(tmp_path / "bomb.flac", 3600, header=header).read_bytes()  # 1 h: ~14 kB
    assert len(bomb) < preview_server.cfg.max_upload_bytes
    (status, doc), grown = peak_rss_growth(lambda: post_upload(preview_server.url, bomb, "bomb.flac"))
    assert status == 413 and "600 s" in doc["error"] and "bomb.flac" in doc["error"], doc
    # Decoding the whole hour took ~1 GB; the preview's memory must stay within 200 MB of idle for any upload.
    assert grown < 200 << 20, grown
    assert "bomb.flac" not in listed(preview_server)


def test_non_finite_audio_is_refused_and_not_listed(preview_server):
    x = np.zeros(16000, np.float32)
    x[1000:1100] = np.nan
    buf = io.BytesIO()
    soundfile.write(buf, x, 16000, format="WAV", subtype="FLOAT")
    status, doc = post_upload(preview_server.url, buf.getvalue(), "nan.wav")
    assert status == 415 and "non-finite" in doc["error"] and "nan.wav" in doc["error"], doc
    assert "nan.wav" not in listed(preview_server)


@pytest.mark.parametrize("bad", [{"epoch": 10**400}, {"rev": 10**400}, {"t": 1e308}, {"t": 10**400},
                                 {"yaw": 10**400}])
def test_out_of_range_stream_numbers_get_an_error_and_the_stream_goes_on(preview_server, bad):
    async def go():
        async with aiohttp.ClientSession() as http, http.ws_connect(preview_server.url + "ws") as ws:
            await ws.receive_json(timeout=30)
            clip = preview_server.app.clips.list()[0].id
            # Raw text: json.dumps writes 10**400 as the integer literal a hostile page would send.
            await ws.send_str(json.dumps({"type": "state", "clip": clip, "playing": True, "t": 0.0, "epoch": 1,
                                          **bad}))
            while (msg := await ws.receive(timeout=30)).type != aiohttp.WSMsgType.TEXT:
                pass
            reply = json.loads(msg.data)
            await ws.send_json({"type": "state", "clip": None, "playing": False, "t": 0.0, "epoch": 2, "rev": 7})
            while True:
                msg = await ws.receive(timeout=30)
                assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
                if msg.type == aiohttp.WSMsgType.BINARY and b'"rev":7' in msg.data[:200]:
                    return reply

    reply = asyncio.run(asyncio.wait_for(go(), 60))  # a stream that stopped would wait forever
    assert reply["type"] == "error" and next(iter(bad)) in reply["message"], reply


def test_mutated_uploads_are_accepted_or_refused_never_500(preview_server, speech_wav):
    rng = random.Random(0)
    valid = speech_wav.read_bytes()
    # URL-encoded, as the page sends them (header values are Latin-1).
    names = [urllib.parse.quote(n) for n in ("a.wav", "../../x.wav", "[/y].wav", "\u202e.wav", "a" * 500)]
    statuses = [post_upload(preview_server.url, mutate(valid, rng), rng.choice(names))[0] for _ in range(20)]
    assert set(statuses) <= {200, 413, 415}, statuses
    listed = {c.id for c in preview_server.app.clips.list()}
    assert all(preview_server.app.renderer.driver(preview_server.app.clips.get(c)).n_frames > 0 for c in listed)


def random_value(rng: random.Random):
    return rng.choice([None, True, "x", "NaN", -1, 0, 10**400, -10**400, 1e308, -1e308, 2**63, [], {}, 0.5,
                       "c0", "../c0", "\x00"])


def test_random_stream_messages_get_answers_and_the_stream_goes_on(preview_server):
    rng = random.Random(1)
    keys = ["type", "clip", "playing", "running", "t", "epoch", "yaw", "pitch", "zoom", "rev", "live", "song"]

    async def go() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(preview_server.url + "ws") as ws:
            await ws.receive_json(timeout=30)
            for _ in range(30):
                msg = {"type": "state", **{k: random_value(rng) for k in rng.sample(keys, rng.randint(1, len(keys)))}}
                await ws.send_str(json.dumps(msg))
            await ws.send_str("not json {")
            await ws.send_json({"type": "state", "clip": None, "playing": False, "t": 0, "epoch": 0, "rev": 99})
            while True:
                got = await ws.receive(timeout=30)
                assert got.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), got
                if got.type == aiohttp.WSMsgType.BINARY and b'"rev":99' in got.data[:200]:
                    return

    asyncio.run(asyncio.wait_for(go(), 90))
