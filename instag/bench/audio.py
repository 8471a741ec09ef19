"""`instag bench audio FILE`: the Whisper front end's cost per second of audio, and how far its short-context
mode (the newest states of the last few seconds, encoded alone, as the live preview will) is from the states of
the whole file."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from instag.audio import whisper
from instag.bench.record import header

CONTEXTS_S = (2.0, 3.0, 4.0, 6.0)
STEP_S = 0.4  # a streaming step: the encoder runs on the last CONTEXT seconds and its newest STEP_S s are kept


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def short_context_distance(front: whisper.WhisperFrontEnd, audio: np.ndarray, full: np.ndarray,
                           context_s: float) -> dict[str, float]:
    """A simulated stream: every STEP_S s the encoder runs on the last `context_s` s alone and its newest STEP_S s
    of states are kept. Against the whole file's states (`full` [N, D]) at the same times: the median cosine of
    the state vectors, and the median over channels of each channel's correlation over time (window placement
    gives the states per-channel offsets that the vectors' cosine counts and a lip read-out mostly does not)."""
    per_s = whisper.SAMPLE_RATE // whisper.TOKEN_SAMPLES  # states a second
    ctx, step = int(context_s * per_s), int(STEP_S * per_s)
    ends = range(ctx, len(full) + 1, step)
    stream = np.concatenate([whisper.encode_recent(front, audio[(e - ctx) * whisper.TOKEN_SAMPLES:
                                                                e * whisper.TOKEN_SAMPLES])[-step:] for e in ends])
    ref = np.concatenate([full[e - step : e] for e in ends])
    a, b = stream - stream.mean(0), ref - ref.mean(0)
    per_channel = (a * b).sum(0) / np.sqrt(np.maximum((a * a).sum(0) * (b * b).sum(0), 1e-12))
    return {"context_s": context_s, "steps": len(ends), "cosine_median": round(float(np.median(_cosine(stream, ref))), 4),
            "channel_corr_median": round(float(np.median(per_channel)), 4),
            "channel_corr_p10": round(float(np.percentile(per_channel, 10)), 4)}


def run(path: str | Path, runs: int = 3, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Median wall and CPU time of `encode` over the file (`runs` times), then the short-context distances."""
    from instag.media.audio import decode_audio

    audio = decode_audio(Path(path)).mono16k
    seconds = len(audio) / whisper.SAMPLE_RATE
    t0 = time.perf_counter()
    front = whisper.load_whisper()
    load_s = time.perf_counter() - t0
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        full = whisper.encode(front, audio)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    if progress:
        progress(f"encode {seconds:.1f} s: wall {statistics.median(walls):.2f} s, CPU {statistics.median(cpus):.2f} s")
    contexts = []
    for c in CONTEXTS_S:
        contexts.append(short_context_distance(front, audio, full, c))
        if progress:
            progress(f"context {c:g} s: cosine median {contexts[-1]['cosine_median']}")
    recent_walls = []
    piece = audio[-int(CONTEXTS_S[-1] * whisper.SAMPLE_RATE):]
    for _ in range(max(runs, 5)):
        w0 = time.perf_counter()
        whisper.encode_recent(front, piece)
        recent_walls.append(time.perf_counter() - w0)
    doc = header("audio")
    doc.update({
        "file": str(path), "audio_s": round(seconds, 3), "front_end": front.source, "layer": front.layer,
        "load_s": round(load_s, 3), "runs": runs,
        "encode_wall_s": round(statistics.median(walls), 3), "encode_cpu_s": round(statistics.median(cpus), 3),
        "cpu_s_per_audio_s": round(statistics.median(cpus) / seconds, 4),
        "wall_s_per_audio_s": round(statistics.median(walls) / seconds, 4),
        f"encode_recent_{CONTEXTS_S[-1]:g}s_wall_s": round(statistics.median(recent_walls), 4),
        "short_context": contexts,
    })
    return doc
