"""`instag bench dub`: which frames count as a pause."""

from __future__ import annotations

import numpy as np

from instag.bench.dub import silent_frames


def test_silent_frames_are_long_quiet_runs_without_their_edges():
    energy = np.full(40, 20.0)
    energy[5:8] = -30.0  # 3 quiet frames: a stop consonant, not a pause
    energy[20:32] = -30.0  # 12 quiet frames: a pause
    silent = silent_frames(energy, silence_db=35.0, min_run=5)
    assert not silent[:20].any()
    assert silent[22:30].all() and not silent[20:22].any() and not silent[30:].any()


def test_pauses_and_silences_split_at_a_length():
    energy = np.full(100, 20.0)
    energy[10:22] = -30.0  # a 12-frame pause
    energy[40:90] = -30.0  # a 50-frame silence
    pause = silent_frames(energy, min_run=5, max_run=40)
    silence = silent_frames(energy, min_run=40)
    assert pause[12:20].all() and not pause[40:].any()
    assert silence[42:88].all() and not silence[:40].any()
