"""How the lip read-out holds when music plays under the voice, as it does under many a dubbed video's speech:
each person's audio with a piece of music (each file of MUSIC_DIR in turn) 20, 10 or 0 dB under the speech's louder
half, scored on people held out in four folds by the read-out fitted on clean speech, as `noisy_speech.py` scores
its degradations.

    python benchmarks/scripts/music_bed.py CACHE_DIR MUSIC_DIR DATASET...

Layer-3 Whisper features per condition are cached in CACHE_DIR.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from noisy_speech import _at_snr, _score
from readout_variants import cached_features
from voice_rest_backward import music_files

from instag.audio import features as af
from instag.media.audio import decode_audio

LEVELS_DB = (20.0, 10.0, 0.0)  # the music this far under the speech


def main(cache: Path, music_dir: Path, datasets: list[Path]) -> None:
    torch.set_num_threads(2)
    pieces = [decode_audio(p).mono16k.astype(np.float64) for p in music_files(str(music_dir))]

    def encode(front, ds, audio: np.ndarray) -> dict[str, np.ndarray]:
        music = pieces[zlib.crc32(ds.path.name.encode()) % len(pieces)]
        music = np.resize(music, len(audio))
        out = {}
        for name, level in [("clean", None), *((f"music {db:g} dB under", db) for db in LEVELS_DB)]:
            y = audio.astype(np.float64) if level is None else _at_snr(audio.astype(np.float64), music, level)
            y = (y / max(1.0, float(np.abs(y).max()))).astype(np.float32)
            out[name] = af.whisper_features(front, y, ds.fps, ds.n_frames).mean(1).astype(np.float32)
        return out

    data = cached_features(cache, datasets, encode)
    scored = [c for c in data[0] if c != "lips"]
    result = _score(data, ["clean"], scored)
    print(f"{len(data)} people; mean r opening / width (median spread of the opening vs clean), read-out fitted on "
          "clean speech:")
    print("| speech | r opening / width (spread) |\n| --- | --- |")
    for c in scored:
        print(f"| {c} | {result[c][0]:.3f} / {result[c][1]:.3f} ({result[c][2]:.2f}) |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
