"""Small statistics shared across layers (the audio sync, evaluation, benchmarks), so none of them imports
another's package for a number."""

from __future__ import annotations

import numpy as np


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two series; None when either is constant (undefined)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or a.std() < 1e-12 or b.std() < 1e-12:
        return None
    return float(np.corrcoef(a, b)[0, 1])
