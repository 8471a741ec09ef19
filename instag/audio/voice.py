"""Whether anyone speaks: Silero VAD (MIT, weights shipped in its pinned wheel) over a track's 16 kHz sound, per
video frame. Loudness alone cannot tell a voice from music or a room's noise, over which the lip predictor still
moves the mouth (a quarter to half as widely as over speech: `benchmarks/voice_activity_cpu.md`)."""

from __future__ import annotations

import threading
import warnings
from collections import deque
from functools import lru_cache

import librosa
import numpy as np
import torch

RATE = 16000
CHUNK = 512  # the samples of one VAD decision at 16 kHz (32 ms)
# A chunk may hold a voice above this probability, a tenth of Silero's default 0.5: resting the lips under a voice is
# worse than moving them under music. At 0.5 a man talking over a livestream's sound (`KwaiVGI_LivePortrait_d12`)
# goes unheard in 54 % of 1.6 s windows, at 0.05 in none; in 9 of 10 pieces of music 98–100 % of those windows stay
# below it (`benchmarks/voice_activity_cpu.md`).
VOICE_THRESHOLD = 0.05
_LOCK = threading.Lock()  # the shared detector keeps a state between chunks: one track at a time
_LOAD_LOCK = threading.Lock()  # loading sets the process's torch threads before putting them back


def _load() -> torch.jit.ScriptModule:
    """A fresh detector (its state is its own)."""
    with _LOAD_LOCK, warnings.catch_warnings():  # its loader's own deprecations (importlib.resources, torch.jit.load)
        warnings.simplefilter("ignore", DeprecationWarning)
        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad  # its import sets torch to one thread for the whole process

        model = load_silero_vad()
        torch.set_num_threads(threads)
    return model


@lru_cache(maxsize=1)
def _model() -> torch.jit.ScriptModule:
    """The detector whole tracks share, one at a time (_LOCK)."""
    return _load()


def voice_probability(audio: np.ndarray) -> np.ndarray:
    """Speech probability [ceil(N / CHUNK)] of each CHUNK of mono 16 kHz `audio` [N] (the last padded)."""
    if len(audio) == 0:
        return np.zeros(0, np.float32)
    with _LOCK, torch.no_grad():
        model = _model()
        model.reset_states()
        out = model.audio_forward(torch.from_numpy(np.ascontiguousarray(audio, np.float32)), RATE)
    return out[0].numpy().astype(np.float32)


def voiced_frames(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """[n_frames] bool: video frames at `fps` during which mono `audio` [N] holds speech: some chunk over the
    frame's span hears it above VOICE_THRESHOLD (frames past the audio's end: none). Heard at RATE, the detector's,
    with the track's peak at full scale: the detector's answers move with the level a voice was recorded at (a man
    talking over a livestream's sound, recorded at full scale, rests in no 1.6 s window as recorded and in some at
    20 or 40 dB less), which says nothing of whether anyone speaks (`benchmarks/voice_activity_cpu.md`)."""
    audio = np.asarray(audio, np.float32)
    if sample_rate != RATE:
        audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=RATE)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return frames_heard(voice_probability(audio / peak if peak > 0 else audio) > VOICE_THRESHOLD, fps, n_frames)


def frames_heard(voiced: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """[n_frames] bool: video frames at `fps` over which some chunk of `voiced` [C] bool (a track's, from its start)
    is true; frames past the chunks' end: none."""
    # chunks [lo, hi) over each frame's span, counted with a cumulative sum
    frames = np.arange(n_frames + 1)
    lo = (frames[:-1] / fps * RATE).astype(int) // CHUNK
    hi = np.ceil(frames[1:] / fps * RATE / CHUNK).astype(int)
    heard = np.concatenate([[0], np.cumsum(voiced)])
    return heard[np.minimum(hi, len(voiced))] > heard[np.minimum(lo, len(voiced))]


class VoiceStream:
    """Whether a live stream holds a voice, chunk by chunk as its 16 kHz samples arrive (`push`); a detector of its
    own, whose state runs with the stream. Keeps the newest `keep` chunks' answers."""

    def __init__(self, keep: int) -> None:
        self._model = _load()
        self._pending = np.zeros(0, np.float32)
        self._voiced: deque[bool] = deque(maxlen=keep)
        self.chunks = 0  # chunks decided so far; the last is chunk `chunks` − 1
        self._lock = threading.Lock()

    def push(self, samples: np.ndarray) -> None:
        """Decide every whole CHUNK that `samples` [N] (the stream's next) completes."""
        with self._lock:
            self._pending = np.concatenate([self._pending, np.asarray(samples, np.float32)])
            n = len(self._pending) // CHUNK
            with torch.no_grad():
                for i in range(n):
                    p = float(self._model(torch.from_numpy(self._pending[i * CHUNK:(i + 1) * CHUNK]), RATE))
                    self._voiced.append(p > VOICE_THRESHOLD)
            self._pending = self._pending[n * CHUNK:]
            self.chunks += n

    def voiceless(self, start: int, end: int) -> bool:
        """Whether the stream's samples [start, end) hold no voice: every chunk they reach is still kept and under
        VOICE_THRESHOLD. The chunk still filling at the stream's head (under 32 ms) is left to the next frames; a
        span with nothing decided in it, or reaching chunks already dropped, is not known to be voiceless."""
        first, last = max(start, 0) // CHUNK, (end - 1) // CHUNK
        with self._lock:
            oldest = self.chunks - len(self._voiced)
            last = min(last, self.chunks - 1)
            if end <= start or first < oldest or last < first:
                return False
            return not any(self._voiced[i - oldest] for i in range(first, last + 1))
