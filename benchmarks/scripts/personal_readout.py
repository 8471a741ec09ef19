"""A lip read-out fitted to each held-out person's first frames, shrunk toward the corpus read-out, scored on the
rest of their clip (exploration; the per-layer feature cache of `readout_variants.py`).

    python benchmarks/scripts/personal_readout.py CACHE_DIR [TRAIN_FRAMES]

The corpus read-out is the shipped kind (layer 3, ±2 frames, strength 10⁴), fitted on three of four folds (every
4th person); each person of the fourth with TRAIN_FRAMES (125: 5 s) and 50 more is fitted again on those frames
by ridge toward it, min ‖X w − y‖² + λ ‖w − w_corpus‖², and scored on the frames after them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from instag.bench.lips import with_context
from instag.stats import correlation, ridge_from_moments, ridge_moments

STRENGTH = 1e4
FOLDS = 4
SHRINK = (1e3, 3e3, 1e4, 3e4, 1e5)


def cached_people(cache: Path, key: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each cached person's read-out inputs (the `key` features, ±2 frames) [T, 5·D] and tracked lip shape [T, C]."""
    data = [dict(np.load(f)) for f in sorted(cache.glob("*.npz"))]
    return [with_context(d[key].astype(np.float64), 2) for d in data], [d["lips"].astype(np.float64) for d in data]


def held_out_readouts(x: list[np.ndarray], y: list[np.ndarray]) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """For each person i, in fold order: (i, the inputs' mean [D], scale [D] and the weights [D, C] of the read-out
    fitted on the three folds without i's; every 4th person makes a fold, strength as shipped)."""
    folds: list[dict[str, np.ndarray]] = [{} for _ in range(FOLDS)]
    for i in range(len(x)):
        m = ridge_moments(x[i], y[i])
        folds[i % FOLDS] = {q: folds[i % FOLDS].get(q, 0) + m[q] for q in m}
    for k in range(FOLDS):
        rest = [folds[j] for j in range(FOLDS) if j != k]
        mx, sx, ws, _ = ridge_from_moments({q: sum(f[q] for f in rest) for q in rest[0]}, (STRENGTH,))
        for i in range(k, len(x), FOLDS):
            yield i, mx, sx, ws[STRENGTH]


def main(cache: Path, train: int) -> None:
    x, y = cached_people(cache, "L3")
    rows = []
    for i, mx, sx, w0 in held_out_readouts(x, y):
        if len(x[i]) < train + 50:
            continue
        xs = (x[i] - mx) / sx
        fit = xs[:train] - xs[:train].mean(0)
        target = y[i][:train] - y[i][:train].mean(0)
        gram, cross = fit.T @ fit, fit.T @ target
        weights = [w0] + [np.linalg.solve(gram + lam * np.eye(len(w0)), cross + lam * w0) for lam in SHRINK]
        rows.append([[correlation(y[i][train:, c], (xs @ w)[train:, c]) or 0.0 for c in range(2)]
                     for w in weights])
    r = np.array(rows)  # [people, 1 + len(SHRINK), 2]
    print(f"{len(r)} people, fitted on their first {train} frames")
    print(f"corpus read-out: opening {r[:, 0, 0].mean():.3f}, width {r[:, 0, 1].mean():.3f}")
    for j, lam in enumerate(SHRINK, start=1):
        better = (r[:, j] > r[:, 0]).sum(0)
        print(f"shrunk with λ {lam:g}: opening {r[:, j, 0].mean():.3f}, width {r[:, j, 1].mean():.3f} "
              f"(better for {better[0]} / {better[1]} of {len(r)})")
    for half in (0, 1):  # λ picked on one half of the people, scored on the other
        j = 1 + int(np.argmax(r[half::2, 1:, 0].mean(0)))
        other = r[1 - half::2]
        print(f"λ picked on half {half}: {SHRINK[j - 1]:g}; the other half: opening {other[:, 0, 0].mean():.3f} → "
              f"{other[:, j, 0].mean():.3f}, width {other[:, 0, 1].mean():.3f} → {other[:, j, 1].mean():.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 125)
