"""Where a track is silent: runs of video frames whose speech-band energy (`features.energy_envelope`, dB [T]) is far
below the track's loudest frame, or below what any speech reaches."""

from __future__ import annotations

import numpy as np

SILENCE_DB = 35.0  # below the track's loudest speech-band frame: a pause, not a quiet syllable
# On energy_envelope's scale speech recorded at a usual level peaks near +30 dB and white noise at -60 dBFS reads
# about -18: below this no frame holds speech, whatever the track's loudest (a track of nothing but silence too).
ABSOLUTE_SILENCE_DB = -10.0


def silent_mask(energy_db: np.ndarray, silence_db: float = SILENCE_DB) -> np.ndarray:
    """Frames [T] bool whose energy (dB [T]) is `silence_db` below the loudest frame or under ABSOLUTE_SILENCE_DB."""
    energy_db = np.asarray(energy_db)
    if energy_db.size == 0:
        return np.zeros(0, bool)
    return (energy_db < energy_db.max() - silence_db) | (energy_db < ABSOLUTE_SILENCE_DB)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The maximal runs of True in `mask` [T], as [start, end) frame pairs."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]
