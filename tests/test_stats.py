"""Small shared statistics."""

import numpy as np

from instag.stats import correlation, effective_count


def _smooth(n: int, rng: np.random.Generator, width: int = 9) -> np.ndarray:
    """A smooth random series [n], like a mouth opening (syllable-scale wiggles)."""
    return np.convolve(rng.standard_normal(n + 2 * width), np.hanning(width), mode="same")[width : width + n]


def test_effective_count_makes_the_correlation_of_unrelated_smooth_series_as_noisy_as_it_says():
    rng = np.random.default_rng(0)
    n = 125
    white = [effective_count(rng.standard_normal(n), rng.standard_normal(n)) for _ in range(50)]
    assert 0.8 * n < np.median(white) <= n  # independent frames count fully
    z_naive, z_eff, counts = [], [], []
    for _ in range(800):
        a, b = _smooth(n, rng), _smooth(n, rng)
        r, m = correlation(a, b), effective_count(a, b)
        z_naive.append(abs(r) * np.sqrt(n))
        z_eff.append(abs(r) * np.sqrt(m))
        counts.append(m)
    assert np.median(counts) < n / 3  # smooth frames are worth far fewer
    # 2 standard errors: about 5 % of unrelated pairs beyond, where 1/√n puts about 30 % beyond.
    assert 0.02 < np.mean(np.array(z_eff) > 2) < 0.09
    assert np.mean(np.array(z_naive) > 2) > 0.2


def test_effective_count_of_degenerate_series():
    assert effective_count(np.ones(10), np.arange(10.0)) == 10.0
    assert effective_count(np.arange(2.0), np.arange(2.0)) == 2.0
