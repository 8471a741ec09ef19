"""Variants of the lip read-out's input (Whisper layer, frames either side, layer mixes, pooled context), each
scored on people held out in four folds (every 4th person), as `instag bench lips --lip-stage` splits them.

    python benchmarks/scripts/readout_variants.py CACHE_DIR DATASET...

Per-layer features (layers 1–6, each frame's two 20 ms states averaged) are cached in CACHE_DIR. Prints the mean r
of the opening and width over the held-out people per variant and ridge strength.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from instag.audio import features as af
from instag.audio import whisper
from instag.bench.lips import LIP_COEFFS, with_context
from instag.data.dataset import load_dataset
from instag.data.pose import lip_coefficients, lip_standardisation
from instag.stats import correlation, ridge_from_moments, ridge_moments

ALPHAS = (1e3, 1e4, 3e4)
FOLDS = 4


def _pooled(x: np.ndarray, k: int) -> np.ndarray:
    t = len(x)
    idx = np.clip(np.arange(t)[:, None] + np.arange(-k, k + 1)[None, :], 0, t - 1)
    return x[idx].mean(1)


VARIANTS = {
    "L3 ±2 (shipped)": lambda d: with_context(d["L3"], 2),
    "L3 ±1": lambda d: with_context(d["L3"], 1),
    "L3 ±3": lambda d: with_context(d["L3"], 3),
    "L2 ±2": lambda d: with_context(d["L2"], 2),
    "L4 ±2": lambda d: with_context(d["L4"], 2),
    "L6 ±2": lambda d: with_context(d["L6"], 2),
    "mean(L2–L4) ±2": lambda d: with_context((d["L2"] + d["L3"] + d["L4"]) / 3, 2),
    "mean(L1–L6) ±2": lambda d: with_context(sum(d[f"L{i}"] for i in range(1, 7)) / 6, 2),
    "L3 ±2 + mean over ±6": lambda d: np.concatenate([with_context(d["L3"], 2), _pooled(d["L3"], 6)], 1),
    "L3 ±2 + L5 ±2": lambda d: np.concatenate([with_context(d["L3"], 2), with_context(d["L5"], 2)], 1),
}


def cached_features(cache: Path, datasets: list[Path], encode: Callable) -> list[dict[str, np.ndarray]]:
    """Per dataset, its tracked lip shape standardised over the clip ("lips" [T, C]) and what
    encode(front, dataset, audio) returns ({name: [T, D]}), cached in CACHE/<dataset name>.npz."""
    cache.mkdir(parents=True, exist_ok=True)
    front = None
    out = []
    for path in datasets:
        f = cache / f"{path.name}.npz"
        if not f.exists():
            front = front or whisper.load_whisper()
            ds = load_dataset(path)
            audio, _ = ds.audio()
            lips = lip_coefficients(ds.tracks, LIP_COEFFS)
            mean, std = lip_standardisation(lips, np.arange(ds.n_frames))
            np.savez(f, lips=(lips - mean) / std, **encode(front, ds, audio))
            print(path.name, flush=True)
        out.append(dict(np.load(f)))
    return out


def _layers(front: whisper.WhisperFrontEnd, ds, audio: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for layer in range(1, 7):
        front.layer = layer
        out[f"L{layer}"] = af.whisper_features(front, audio, ds.fps, ds.n_frames).mean(1).astype(np.float32)
    return out


def main(cache: Path, datasets: list[Path]) -> None:
    torch.set_num_threads(2)
    data = cached_features(cache, datasets, _layers)
    for name, make in VARIANTS.items():
        x = [make(d).astype(np.float64) for d in data]
        y = [d["lips"].astype(np.float64) for d in data]
        folds: list[dict[str, np.ndarray]] = [{} for _ in range(FOLDS)]
        for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
            m = ridge_moments(xi, yi)
            folds[i % FOLDS] = {q: folds[i % FOLDS].get(q, 0) + m[q] for q in m}
        r: dict[float, list[tuple[float, float]]] = {a: [] for a in ALPHAS}
        for k in range(FOLDS):
            rest = [folds[j] for j in range(FOLDS) if j != k]
            mx, sx, ws, my = ridge_from_moments({q: sum(f[q] for f in rest) for q in rest[0]}, ALPHAS)
            for i in range(k, len(x), FOLDS):
                for a, w in ws.items():
                    p = ((x[i] - mx) / sx) @ w + my
                    r[a].append((correlation(y[i][:, 0], p[:, 0]) or 0.0, correlation(y[i][:, 1], p[:, 1]) or 0.0))
        print(f"{name}: " + "; ".join(f"strength {a:g}: opening {np.mean([v[0] for v in rs]):.3f}, width "
                                     f"{np.mean([v[1] for v in rs]):.3f}" for a, rs in r.items()), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
