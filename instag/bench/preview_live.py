"""`instag bench preview --live`: voice-to-lips latency and frame rate of the preview's microphone mode, in a real
headless Chromium whose microphone is a known speech file (Chromium's fake capture device).

The page keeps what it captured (16 kHz PCM with the time each 10 ms chunk reached it) and every live frame it
drew (the JPEG and when it was drawn). Afterwards:
- the microphone file: the speech cut into pieces, each after a pause (`with_pauses`), so there are onsets to time;
- sound onsets: 10 ms steps of the captured sound rising above (loudest − QUIET_DB) after at least QUIET_S below it
  and reaching speech level (loudest − SPEECH_DB) within 0.1 s; each onset's time is when that sample reached the
  page;
- the mouth opening of every drawn frame is read by the face tracker (inner-lip gap over the eye-corner distance,
  as `instag eval`) and put on a scale where 0 is the idle loop's (silence features: the closed mouth) and 1 the
  90th percentile of the frames drawn while the microphone heard speech;
- latency of an onset: from it reaching the page to the first drawn frame that heard it (its audio reaches past the onset) and shows
  the mouth opened beyond OPEN_LEVELS of that scale, within MAX_LATENCY_S;
- first_frame_ms: from an onset to the first drawn frame that heard it, however open (the pipeline's share of
  the latency; the rest is how fast the avatar's mouth opens);
- versus_file_mode: the live openings against those of the same sound dubbed as a file (`versus_file_mode`): their
  correlation, how wide the live mouth opens in speech against the dub's, and how long after each onset the dub's
  mouth opens (a speech that starts on a closed consonant keeps even a dub's lips shut a while): the latency the
  live path adds is the live latency less it;
- fps: live frames drawn per second; silence: the scaled opening of the frames drawn for silence.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile

from instag.bench.browser import chromium_page
from instag.bench.preview import percentile
from instag.bench.record import header
from instag.bench.render import speech_like
from instag.media.audio import decode_audio
from instag.stats import correlation
from instag.viewer.camera import Orbit
from instag.viewer.config import LIVE_LOOKAHEAD_FRAMES, PreviewConfig
from instag.viewer.live import RATE, rms_dbfs
from instag.viewer.server import PreviewServer

HOP = RATE // 100  # 10 ms steps of the onset detector
QUIET_DB = 40.0
SPEECH_DB = 25.0
QUIET_S = 0.2
PIECE_S = 1.5  # the microphone file: pieces of speech this long …
PAUSE_S = 0.5  # … each after a pause this long
OPEN_LEVELS = (0.25, 0.5)
MAX_LATENCY_S = 1.0
IDLE_SAMPLES = 40  # idle-loop frames tracked for the closed level

# Reads what the page recorded, base64 for the binary parts.
RECORDED_JS = """() => {
  const S = window.instagPreview;
  const b64 = (u8) => { let s = ""; for (let i = 0; i < u8.length; i += 0x8000)
    s += String.fromCharCode(...u8.subarray(i, i + 0x8000)); return btoa(s); };
  const pcm = new Int16Array(S.recChunks.reduce((n, c) => n + c[2].length, 0));
  let o = 0;
  for (const c of S.recChunks) { pcm.set(c[2], o); o += c[2].length; }
  return { chunks: S.recChunks.map((c) => [c[0], c[1]]), pcm: b64(new Uint8Array(pcm.buffer)),
           frames: S.recFrames.map((f) => ({ i: f.i, end: f.end, voiced: f.voiced, drawn: f.drawn, ms: f.ms,
                                             feature_ms: f.feature_ms, jpeg: b64(f.jpeg) })) };
}"""


def with_pauses(speech: np.ndarray, seconds: float) -> np.ndarray:
    """`seconds` [N] of 16 kHz `speech` [M] cut into pieces of about PIECE_S, each after PAUSE_S of silence, so
    the file has an onset every PIECE_S + PAUSE_S. Each cut is at the quietest 10 ms step within 0.3 s of its
    place, so it falls in a gap between words where there is one."""
    db = level_db(speech)
    pieces, start = [], 0
    total = 0
    while total < seconds * RATE and start < len(speech) - RATE // 4:
        near = int((start + PIECE_S * RATE) / HOP)
        lo, hi = max(near - 30, start // HOP + 1), min(near + 30, len(db))
        cut = (lo + int(np.argmin(db[lo:hi]))) * HOP if hi > lo else len(speech)
        pieces += [np.zeros(int(PAUSE_S * RATE), np.float32), speech[start:cut]]
        total += int(PAUSE_S * RATE) + cut - start
        start = cut
    return np.concatenate(pieces)[: int(seconds * RATE)]


def level_db(pcm: np.ndarray) -> np.ndarray:
    """RMS in dBFS [N // HOP] of 10 ms steps of `pcm` [N]."""
    return rms_dbfs(pcm[: len(pcm) // HOP * HOP].reshape(-1, HOP), axis=1)


def sound_onsets(pcm: np.ndarray) -> list[int]:
    """Samples where sound starts after a pause, in `pcm` [N] (see the module's description)."""
    db = level_db(pcm)
    if db.size == 0:
        return []
    top = np.percentile(db, 99)
    quiet_steps = int(QUIET_S * RATE / HOP)
    out = []
    for h in range(quiet_steps, len(db)):
        if (db[h] >= top - QUIET_DB and np.all(db[h - quiet_steps:h] < top - QUIET_DB)
                and db[h:h + 10].max() >= top - SPEECH_DB):
            out.append(h * HOP)
    return out


def capture_ms(chunks: np.ndarray, sample: float) -> float:
    """When stream sample `sample` reached the page (ms), from chunks [C, 2] (samples after the chunk, time)."""
    k = min(int(np.searchsorted(chunks[:, 0], sample, side="right")), len(chunks) - 1)
    return float(chunks[k, 1] - (chunks[k, 0] - sample) * 1e3 / RATE)


def _openings(jpegs: list[bytes]) -> np.ndarray:
    """Tracked mouth opening [F] of each JPEG frame (NaN where no face is found)."""
    from instag.data import facemesh as fm
    from instag.eval.runner import mouth_opening

    tracker = fm.FaceTracker()
    out = np.full(len(jpegs), np.nan)
    try:
        for n, data in enumerate(jpegs):
            rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            lm = tracker.track(rgb, (rgb.shape[1] / 2, rgb.shape[0] / 2))
            if lm is not None:
                out[n] = mouth_opening(lm[:, :2])
    finally:
        tracker.close()
    return out


def _cpu_s_of_processes_with(marker: str) -> float | None:
    """CPU seconds (user + system) of the running processes whose command line holds `marker` (Linux /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    total = 0.0
    for d in proc.iterdir():
        try:
            if d.name.isdigit() and marker in (d / "cmdline").read_text():
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return total


def _record(url: str, microphone: Path, seconds: float, profile: Path) -> dict[str, Any]:
    """Open the page with `microphone` as its microphone, drive the avatar live for `seconds`, return what the page
    recorded."""
    with chromium_page(profile, microphone) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("window.instagPreview && window.instagPreview.connected", timeout=60_000)
        page.evaluate("window.instagPreview.record = true")
        page.click("#mic")
        page.wait_for_function("window.instagPreview.live", timeout=30_000)
        server0, browser0 = time.process_time(), _cpu_s_of_processes_with(str(profile))
        time.sleep(seconds)
        page.click("#mic")
        server1, browser1 = time.process_time(), _cpu_s_of_processes_with(str(profile))
        doc = page.evaluate(RECORDED_JS)
        if errors:
            raise RuntimeError(f"the preview page failed: {errors[0]}")
        doc["last_error"] = page.evaluate("window.instagPreview.lastError")
        doc["input_latency_ms"] = page.evaluate("window.instagPreview.inputLatencyMs")
        # CPU time while the microphone ran: this process (the server and its renderers) and Chromium's
        doc["cpu_s"] = {"server": server1 - server0, "browser": None if browser0 is None else browser1 - browser0}
    return doc


def decode_recording(recorded: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the page recorded → chunks [C, 2] (samples after each, when it reached the page, ms), the PCM heard
    [N] and the tracked opening [F] of each live frame drawn."""
    chunks = np.array(recorded["chunks"], np.float64).reshape(-1, 2)
    pcm = np.frombuffer(base64.b64decode(recorded["pcm"]), "<i2").astype(np.float32) / 32768.0
    frames = recorded["frames"]
    if len(frames) < 2 or len(chunks) == 0:
        raise RuntimeError(f"the page drew {len(frames)} live frame(s) (last message: {recorded['last_error']})")
    return chunks, pcm, _openings([base64.b64decode(f["jpeg"]) for f in frames])


def measure(chunks: np.ndarray, pcm: np.ndarray, frames: list[dict], opening: np.ndarray,
            idle: np.ndarray) -> dict[str, Any]:
    """Latency, fps and silence figures from what the page recorded (`decode_recording`, and the frames' headers
    and times); `idle` [F]: the idle loop's openings."""
    closed = float(np.nanmedian(idle))
    voiced = np.array([f["voiced"] for f in frames])
    drawn = np.array([f["drawn"] for f in frames])
    end = np.array([f["end"] for f in frames])
    wide = np.nanpercentile(opening[voiced], 90) if np.any(voiced & np.isfinite(opening)) else np.nan
    scale = (opening - closed) / (wide - closed) if wide > closed else np.full_like(opening, np.nan)

    onsets = sound_onsets(pcm)
    latency: dict[str, list[float]] = {str(q): [] for q in OPEN_LEVELS}
    missed = {str(q): 0 for q in OPEN_LEVELS}
    first_frame = []  # from an onset to the first frame drawn that heard it, open or not
    per_onset = []
    for s in onsets:
        t_on = capture_ms(chunks, s)
        heard = np.nonzero((end > s) & (drawn >= t_on))[0]
        if heard.size:
            first_frame.append(float(drawn[heard[0]] - t_on))
        row = {"at_s": s / RATE, "first_frame_ms": first_frame[-1] if heard.size else None}
        for q in OPEN_LEVELS:
            hit = np.nonzero((end > s) & (drawn >= t_on) & (drawn <= t_on + MAX_LATENCY_S * 1e3) & (scale >= q))[0]
            row[str(q)] = float(drawn[hit[0]] - t_on) if hit.size else None
            if hit.size:
                latency[str(q)].append(row[str(q)])
            else:
                missed[str(q)] += 1
        per_onset.append(row)
    span_s = (drawn[-1] - drawn[0]) / 1e3
    silent = scale[~voiced & np.isfinite(scale)]
    return {
        "captured_s": len(pcm) / RATE, "frames_drawn": len(frames), "fps_drawn": (len(frames) - 1) / span_s,
        "frames_skipped": int(frames[-1]["i"] - frames[0]["i"] + 1 - len(frames)),
        # frames with sound: a silent frame is the idle loop's, kept from its first rendering
        "render_ms_median": percentile([f["ms"] for f in frames if f["voiced"]], 50),
        "feature_ms_median": percentile([f["feature_ms"] for f in frames if f["voiced"]], 50),
        "onsets": len(onsets),
        "latency_ms": {q: {"median": percentile(v, 50), "p95": percentile(v, 95), "n": len(v),
                           "missed": missed[q]} for q, v in latency.items()},
        "first_frame_ms": {"median": percentile(first_frame, 50), "p95": percentile(first_frame, 95)},
        "opening": {"closed_idle": closed, "open_p90_voiced": float(wide), "tracked_share":
                    float(np.isfinite(opening).mean())},
        "idle_loop": {"scaled_opening_p95": percentile((idle - closed) / (wide - closed), 95)},
        "silence": {"frames": int((~voiced).sum()), "scaled_opening_median": percentile(silent, 50),
                    "scaled_opening_p95": percentile(silent, 95),
                    "share_shut": float(np.mean(silent < OPEN_LEVELS[0])) if silent.size else None},
        "speech": {"frames": int(voiced.sum()),
                   "scaled_opening_median": percentile(scale[voiced & np.isfinite(scale)], 50)},
        "per_onset": per_onset,
    }


def file_offset(heard: np.ndarray, sound: np.ndarray) -> int:
    """Where in `sound` [M] (which the fake microphone loops) the captured stream `heard` [N] starts, in samples, to
    10 ms: the best match of their loudness over the first 10 s heard."""
    h = level_db(heard[: 10 * RATE])
    f = level_db(np.concatenate([sound, sound]))
    h, f = h - h.mean(), f - f.mean()
    scores = np.correlate(f, h, mode="valid")[: len(sound) // HOP]
    return int(np.argmax(scores)) * HOP


def versus_file_mode(avatar, sound: np.ndarray, heard: np.ndarray, recorded_frames: list[dict],
                     opening: np.ndarray, live: dict[str, Any]) -> dict[str, Any]:
    """The live lips against the same sound dubbed as `instag render` dubs a file (the whole of it in view, its
    future included), both read by the face tracker: the correlation of the openings frame by frame, with the live
    frames shifted by 0 … 5 frames (the best shift: how far the live mouth runs behind); at that shift how wide
    the live mouth opens in speech against the file's (the tracker's units, so runs of one avatar compare); and
    how long after each onset of `live` (`measure`'s) the file's mouth opens (`onsets_in_file`)."""
    from instag.bench.dub import rendered_openings

    fps = float(avatar.meta["fps"])
    file_open, n = rendered_openings(avatar, sound)
    offset = file_offset(heard, sound)
    # the file's frame playing in the middle of each live frame
    at = np.array([(f["end"] - RATE / (2 * fps) + offset) % len(sound) for f in recorded_frames]) / RATE * fps
    idx = np.minimum(at.astype(int), n - 1)
    r = {}
    for shift in range(6):
        a, b = opening, file_open[np.maximum(idx - shift, 0)]
        ok = np.isfinite(a) & np.isfinite(b)
        r[shift] = correlation(a[ok], b[ok]) if ok.sum() > 2 else None
    best = max((k for k in r if r[k] is not None), key=lambda k: r[k], default=None)
    doc = {"r_by_shift_frames": r, "best_shift_frames": best, "offset_in_file_s": offset / RATE,
           "onsets": onsets_in_file(file_open, fps, offset, len(sound), live)}
    if best is not None:
        doc["speech_opening"] = speech_amplitude(opening, file_open[np.maximum(idx - best, 0)],
                                                 np.array([f["voiced"] for f in recorded_frames]))
    return doc


def onsets_in_file(file_open: np.ndarray, fps: float, offset: int, n_sound: int, live: dict[str, Any]
                   ) -> dict[str, Any]:
    """How long after each onset of `live` (`measure`'s; the captured stream starts `offset` samples into the
    sound of `n_sound` samples) the file's mouth (openings [T] of its frames at `fps`) opens beyond each of
    OPEN_LEVELS on the live scale: the time the speech itself takes to open the lips, which a dub that sees the
    future takes too; and the live latency less it, the delay the live path adds."""
    closed, wide = live["opening"]["closed_idle"], live["opening"]["open_p90_voiced"]
    if not wide > closed:
        return {}
    scale = (file_open - closed) / (wide - closed)
    out = {}
    for level in OPEN_LEVELS:
        q = str(level)
        own, added = [], []
        for row in live["per_onset"]:
            at = ((row["at_s"] * RATE + offset) % n_sound) / RATE  # seconds into the file
            first = int(at * fps)  # the file frame playing at the onset
            hit = np.nonzero(scale[first:int((at + MAX_LATENCY_S) * fps) + 1] >= level)[0]
            if not hit.size:
                continue
            own.append(max(0.0, ((first + hit[0]) / fps - at) * 1e3))  # an open frame the onset falls in: 0
            if row[q] is not None:
                added.append(row[q] - own[-1])
        out[q] = {"file_ms": {"median": percentile(own, 50), "p95": percentile(own, 95), "n": len(own)},
                  "live_less_file_ms": {"median": percentile(added, 50), "p95": percentile(added, 95),
                                        "n": len(added)}}
    return out


def speech_amplitude(live: np.ndarray, file: np.ndarray, voiced: np.ndarray) -> dict[str, Any]:
    """How wide the live mouth opens against the file mode's in the frames the microphone heard speech: both
    openings [F] (the tracker's, NaN where no face) side by side; `voiced` [F] bool."""
    ok = voiced & np.isfinite(live) & np.isfinite(file)
    if ok.sum() < 3:
        return {"frames": int(ok.sum())}
    spread = float(np.std(file[ok]))
    return {"frames": int(ok.sum()), "live_median": float(np.median(live[ok])), "file_median": float(np.median(file[ok])),
            "live_p90": float(np.percentile(live[ok], 90)), "file_p90": float(np.percentile(file[ok], 90)),
            # 1: the live mouth swings as widely as the dub's
            "spread_ratio": float(np.std(live[ok]) / spread) if spread > 0 else None}


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def run(avatar: Path, audio: Path | None = None, seconds: float = 20.0, size: int | None = None,
        device: str = "auto", threads: int = 1, workers: int = 2,
        lookahead: int = LIVE_LOOKAHEAD_FRAMES) -> dict[str, Any]:
    """Serve `avatar`, let Chromium hear `audio` (default: a speech-like signal) with pauses put in (`with_pauses`)
    for `seconds` through the page's microphone mode, and measure."""
    with tempfile.TemporaryDirectory(prefix="instag-bench-live-") as tmp:
        speech = decode_audio(audio).mono16k if audio else speech_like(seconds, RATE)
        sound = with_pauses(speech, seconds)
        wav = Path(tmp) / "microphone.wav"
        soundfile.write(wav, sound, RATE, subtype="PCM_16")
        cfg = PreviewConfig(avatar=Path(avatar), port=0, size=size, device=device, threads=threads, workers=workers,
                            live_lookahead=lookahead)
        with PreviewServer(cfg) as server:
            renderer = server.app.renderer
            idle = [renderer.render_idle(k, Orbit()).jpeg
                    for k in np.linspace(0, renderer.idle.n_frames - 1, IDLE_SAMPLES).astype(int)]
            idle = _openings(idle)
            doc = header("preview-live")
            doc |= {"avatar": str(avatar), "audio": str(audio) if audio else "synthetic speech-like signal",
                    "microphone": f"the audio's first {len(sound) / RATE:.1f} s in pieces of about {PIECE_S:g} s, "
                                  f"each after {PAUSE_S:g} s of silence",
                    "size": f"{renderer.size}x{renderer.size}", "device": str(server.app.device),
                    "fps_target": renderer.fps, "workers": server.app.workers, "torch_threads": threads,
                    "lookahead_frames": renderer.live.lookahead,
                    "n_gaussians": renderer.avatar.face.num_gaussians + renderer.avatar.mouth.num_gaussians,
                    "uptime_before": _uptime(), "load_average_1m_before": os.getloadavg()[0]}
            recorded = _record(server.url, wav, len(sound) / RATE, Path(tmp) / "profile")
        doc["uptime_after"] = _uptime()
        chunks, heard, opening = decode_recording(recorded)
        doc["live"] = measure(chunks, heard, recorded["frames"], opening, idle)
        # Chromium's own figure for the capture before the page hears a sound (None: it gives none); the
        # microphone-to-screen latency is latency_ms plus this.
        doc["live"]["capture_latency_ms_reported"] = recorded["input_latency_ms"]
        if doc["live"]["opening"]["tracked_share"] > 0:
            doc["versus_file_mode"] = versus_file_mode(renderer.avatar, sound, heard, recorded["frames"], opening,
                                                       doc["live"])
        # On a machine shared with other work the frame rate depends on the CPU left: what a frame cost
        cpu = recorded["cpu_s"]
        doc["cpu"] = cpu | {"server_ms_per_frame_drawn": cpu["server"] * 1e3 / doc["live"]["frames_drawn"]}
    return doc
