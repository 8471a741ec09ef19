"""The preview server: the page's own static files (an in-memory allow-list), the clips' audio (by id), uploads,
and a WebSocket that streams JPEG frames picked by the page's audio clock.

Routes (nothing else exists; no client input ever becomes a filesystem path):
    GET  /                  the page
    GET  /static/{name}     one of the page's files, looked up by exact name in memory
    GET  /audio/{id}.wav    a clip's decoded audio as WAV, from memory
    GET  /api/info          fps, frame size, device, clips, upload limit
    POST /api/upload        raw audio bytes (X-Filename: display name) → the new clip, or 413/415 + message
    GET  /ws                the frame stream

Stream protocol. The page sends JSON `state` messages: {"type": "state", "clip": id | null, "playing": bool,
"running": bool (false while playback is starting or stalled: the clock stands still), "t": audio.currentTime, "epoch": n (bumped on play / seek / clip change), "yaw", "pitch", "zoom",
"rev": n (bumped on every camera change)} — on every change and every 250 ms while playing. The server
extrapolates the audio clock from the latest `t` and renders, while playing, the frames that can still arrive
before they are due (frame i is due at i / fps) and up to AHEAD frames beyond the clock; when nothing plays, the
idle loop at the frame rate. Each frame is one binary message: uint32 (little endian) header length, the JSON
header {"mode": "play" | "idle", "clip", "i", "rev", "epoch", "ms": render ms}, then the JPEG. The page shows
the play frame whose index is floor(audio.currentTime · fps).

Live microphone. A state with "live": true asks for the microphone slot; one page at a time holds it (another
gets an error message and stays as it was), and only over a loopback connection (a server given another --host
refuses it to other machines). The server answers {"type": "live", "on": true, "rate": 16000}; from
then on each binary message from the page is 16-bit little-endian mono PCM at 16 kHz (at most
live.MAX_CHUNK_SAMPLES samples), kept in memory only (instag.viewer.live). The server renders the newest live
frames whose audio (and their look-ahead's) has all arrived, skipping older ones when it falls behind: header
{"mode": "live", "i": k, "end": stream samples it heard, "voiced", "feature_ms", …}. A malformed or oversized
audio message, audio while the microphone is off, or audio faster than real time ends that page's stream with an
error message (the server goes on serving the others).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import json
import math
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from aiohttp import WSCloseCode, WSMsgType, web

from instag.avatar.bundle import load_avatar
from instag.errors import InputError
from instag.machine import resolve_device
from instag.render.views import ANY_VIEW, ViewRange
from instag.viewer.camera import Orbit
from instag.viewer.clips import ClipStore, UploadRefused
from instag.viewer.config import PreviewConfig
from instag.viewer.live import MAX_CHUNK_SAMPLES, RATE, LiveRefused, LiveStream
from instag.viewer.renderer import Frame, PreviewRenderer

AHEAD = 8  # play frames rendered at most this far beyond the audio clock
# Bounds of a state message's numbers: counters and angles stay exact in a float (2**53), and the audio clock
# (clips last at most 600 s) stays far from where a frame index would overflow.
MAX_NUMBER = float(2**53)
MAX_CLOCK_S = 1e6
# How long requests still in flight (an upload, say) may take once the server stops: aiohttp's default (60 s) kept
# Ctrl-C waiting for a stalled upload until stop()'s own 10 s limit.
SHUTDOWN_GRACE_S = 0.5
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; "
                               "connect-src 'self'; object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files by name → (bytes, content type), read once from the package."""
    files = {}
    for entry in resources.files("instag.viewer").joinpath("static").iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in CONTENT_TYPES:
            files[entry.name] = (entry.read_bytes(), CONTENT_TYPES[suffix])
    return files


@dataclass
class StreamState:
    clip: str | None = None
    playing: bool = False
    t: float = 0.0  # audio clock at `received`
    running: bool = False  # whether the clock advances (false while playback is starting or stalled)
    received: float = 0.0  # loop time
    epoch: int = 0
    orbit: Orbit = field(default_factory=Orbit)
    rev: int = 0
    live: bool = False  # the page asks to drive the avatar with its microphone
    song: bool = False  # the page says its sound is a song: the lips rest in silence only (not where no voice is heard)


def parse_state(msg: dict[str, Any], known_clip, now: float, view: ViewRange = ANY_VIEW) -> StreamState:
    """A page's `state` message → StreamState; ValueError with what is wrong."""
    if msg.get("type") != "state":
        raise ValueError(f"unknown message type {msg.get('type')!r}")
    clip = msg.get("clip")
    if clip is not None and (not isinstance(clip, str) or not known_clip(clip)):
        raise ValueError(f"unknown clip {clip!r}")

    def num(key: str, default: float, lo: float = -MAX_NUMBER, hi: float = MAX_NUMBER) -> float:
        v = msg.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{key} must be a finite number")
        # An integer beyond float's range (10**400 is valid JSON) overflows float(); it is out of range too.
        f = float(v) if not isinstance(v, int) or abs(v) <= hi else math.inf
        if not lo <= f <= hi:
            raise ValueError(f"{key} must be a finite number in [{lo:g}, {hi:g}]")
        return f

    orbit = Orbit(num("yaw", 0.0), num("pitch", 0.0), num("zoom", 1.0)).clamped(view)
    playing = bool(msg.get("playing")) and clip is not None
    return StreamState(clip=clip, playing=playing, t=max(num("t", 0.0, hi=MAX_CLOCK_S), 0.0),
                       running=playing and bool(msg.get("running", True)), received=now,
                       epoch=int(num("epoch", 0)), orbit=orbit, rev=int(num("rev", 0)), live=msg.get("live") is True,
                       song=msg.get("song") is True)


def parse_message(text: str, known_clip, now: float, view: ViewRange = ANY_VIEW) -> StreamState:
    """A page's WebSocket text message → StreamState; ValueError with what is wrong, whatever the text."""
    try:
        msg = json.loads(text)
    except RecursionError as exc:  # deep nesting ([[[[...]]]]) exhausts the decoder's stack
        raise ValueError("malformed message (nested too deeply)") from exc
    if not isinstance(msg, dict):
        raise ValueError(f"a message must be a JSON object, got {type(msg).__name__}")
    return parse_state(msg, known_clip, now, view)


def pack_frame(header: dict[str, Any], jpeg: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + jpeg


def unpack_frame(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack_from("<I", data)
    return json.loads(data[4:4 + n]), data[4 + n:]


class PreviewApp:
    """The loaded avatar, its renderer and clips, and the aiohttp application serving them."""

    def __init__(self, cfg: PreviewConfig) -> None:
        self.cfg = cfg
        avatar = load_avatar(cfg.avatar)
        self.device = resolve_device(cfg.device)
        avatar.to(self.device)
        if self.device.type == "cpu" and cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.renderer = PreviewRenderer(avatar, self.device, cfg.size, cfg.audio_model, cfg.live_lookahead,
                                        cfg.voice_rest)
        self.clips = ClipStore(self.renderer.fps, cfg.max_upload_bytes)
        try:
            for path in cfg.audio:
                self.renderer.driver(self.clips.add_file(path))
        except BaseException:
            self.clips.close()
            raise
        self.static = static_files()
        self.workers = max(1, cfg.workers)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="instag-render")
        self.sockets: set[web.WebSocketResponse] = set()
        self.live_owner: StreamSession | None = None  # the one page whose microphone drives the avatar

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.clips.close()

    def info(self) -> dict[str, Any]:
        return {"fps": self.renderer.fps, "size": self.renderer.size, "device": str(self.device),
                "ahead": AHEAD, "max_upload_bytes": self.cfg.max_upload_bytes, "view": self.renderer.view.describe(),
                "voice_rest": self.cfg.voice_rest,
                "live": {"rate": RATE, "max_chunk_samples": MAX_CHUNK_SAMPLES},
                "clips": [c.describe() for c in self.clips.list()]}

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 << 10)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/audio/{name}", self._audio)
        app.router.add_get("/api/info", self._info)
        app.router.add_post("/api/upload", self._upload)
        app.router.add_get("/ws", self._ws)
        app.on_shutdown.append(self._close_sockets)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        """Loopback servers answer only loopback Host names (no DNS rebinding); uploads and the stream only from
        the page's own origin. Every answer carries the security headers."""
        host = (request.host or "").rsplit(":", 1)[0]
        if is_loopback(self.cfg.host) and not is_loopback(host):
            raise web.HTTPForbidden(text="forbidden host")
        origin = request.headers.get("Origin")
        if request.method == "POST" or request.path == "/ws":
            if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
                raise web.HTTPForbidden(text="cross-origin request refused")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(SECURITY_HEADERS)
        return response

    def _file(self, name: str) -> web.Response:
        hit = self.static.get(name)
        if hit is None:
            raise web.HTTPNotFound()
        body, ctype = hit
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def _index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["name"])

    async def _audio(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        clip = self.clips.get(name[:-4]) if name.endswith(".wav") else None
        if clip is None:
            raise web.HTTPNotFound()
        return web.Response(body=clip.wav, headers={"Content-Type": "audio/wav"})

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response(self.info())

    async def _upload(self, request: web.Request) -> web.Response:
        limit = self.cfg.max_upload_bytes
        name = urllib.parse.unquote(request.headers.get("X-Filename", ""))
        too_big = web.json_response({"error": f"the upload is over the limit of {limit / 2**20:.0f} MiB"},
                                    status=413)
        if request.content_length is not None and request.content_length > limit:
            return too_big
        data = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > limit:
                return too_big
        loop = asyncio.get_running_loop()
        try:
            clip = await loop.run_in_executor(None, self.clips.add_upload, bytes(data), name)
        except UploadRefused as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        try:
            await loop.run_in_executor(None, self.renderer.driver, clip)
        except BaseException as exc:
            self.clips.discard(clip.id)  # a clip that cannot drive the avatar must not be offered to play
            if not isinstance(exc, InputError):
                raise
            return web.json_response({"error": str(exc)}, status=415)
        self.renderer.forget({c.id for c in self.clips.list()})
        return web.json_response(clip.describe())

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=64 << 10, heartbeat=30)
        await ws.prepare(request)
        self.sockets.add(ws)
        session = StreamSession(self, ws, is_loopback(request.remote or ""))
        try:
            await session.run()
        finally:
            self.sockets.discard(ws)
        return ws

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            await ws.close()


class StreamSession:
    """One page's stream: a reader task keeps the latest state and the microphone's audio; the writer renders and
    sends frames."""

    def __init__(self, app: PreviewApp, ws: web.WebSocketResponse, local: bool) -> None:
        """`local`: the page is on this machine (a loopback peer), the only place a microphone is taken from."""
        self.app = app
        self.ws = ws
        self.local = local
        self.loop = asyncio.get_running_loop()
        self.state = StreamState(received=self.loop.time())
        self.changed = asyncio.Event()
        self.render_s = 0.1  # running estimate of one frame's render + send time
        self.started = self.loop.time()
        self.key: tuple | None = None  # what the play position was planned for: (clip, epoch, rev)
        self.next_i = 0  # next play frame to render
        self.last_idle: tuple[int, int] | None = None  # (idle frame, rev) last rendered
        self.live: LiveStream | None = None  # this page's microphone, while it holds the slot
        self.last_live = -1  # newest live frame rendered

    async def run(self) -> None:
        await self.ws.send_json({"type": "hello", **self.app.info()})
        writer = asyncio.create_task(self._write())
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    try:
                        self._hear(msg.data)
                    except LiveRefused as exc:
                        await self._cut_off(str(exc))
                        break
                elif msg.type == WSMsgType.TEXT:
                    try:
                        state = parse_message(msg.data, lambda c: self.app.clips.get(c) is not None,
                                              self.loop.time(), self.app.renderer.view)
                    except ValueError as exc:
                        await self.ws.send_json({"type": "error", "message": str(exc)})
                        continue
                    self.state = await self._switch_live(state)
                self.changed.set()
        finally:
            self._release_live()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _hear(self, data: bytes) -> None:
        if self.live is None:
            raise LiveRefused("audio arrived while the microphone is off")
        self.live.push(data, self.loop.time())

    async def _cut_off(self, reason: str) -> None:
        """End this page's stream over its audio, with the reason as an error message and in the close frame."""
        message = f"microphone stream refused: {reason}"
        await self.ws.send_json({"type": "error", "message": message})
        await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=message.encode()[:123])

    async def _switch_live(self, state: StreamState) -> StreamState:
        """Take or give back the microphone slot as `state` asks; a page refused the slot stays as it was."""
        app = self.app
        if state.live and self.live is None:
            if not self.local:
                await self.ws.send_json({"type": "error", "live": False, "message":
                                         "the microphone is only taken from a page on this machine (127.0.0.1)"})
                return dataclasses.replace(state, live=False)
            if app.live_owner is not None:
                await self.ws.send_json({"type": "error", "live": False, "message":
                                         "the microphone drives the avatar in another tab of this preview; "
                                         "stop it there first"})
                return dataclasses.replace(state, live=False)
            app.live_owner, self.live, self.last_live = self, LiveStream(app.renderer.fps, app.cfg.voice_rest), -1
            await self.ws.send_json({"type": "live", "on": True, "rate": RATE})
        elif not state.live and self.live is not None:
            self._release_live()
            await self.ws.send_json({"type": "live", "on": False})
        return state

    def _release_live(self) -> None:
        if self.live is not None and self.app.live_owner is self:
            self.app.live_owner = None
        self.live = None

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout=max(seconds, 0.001))

    async def _send(self, frame: Frame, header: dict[str, Any], t0: float) -> None:
        await self.ws.send_bytes(pack_frame({**header, **frame.header, "i": frame.index,
                                             "ms": round(frame.render_ms, 2)}, frame.jpeg))
        self.render_s = 0.8 * self.render_s + 0.2 * (self.loop.time() - t0)

    async def _write(self) -> None:
        try:
            await self._stream()
        except (RuntimeError, ValueError, OSError, InputError) as exc:
            if not self.ws.closed:
                await self.ws.send_json({"type": "error", "message": f"rendering stopped: {exc}"})

    def _plan_live(self, live: LiveStream) -> tuple[dict[str, Any], Any, tuple] | float:
        """The newest live frame whose audio (and its look-ahead's) has arrived, or how long until the next one can
        have."""
        features = self.app.renderer.live
        k = features.newest(live)
        if k <= self.last_live:
            return (features.heard_end(live, self.last_live + 1) - live.buffer.total) / RATE
        # Frames become drawable `hop` at a time (they share a feature pass): draw each of the newest ones in turn,
        # skipping only those older than that.
        k = max(self.last_live + 1, k - features.hop + 1)
        self.last_live = k
        st = self.state
        header = {"mode": "live", "clip": None, "rev": st.rev, "epoch": st.epoch}
        return header, self.app.renderer.render_live, (live, k, st.orbit, st.song)

    def _plan(self) -> tuple[dict[str, Any], Any, tuple] | float:
        """The next frame to render → (header, function, arguments), or how long to wait for one."""
        fps, renderer, st = self.app.renderer.fps, self.app.renderer, self.state
        if self.live is not None:
            return self._plan_live(self.live)
        clip = self.app.clips.get(st.clip) if st.clip else None
        now = self.loop.time()
        if st.playing and clip is not None:
            clock = st.t + (now - st.received if st.running else 0.0)
            cur = int(clock * fps)
            # The first frame that can still arrive before its display interval starts (any, while the clock
            # stands still), so a frame is on screen for its whole interval even when frames must be skipped.
            earliest = math.ceil((clock + self.render_s) * fps) if st.running else cur
            if self.key != (st.clip, st.epoch, st.rev):
                self.key, self.next_i = (st.clip, st.epoch, st.rev), earliest
            self.next_i = max(self.next_i, earliest)
            if self.next_i >= clip.n_frames:
                return 0.25
            if self.next_i > cur + AHEAD:
                return (self.next_i - AHEAD - cur) / fps
            i, self.next_i = self.next_i, self.next_i + 1
            header = {"mode": "play", "clip": clip.id, "rev": st.rev, "epoch": st.epoch}
            return header, renderer.render, (renderer.driver(clip, st.song), i, st.orbit)
        self.key = None
        k = int((now - self.started) * fps)
        if self.last_idle == (k, st.rev):
            return (k + 1) / fps - (now - self.started)
        self.last_idle = (k, st.rev)
        return {"mode": "idle", "clip": None, "rev": st.rev, "epoch": st.epoch}, renderer.render_idle, (k, st.orbit)

    async def _stream(self) -> None:
        """Keep up to `workers` frames rendering; send them in order."""
        pending: collections.deque[tuple[dict[str, Any], asyncio.Future, float]] = collections.deque()
        try:
            while not self.ws.closed:
                # Cleared before planning, so a message arriving while the plan is made wakes the wait after it.
                self.changed.clear()
                job = self._plan() if len(pending) < self.app.workers else None
                if isinstance(job, tuple):
                    header, fn, args = job
                    pending.append((header, self.loop.run_in_executor(self.app.pool, fn, *args), self.loop.time()))
                elif pending:
                    header, future, t0 = pending.popleft()
                    await self._send(await future, header, t0)
                else:
                    await self._wait(job)
        finally:
            for _, future, _ in pending:
                future.cancel()


class PreviewServer:
    """The preview served from a background thread: `start()` returns the URL, `stop()` ends it.
    Also a context manager. Loading the avatar and clips happens in `start()`; their errors are raised there."""

    def __init__(self, cfg: PreviewConfig) -> None:
        self.cfg = cfg
        self.app: PreviewApp | None = None
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        self.app = PreviewApp(self.cfg)
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="instag-preview", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self.app.close()
            exc = failure[0]
            if isinstance(exc, OSError):
                raise InputError(f"cannot listen on {self.cfg.host}:{self.cfg.port} ({exc.strerror or exc})") from exc
            raise exc
        return self.url

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(self.app.application(), access_log=None, handle_signals=False,
                                     shutdown_timeout=SHUTDOWN_GRACE_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            done = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(concurrent.futures.TimeoutError):
                done.result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = self._thread = None
        if self.app is not None:
            self.app.close()
            self.app = None

    def __enter__(self) -> PreviewServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_forever(server: PreviewServer, poll_s: float = 0.5) -> None:
    """Block until interrupted (Ctrl-C), then stop the server."""
    try:
        while server._thread is not None and server._thread.is_alive():
            time.sleep(poll_s)
    finally:
        server.stop()
