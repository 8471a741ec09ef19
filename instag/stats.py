"""Small statistics shared across layers (the audio sync, evaluation, training, benchmarks), so none of them
imports another's package for a number."""

from __future__ import annotations

import numpy as np


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two series; None when either is constant (undefined)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or a.std() < 1e-12 or b.std() < 1e-12:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def effective_count(a: np.ndarray, b: np.ndarray) -> float:
    """How many independent pairs the n pairs of two autocorrelated series a, b [n] are worth to their correlation
    (Bartlett's large-sample variance: n / (1 + 2 Σ_k ρa(k) ρb(k)), autocorrelations to lag n/5). Smooth series like
    a mouth opening are worth a third of their frames or less, so r's noise is wider than 1/√n says."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = len(a)
    if n < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return float(n)
    za, zb = (a - a.mean()) / a.std(), (b - b.mean()) / b.std()
    lags = range(1, max(n // 5, 1) + 1)
    overlap = sum(float(za[: n - k] @ za[k:]) * float(zb[: n - k] @ zb[k:]) for k in lags) / n**2
    return float(min(n, max(1.0, n / (1.0 + 2.0 * overlap))))


def ridge_moments(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Summed moments of inputs `x` [N, D] and targets `y` [N, C] (float64): sets of them add up, so a ridge
    over many clips (or all but one of them) needs each clip's inputs only once."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return {"n": np.array(len(x), np.float64), "sx": x.sum(0), "sy": y.sum(0), "xx": x.T @ x, "xy": x.T @ y}


def ridge_from_moments(m: dict[str, np.ndarray], alphas: tuple[float, ...]
                       ) -> tuple[np.ndarray, np.ndarray, dict[float, np.ndarray], np.ndarray]:
    """Ridge regression on standardised inputs from summed moments (`ridge_moments`), for every strength →
    (mean_x [D], std_x [D], {alpha: weights [D, C]}, mean_y [C]); a prediction is ((x − mean_x) / std_x) · W +
    mean_y. The penalty is alpha · n / D, so one strength suits any number of frames and inputs."""
    import scipy.linalg

    n = float(m["n"])
    mx, my = m["sx"] / n, m["sy"] / n
    gram = m["xx"] - n * np.outer(mx, mx)
    cross = m["xy"] - n * np.outer(mx, my)
    sx = np.sqrt(np.maximum(np.diag(gram) / n, 1e-12))
    gram = gram / np.outer(sx, sx)
    cross = cross / sx[:, None]
    eye = np.eye(len(gram))
    ws = {a: scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram + a * n / len(gram) * eye), cross) for a in alphas}
    return mx, sx, ws, my
