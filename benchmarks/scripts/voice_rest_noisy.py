"""Whether speech recorded badly still counts as a voice (`avatar.rest.quiet_frames`): each dataset's own sound
under the degradations of `noisy_speech.py` (white and pink noise, a room's echo, a telephone band, a low level),
and the share of its frames that rest for want of a voice (quiet now, not silent by loudness alone).

    python benchmarks/scripts/voice_rest_noisy.py DATASET...

Noise is drawn from a seed named after the dataset and the condition, so a rerun gives the same figures.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
from noisy_speech import _at_snr, _phone, _pink, _reverb

from instag.avatar.rest import quiet_frames, weights_over
from instag.data.dataset import load_dataset

FPS = 25.0
RATE = 16000


def conditions(x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"clean": x, "white 10 dB": _at_snr(x, rng.standard_normal(len(x)), 10.0),
            "white 0 dB": _at_snr(x, rng.standard_normal(len(x)), 0.0),
            "pink 10 dB": _at_snr(x, _pink(len(x), rng), 10.0), "pink 0 dB": _at_snr(x, _pink(len(x), rng), 0.0),
            "room 1.0 s": _reverb(x, 1.0, rng), "telephone": _phone(x), "40 dB quieter": x * 0.01}


def main(paths: list[str]) -> None:
    rows: dict[str, list[float]] = {}
    frames = 0
    for path in paths:
        audio, rate = load_dataset(Path(path)).audio()
        assert rate == RATE, f"{path}: {rate} Hz"
        n = int(len(audio) / RATE * FPS)
        frames += n
        rng = np.random.default_rng(zlib.crc32(Path(path).name.encode()))
        for name, x in conditions(audio.astype(np.float64), rng).items():
            x = x.astype(np.float32)
            by_loudness = weights_over(quiet_frames(x, RATE, FPS, n, without_voice=False), FPS) > 0.5
            now = weights_over(quiet_frames(x, RATE, FPS, n), FPS) > 0.5
            rows.setdefault(name, []).append(float((now & ~by_loudness).sum()))
            if rows[name][-1]:
                print(f"{Path(path).name}, {name}: {int(rows[name][-1])} of {n} frames", file=sys.stderr)
    print("| speech | frames newly at rest (of all) | datasets with any |")
    print("| --- | --- | --- |")
    for name, counts in rows.items():
        print(f"| {name} | {int(sum(counts))} of {frames} | {sum(c > 0 for c in counts)} of {len(counts)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
