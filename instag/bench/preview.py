"""`instag bench preview`: what the preview page receives, measured with a client that speaks the page's protocol.

The server (instag.viewer.server) runs in this process on a loopback port; the client plays one clip like the
page does (the clock stands still while "playback starts" until AHEAD frames are buffered or 1 s passed, then runs
in real time and is re-sent every 250 ms) and records when each frame arrives, by the audio clock:

- fps_received: play frames received per second of audio; fps_shown: distinct frames that arrived before their
  display interval [i/fps, (i+1)/fps) ended, i.e. what the page can show, per second.
- latency_ms: for each frame shown, how long after the audio reached the frame's instant it was there
  (max(0, arrival − i/fps)): the page's audio-to-frame latency read-out. arrival_margin_ms: i/fps − arrival
  (> 0: rendered ahead of the clock).
- sync: the page's view simulated every 5 ms: clock frame − newest frame on hand; max and share of time ≤ 1.
- seek_ms / orbit_ms: from a seek (new epoch) / a camera change (new rev) to the first frame rendered for it —
  the latency when nothing could be rendered ahead.
- idle_fps: frames/s of the idle loop; cpu_ms_per_frame: this process's CPU time per frame received while
  playing, and cpu_load_share the cores it got (the machine may be shared: read fps beside these and the load).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile

from instag.bench.record import header
from instag.bench.render import speech_like
from instag.viewer.config import PreviewConfig
from instag.viewer.server import AHEAD, PreviewServer, unpack_frame

RESYNC_S = 0.25
PREROLL_MAX_S = 1.0


def percentile(values, q: float) -> float | None:
    """The q-th percentile of the finite ones among `values` (None and NaN left out); None when there are none."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.percentile(values, q)) if values else None


class _Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, clip: str) -> None:
        self.ws = ws
        self.clip = clip
        self.frames: list[tuple[dict[str, Any], float]] = []  # header, arrival (perf_counter)
        self.epoch = 1
        self.rev = 0
        self.t0: float | None = None  # perf_counter at audio time 0 once running

    def clock(self, now: float | None = None) -> float:
        return 0.0 if self.t0 is None else (now or time.perf_counter()) - self.t0

    async def send(self, playing: bool = True, **extra: Any) -> None:
        await self.ws.send_json({"type": "state", "clip": self.clip, "playing": playing,
                                 "running": self.t0 is not None, "t": self.clock(), "epoch": self.epoch,
                                 "rev": self.rev, **extra})

    async def receive_until(self, deadline: float, stop: Callable[[], bool] | None = None,
                            resync: bool = False) -> None:
        next_sync = time.perf_counter() + RESYNC_S
        while (now := time.perf_counter()) < deadline and not (stop and stop()):
            if resync and now >= next_sync:
                await self.send()
                next_sync = now + RESYNC_S
            try:
                msg = await self.ws.receive(timeout=max(min(deadline, next_sync) - now, 0.001))
            except asyncio.TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.frames.append((unpack_frame(msg.data)[0], time.perf_counter()))
            elif msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "error":
                raise RuntimeError(f"preview server: {json.loads(msg.data)['message']}")
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise RuntimeError("preview server closed the stream")


def _sync_stats(arrivals: dict[int, float], fps: float, duration: float) -> tuple[int, float]:
    """Simulate the page every 5 ms: → (max frames the shown one lags the clock, share of time lagging ≤ 1)."""
    idx = np.array(sorted(arrivals))
    at = np.array([arrivals[i] for i in idx])
    worst, good, n = 0, 0, 0
    for t in np.arange(0.0, duration, 0.005):
        cur = int(t * fps)
        on_hand = idx[(at <= t) & (idx <= cur)]
        if on_hand.size == 0:
            continue
        lag = cur - int(on_hand.max())
        worst, good, n = max(worst, lag), good + (lag <= 1), n + 1
    return worst, good / n if n else 0.0


async def _measure(url: str, clip: dict[str, Any], fps: float, seconds: float, seeks: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url + "ws", max_msg_size=64 << 20) as ws:
        await ws.receive_json(timeout=60)
        c = _Client(ws, clip["id"])
        # Idle loop.
        await c.send(playing=False)
        await c.receive_until(time.perf_counter() + 2.0)
        idle = [a for h, a in c.frames if h["mode"] == "idle"]
        idle_fps = (len(idle) - 1) / (idle[-1] - idle[0]) if len(idle) > 1 else 0.0
        # Play: pre-roll with the clock standing still, then in real time.
        c.frames.clear()
        t_play = time.perf_counter()
        await c.send()
        await c.receive_until(t_play + PREROLL_MAX_S,
                              stop=lambda: sum(h["mode"] == "play" for h, _ in c.frames) >= AHEAD)
        c.t0 = time.perf_counter()
        preroll_s = c.t0 - t_play
        await c.send()
        duration = min(seconds, clip["duration"] - 0.2)
        cpu0 = time.process_time()
        await c.receive_until(c.t0 + duration, resync=True)
        cpu_s = time.process_time() - cpu0
        play = [(h, c.clock(a)) for h, a in c.frames if h["mode"] == "play" and h["epoch"] == 1]
        # Seeks and orbit changes while playing: time to the first frame rendered for each.
        seek_ms, orbit_ms = [], []
        for k in range(seeks):
            for kind in ("seek", "orbit"):
                if kind == "seek":
                    c.t0 = time.perf_counter() - (0.3 + 0.1 * k) * duration
                    c.epoch += 1
                else:
                    c.rev += 1
                sent = time.perf_counter()
                n0 = len(c.frames)
                await c.send(yaw=0.3 * c.rev, pitch=0.1)

                def arrived(n0=n0, kind=kind, epoch=c.epoch, rev=c.rev) -> bool:
                    return any((h["epoch"] == epoch) if kind == "seek" else (h["rev"] == rev)
                               for h, _ in c.frames[n0:])

                await c.receive_until(sent + 5.0, stop=arrived, resync=True)
                first = next((a for h, a in c.frames[n0:]
                              if ((h["epoch"] == c.epoch) if kind == "seek" else (h["rev"] == c.rev))), None)
                if first is not None:
                    (seek_ms if kind == "seek" else orbit_ms).append((first - sent) * 1e3)
        await c.send(playing=False)

    arrivals: dict[int, float] = {}
    for h, a in play:
        arrivals.setdefault(h["i"], a)
    shown = {i: a for i, a in arrivals.items() if a < (i + 1) / fps}
    latency = [max(0.0, a - i / fps) * 1e3 for i, a in shown.items()]
    margin = [(i / fps - a) * 1e3 for i, a in arrivals.items()]
    worst, share = _sync_stats(arrivals, fps, duration)
    render_ms = [h["ms"] for h, _ in play]
    return {
        "audio_s": duration, "preroll_s": preroll_s,
        "frames_received": len(play), "fps_received": len(play) / duration,
        "frames_shown": len(shown), "fps_shown": len(shown) / duration,
        "latency_ms_median": percentile(latency, 50), "latency_ms_p95": percentile(latency, 95),
        "arrival_margin_ms_median": percentile(margin, 50), "arrival_margin_ms_p5": percentile(margin, 5),
        "max_sync_error_frames": worst, "share_in_sync": share,
        "render_ms_median": statistics.median(render_ms) if render_ms else None,
        # CPU time of the whole process (server, renderers, client) per frame received: on a machine shared
        # with other work, what a frame costs regardless of how much of the CPU this process got
        "cpu_ms_per_frame": cpu_s * 1e3 / max(len(play), 1),
        "cpu_load_share": cpu_s / duration,
        "seek_ms_median": percentile(seek_ms, 50), "orbit_ms_median": percentile(orbit_ms, 50),
        "idle_fps": idle_fps,
    }


def run(avatar: Path, audio: Path | None = None, seconds: float = 10.0, size: int | None = None,
        device: str = "auto", threads: int = 1, workers: int = 2, seeks: int = 3) -> dict[str, Any]:
    """Serve `avatar` with `audio` (default: a synthetic speech-like signal of `seconds` + 1 s) and measure."""
    with tempfile.TemporaryDirectory(prefix="instag-bench-preview-") as tmp:
        if audio is None:
            audio = Path(tmp) / "speech.wav"
            soundfile.write(audio, speech_like(seconds + 1.0), 16000, subtype="PCM_16")
        cfg = PreviewConfig(avatar=Path(avatar), audio=(Path(audio),), port=0, size=size, device=device,
                            threads=threads, workers=workers)
        with PreviewServer(cfg) as server:
            info = server.app.info()
            doc = header("preview")
            doc |= {"avatar": str(avatar), "audio": str(audio) if audio.parent != Path(tmp) else
                    f"synthetic speech-like {seconds + 1:g} s", "size": f"{info['size']}x{info['size']}",
                    "device": info["device"], "fps_target": info["fps"], "ahead_frames": AHEAD,
                    "workers": server.app.workers, "torch_threads": threads,
                    "n_gaussians": server.app.renderer.avatar.face.num_gaussians
                    + server.app.renderer.avatar.mouth.num_gaussians}
            doc["load_average_1m"] = os.getloadavg()[0]
            doc["play"] = asyncio.run(_measure(server.url, info["clips"][0], info["fps"], seconds, seeks))
    return doc
