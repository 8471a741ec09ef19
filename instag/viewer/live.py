"""Live microphone drive: the page's 16 kHz PCM stream kept in a bounded ring buffer, and the speech features of
its last few seconds computed in short context, so a frame can be rendered as soon as its audio, and the audio of
the look-ahead after it (`LIVE_LOOKAHEAD_FRAMES` frames by default), have arrived.

Frame k of a live stream covers samples [k · R / fps, (k + 1) · R / fps) (R = 16 kHz) of what the page sent. Its
features come from the CONTEXT_S seconds that end with its look-ahead (on a CPU, with the look-ahead of the frame
after it when the two share a feature pass: CPU_FEATURE_HOP): the avatar's own feature kind, Whisper in its
short-context mode (`encode_recent`); `audio.live_context` says which sound that is, for this module and for the fit
of the UMF's live read-out, which the frames' lips read (`FrameCondition.live_audio`). The audio nets look at frames
after k (`frame_audio_windows`), and Whisper's states attend to what follows them: a mouth shapes a sound before it
is heard. Frames the context does not reach repeat its last, as at the end of a clip. Waiting for the look-ahead
costs its length in latency and brings the live lips more than half the way to a dub's
(benchmarks/preview_live_cpu.md). A frame whose audio, and the audio of the frames its smoothing window looks back
on and its look-ahead reaches, stays below the stream's silence gate is silence: it shows the idle loop's frame,
with the lips the silence predicts in a pause and at rest once the silence has lasted REST_AFTER_S
(`instag.avatar.rest`), as in a dub. Sound over the gate in which no voice has been heard for REST_AFTER_S through
the look-ahead (`audio.voice`: music, a television) rests the lips as well (`LiveFeatures.shows`). Nothing is ever
written to disk.

The gate follows the room: GATE_MARGIN_DB over the stream's noise floor (the FLOOR_PERCENTILE of its frames' levels
over the last FLOOR_HISTORY_S), within GATE_RANGE_DBFS; GATE_DBFS until FLOOR_MIN_S has been heard. A fixed gate
takes a fan or a busy office for speech, and a quiet voice on a quiet microphone for silence
(benchmarks/live_gate_cpu.md).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import deque

import numpy as np
import torch
from torch import Tensor

from instag.audio import features as af
from instag.audio import live_context as lc
from instag.audio.live_context import CONTEXT_S, CPU_FEATURE_HOP, RATE
from instag.audio.voice import CHUNK, VoiceStream
from instag.avatar.bundle import Avatar
from instag.avatar.rest import REST_AFTER_S
from instag.errors import InputError
from instag.motion.audio import frame_audio_windows
from instag.viewer.config import LIVE_LOOKAHEAD_FRAMES

BUFFER_S = 4.0  # ring buffer length: the context plus room for frames still being rendered
MAX_CHUNK_SAMPLES = RATE // 4  # one message carries at most 0.25 s (the page sends 10 ms)
# How far a client may run ahead of real time, counted from its first chunk: room for network and scheduling
# jitter, none for a stream faster than a microphone.
BURST_S = 1.0
# Silence: RMS below the gate (dBFS) over a frame and the frames its smoothing looks back on. A quiet room through a
# laptop microphone reads about -60 dBFS, speech -35 to -15: the gate before the room has been heard.
GATE_DBFS = -50.0
# Then the room's noise floor plus a margin. The floor is a low percentile of the frames' levels over a stretch long
# enough to hold pauses between phrases; steady noise's own 40 ms levels stay within a few dB of it, so 6 dB clears
# them and still hears speech only 6 dB over the noise. A low percentile, since someone who talks from the start
# and hardly pauses leaves only the dips between syllables to read the floor from; not the minimum, which one
# dropped-out frame would set.
GATE_MARGIN_DB = 6.0
FLOOR_PERCENTILE = 2.0
FLOOR_HISTORY_S = 10.0
FLOOR_MIN_S = 1.0
# Never below a level that breath and the microphone's own hiss reach, never above the quietest speech.
GATE_RANGE_DBFS = (-65.0, -35.0)


class LiveRefused(ValueError):
    """A live audio message that ends the session (malformed, oversized, faster than real time)."""


def parse_chunk(data: bytes) -> np.ndarray:
    """A binary live message → samples [N] float32 in [-1, 1]; LiveRefused with what is wrong."""
    if not data:
        raise LiveRefused("an empty audio message")
    if len(data) % 2:
        raise LiveRefused(f"an audio message of {len(data)} bytes is not 16-bit PCM (odd length)")
    if len(data) // 2 > MAX_CHUNK_SAMPLES:
        raise LiveRefused(f"an audio message of {len(data) // 2} samples is over the limit of {MAX_CHUNK_SAMPLES} "
                          f"({MAX_CHUNK_SAMPLES / RATE:g} s)")
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def to_chunk(samples: np.ndarray) -> bytes:
    """Samples [N] in [-1, 1] → a binary live message as the page sends it (16-bit PCM, clipped)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class RingBuffer:
    """The newest `capacity` samples of a stream and how many have arrived in all; thread-safe."""

    def __init__(self, capacity: int) -> None:
        self._data = np.zeros(capacity, np.float32)
        self.total = 0
        self._lock = threading.Lock()

    def push(self, samples: np.ndarray) -> None:
        """Append samples [N] (N ≤ capacity)."""
        cap = len(self._data)
        with self._lock:
            pos = self.total % cap
            first = min(len(samples), cap - pos)
            self._data[pos:pos + first] = samples[:first]
            self._data[:len(samples) - first] = samples[first:]
            self.total += len(samples)

    def read(self, end: int, n: int) -> np.ndarray:
        """Samples [n] of the stream's [end − n, end); zeros for what is before the stream or already dropped."""
        cap = len(self._data)
        out = np.zeros(n, np.float32)
        with self._lock:
            lo = max(end - n, self.total - cap, 0)
            hi = min(end, self.total)
            if hi > lo:
                out[lo - (end - n):hi - (end - n)] = self._data[np.arange(lo, hi) % cap]
        return out


class LiveStream:
    """One page's microphone: its ring buffer and the rate check (`push`), which frames can be made, and its
    silence gate (`gate`); with `hear_voice`, whether it holds a voice (`voiceless`), else it never counts as
    voiceless (a song, whose singing the detector may miss)."""

    def __init__(self, fps: float, hear_voice: bool = True) -> None:
        self.fps = fps
        self.buffer = RingBuffer(int(BUFFER_S * RATE))
        self.first: float | None = None  # when the first chunk arrived
        # dBFS of the newest whole frames, up to FLOOR_HISTORY_S of them; the last is frame `_levels_end` − 1
        self._levels: deque[float] = deque(maxlen=max(1, round(FLOOR_HISTORY_S * fps)))
        self._levels_end = 0
        self._lock = threading.Lock()
        self.voice = VoiceStream(keep=int(BUFFER_S * RATE) // CHUNK) if hear_voice else None

    def push(self, data: bytes, now: float) -> None:
        """Append one binary message arrived at `now` (seconds); LiveRefused when it is malformed or the stream
        runs ahead of real time."""
        samples = parse_chunk(data)
        if self.first is None:
            self.first = now
        allowed = (now - self.first + BURST_S) * RATE
        if self.buffer.total + len(samples) > allowed:
            raise LiveRefused(f"audio arrives faster than real time ({(self.buffer.total + len(samples)) / RATE:.1f} s "
                              f"of audio in {now - self.first:.1f} s)")
        self.buffer.push(samples)
        if self.voice is not None:
            self.voice.push(samples)
        done = self.newest_frame() + 1
        levels = [rms_dbfs(self.buffer.read(self.frame_end(f), self.frame_end(f) - self.frame_end(f - 1)))
                  for f in range(self._levels_end, done)]
        with self._lock:
            self._levels.extend(levels)
            self._levels_end = max(self._levels_end, done)

    def frame_end(self, k: int) -> int:
        """The stream sample where live frame k ends."""
        return lc.frame_end(k, self.fps)

    def newest_frame(self) -> int:
        """The newest frame whose audio has all arrived (−1: none yet)."""
        return int(math.floor(self.buffer.total * self.fps / RATE + 1e-9)) - 1

    def _heard(self, k: int) -> list[float]:
        """dBFS of the kept frames up to frame k, oldest first; the last is frame k's."""
        with self._lock:
            first = self._levels_end - len(self._levels)
            return list(self._levels)[: max(0, k + 1 - first)]

    def gate(self, k: int) -> float:
        """The silence gate (dBFS) at frame k, from the levels of frames up to k (see the module doc)."""
        heard = self._heard(k)
        if len(heard) < FLOOR_MIN_S * self.fps:
            return GATE_DBFS
        floor = float(np.percentile(heard, FLOOR_PERCENTILE))
        return float(np.clip(floor + GATE_MARGIN_DB, *GATE_RANGE_DBFS))

    def loud(self, k: int, look_back: int, look_ahead: int = 0) -> bool:
        """Whether frames k − look_back … k + look_ahead together are louder than the gate at the last of them."""
        last = k + look_ahead
        start = int(round((k - look_back) * RATE / self.fps))
        return rms_dbfs(self.buffer.read(self.frame_end(last), self.frame_end(last) - start)) > self.gate(last)

    def voiceless(self, k: int, n: int) -> bool:
        """Whether the n frames that end with frame k hold no voice (`audio.voice.VoiceStream`)."""
        return self.voice is not None and self.voice.voiceless(self.frame_end(k - n), self.frame_end(k))

    def quiet(self, k: int, n: int) -> bool:
        """Whether each of the n frames that end with frame k is under the gate at k (before the stream counts as
        silence), from the levels `push` keeps."""
        gate = self.gate(k)
        return all(level <= gate for level in self._heard(k)[-n:])

    def loud_throughout(self, k: int, n: int) -> bool:
        """Whether each of the n frames that end with frame k is over the gate at k (none before the stream)."""
        gate, heard = self.gate(k), self._heard(k)[-n:]
        return len(heard) == n and all(level > gate for level in heard)


def rms_dbfs(samples: np.ndarray, axis: int | None = None):
    """RMS level in dBFS of `samples` (in [-1, 1]): a float, or an array of the levels along `axis`."""
    db = 10 * np.log10(np.mean(np.square(samples, dtype=np.float64), axis=axis) + 1e-12)
    return float(db) if axis is None else db


class LiveFeatures:
    """Audio windows for live frames, of the avatar's feature kind, from the `context_s` seconds (CONTEXT_S by
    default) that end with a frame's look-ahead of `lookahead` frames."""

    def __init__(self, avatar: Avatar, device: torch.device, audio_model: str | None = None,
                 lookahead: int = LIVE_LOOKAHEAD_FRAMES, context_s: float = CONTEXT_S) -> None:
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 frames, got {lookahead}")
        if not 0 < context_s <= BUFFER_S - 1.0:
            raise ValueError(f"context_s must be in (0, {BUFFER_S - 1.0:g}] s, got {context_s}")
        self.avatar = avatar
        self.lookahead = lookahead
        self.device = device
        self.kind = avatar.meta["audio_feature"]
        self.shape = tuple(int(v) for v in avatar.meta["audio_feature_shape"])  # (K, D)
        self.fps = float(avatar.meta["fps"])
        self.front = af.load_front_end(self.kind, audio_model)
        self.hop = CPU_FEATURE_HOP if device.type == "cpu" else 1
        self.n_frames = lc.context_frames(self.fps, avatar.cfg.audio.smooth_window, lookahead, self.hop, context_s)
        self._rest_frames = max(int(math.ceil(REST_AFTER_S * self.fps)), 1)
        # Per stream, the feature passes by the last frame of their context: done, or being computed by a worker
        # (the other waits for it rather than repeating it).
        self._passes: weakref.WeakKeyDictionary[LiveStream, dict[int, _Pass]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def _features(self, audio: np.ndarray, start_s: float) -> np.ndarray:
        """Features [n_frames, K, D] of the context `audio` [N]; context frame 0 starts `start_s` after the audio."""
        return lc.context_features(self.kind, self.front, audio, self.fps, self.n_frames, start_s, self.shape[1])

    def context_end(self, k: int) -> int:
        """The last frame of live frame k's context (`audio.live_context.context_end`)."""
        return lc.context_end(k, self.lookahead, self.hop)

    def newest(self, stream: LiveStream) -> int:
        """The newest live frame that can be drawn: the audio through its context's end has arrived (−1: none)."""
        return max(stream.newest_frame() // self.hop * self.hop - self.lookahead, -1)

    def heard_end(self, stream: LiveStream, k: int) -> int:
        """The stream sample up to which live frame k's features hear (its context's end)."""
        return stream.frame_end(self.context_end(k))

    def voiced(self, stream: LiveStream, k: int) -> bool:
        """Whether live frame k, a frame its smoothing looks back on or one its look-ahead reaches, heard more than
        silence (`LiveStream.gate`)."""
        return stream.loud(k, self.avatar.cfg.audio.smooth_window // 2, self.lookahead)

    def resting(self, stream: LiveStream, k: int) -> bool:
        """Whether live frame k ends a silence of at least REST_AFTER_S (every frame of it under the gate): the lips
        rest there, as a dub's do (`instag.avatar.rest`)."""
        return stream.quiet(k, self._rest_frames)

    def voiceless(self, stream: LiveStream, k: int) -> bool:
        """Whether live frame k ends REST_AFTER_S of sound over the gate in which no voice was heard, through its
        look-ahead (music, a television): the lips rest there too, and wake as the look-ahead meets a voice. Sound
        rising out of silence is left to the gate, which wakes the lips as soon as the look-ahead hears it rise
        (the detector needs a few chunks of a voice to be sure of it)."""
        n = self._rest_frames
        return stream.loud_throughout(k, n) and stream.voiceless(k + self.lookahead, n + self.lookahead)

    def shows(self, stream: LiveStream, k: int, song: bool = False) -> str:
        """What live frame k shows: "voice" (lips from its audio), "pause" (a silence shorter than a rest: the lips
        the silence predicts) or "rest" (the idle loop, lips at rest: `resting`, or loud with no voice: `voiceless`,
        unless the sound is a `song`)."""
        voiced = self.voiced(stream, k)
        if voiced and (song or not self.voiceless(stream, k)):
            return "voice"
        return "pause" if not voiced and not self.resting(stream, k) else "rest"

    def windows(self, stream: LiveStream, k: int) -> Tensor:
        """Audio windows [S, W, D] of live frame k, from the audio heard up to its context's end, which must have
        arrived (`newest`): a context is computed once."""
        last = self.context_end(k)
        if stream.buffer.total < self.heard_end(stream, k):
            raise ValueError(f"live frame {k}: the audio through frame {last} has not arrived")
        return frame_audio_windows(self._context(stream, last), self.n_frames - 1 - (last - k), self.avatar.cfg.audio)

    def _context(self, stream: LiveStream, last: int) -> Tensor:
        """Features [n_frames, K, D] of the context that ends with frame `last`, computed once per stream."""
        with self._lock:
            passes = self._passes.setdefault(stream, {})
            done = passes.get(last)
            mine = done is None
            if mine:
                done = passes[last] = _Pass()
                for old in [e for e in passes if e < last - 4 * self.hop]:
                    del passes[old]
        if not mine:
            return done.result()
        try:
            done.features = self._compute(stream, last)
        finally:
            if done.features is None:  # failed: forget it, so that the next frame tries again
                with self._lock:
                    passes.pop(last, None)
            done.ready.set()
        return done.features

    def _compute(self, stream: LiveStream, last: int) -> Tensor:
        end, n, start_s = lc.context_span(self.kind, last, self.n_frames, self.fps)
        feats = self._features(stream.buffer.read(end, n), start_s)
        if feats.shape[1:] != self.shape:
            raise InputError(f"{self.avatar.path}: live '{self.kind}' features come out {list(feats.shape[1:])} "
                             f"per frame, the avatar was trained on {list(self.shape)}")
        return torch.from_numpy(feats).to(self.device)


class _Pass:
    """One feature pass of a live stream: its features once `ready` is set (None if computing them failed)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.features: Tensor | None = None

    def result(self) -> Tensor:
        self.ready.wait()
        if self.features is None:
            raise RuntimeError("the live features of this context could not be computed (see the first error)")
        return self.features
