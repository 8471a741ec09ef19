"""The person's calibration of the predicted lip shape as a quantile map instead of a gain (exploration).

Adaptation scales the centred prediction to the tracked lip shape's spread over the person's 5 s (`adapt.lip_gain`):
a straight line, so the prediction's distribution keeps its own shape. The tracked opening is skewed (many frames
near shut, fewer wide), the prediction less so. A quantile map fitted on the same frames (each prediction's rank
among the training frames' predictions → the tracked value of that rank, the gain's line beyond their ends) would
give the dub the person's own distribution. Scored as `personal_readout.py` scores: the read-out as shipped (layer
3, ±2 frames, strength 10⁴) fitted on three of four folds; each held-out person with at least 175 frames calibrated
on their first 125 (5 s) and scored on the frames after them.

    python benchmarks/scripts/quantile_calibration.py CACHE_DIR

CACHE_DIR: the per-person caches of `noisy_speech.py` or `music_bed.py` (their "clean" layer-3 features, "lips").
Prints, per coefficient and calibration, the mean over people of r, the mean absolute error and the distance
between the calibrated prediction's and the tracked values' distributions (both in the person's standardised
units), and the skew of each.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from personal_readout import cached_people, held_out_readouts

from instag.stats import correlation

TRAIN = 125
COEFFS = ("opening", "width")


def gain_map(p_train: np.ndarray, t_train: np.ndarray, p: np.ndarray) -> np.ndarray:
    """As shipped: the centred prediction scaled to the tracked spread, around the tracked mean."""
    return t_train.mean() + (p - p_train.mean()) * t_train.std() / p_train.std()


def quantile_map(p_train: np.ndarray, t_train: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Rank among the training predictions → the tracked value of that rank; beyond their ends, the gain's line."""
    ps, ts = np.sort(p_train), np.sort(t_train)
    out = np.interp(p, ps, ts)
    gain = t_train.std() / p_train.std()
    lo, hi = p < ps[0], p > ps[-1]
    out[lo] = ts[0] + (p[lo] - ps[0]) * gain
    out[hi] = ts[-1] + (p[hi] - ps[-1]) * gain
    return out


def distribution_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The 1-Wasserstein distance of two samples of one length: the mean gap between their sorted values."""
    return float(np.abs(np.sort(a) - np.sort(b)).mean())


def skew(x: np.ndarray) -> float:
    z = (x - x.mean()) / x.std()
    return float((z**3).mean())


def main(cache: Path) -> None:
    x, y = cached_people(cache, "clean")
    rows: dict[str, list[float]] = {}
    people = 0
    for i, mx, sx, w in held_out_readouts(x, y):
        if len(x[i]) < TRAIN + 50:
            continue
        people += 1
        p = ((x[i] - mx) / sx) @ w
        for c, coeff in enumerate(COEFFS):
            truth = y[i][TRAIN:, c]
            rows.setdefault(f"{coeff} tracked skew", []).append(skew(truth))
            for name, calibrate in (("gain (shipped)", gain_map), ("quantile map", quantile_map)):
                pred = calibrate(p[:TRAIN, c], y[i][:TRAIN, c], p[:, c])[TRAIN:]
                for what, value in (("r", correlation(truth, pred) or 0.0),
                                    ("mean abs error", float(np.abs(truth - pred).mean())),
                                    ("distribution distance", distribution_distance(truth, pred)),
                                    ("skew", skew(pred))):
                    rows.setdefault(f"{coeff} {name} {what}", []).append(value)
    print(f"{people} people held out, calibrated on their first {TRAIN} frames, scored on the rest")
    for key, values in rows.items():
        print(f"{key:48s} {np.mean(values):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
