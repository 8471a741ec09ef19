"""`instag bench dub`: which frames count as a pause."""

from __future__ import annotations

import numpy as np

from instag.bench.dub import silent_frames


def test_silent_frames_are_long_quiet_runs_without_their_edges():
    energy = np.full(40, -10.0)
    energy[5:8] = -60.0  # 3 quiet frames: a stop consonant, not a pause
    energy[20:32] = -60.0  # 12 quiet frames: a pause
    silent = silent_frames(energy, silence_db=35.0, min_run=5)
    assert not silent[:20].any()
    assert silent[22:30].all() and not silent[20:22].any() and not silent[30:].any()
