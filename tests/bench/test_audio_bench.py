"""`instag bench audio`: the simulated stream of short-context states is compared with the whole-file states at
the same times."""

from __future__ import annotations

import numpy as np

from instag.audio import whisper
from instag.audio.synthetic_speech import DUB_VOICE, synthesize
from instag.bench.audio import short_context_distance


def test_short_context_stream_is_compared_at_the_same_times():
    front = whisper.load_whisper()
    audio = synthesize(6.0, DUB_VOICE, 4).samples.astype(np.float32)
    full = whisper.encode(front, audio)
    aligned = short_context_distance(front, audio, full, context_s=2.0)
    assert aligned["steps"] == 11  # windows ending at 2.0, 2.4, ..., 6.0 s
    assert -1.0 <= aligned["cosine_median"] <= 1.0
    late = np.concatenate([full[:10], full[:-10]])  # the whole-file states 0.2 s late
    assert aligned["channel_corr_median"] > short_context_distance(front, audio, late, 2.0)["channel_corr_median"] + 0.1
