"""`instag bench lips` pieces: the ridge from summed moments (`instag.stats`), the lag search, and leave-one-person-out scoring."""

from __future__ import annotations

import numpy as np
import pytest

from instag.bench import lips
from instag.stats import ridge_from_moments, ridge_moments


def test_ridge_from_moments_equals_the_direct_solution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 6)) * [1, 2, 3, 4, 5, 6] + 7
    y = x @ rng.standard_normal((6, 2)) + 0.1 * rng.standard_normal((200, 2))
    mx, sx, ws, my = ridge_from_moments(ridge_moments(x, y), (100.0,))
    z = (x - x.mean(0)) / x.std(0)
    direct = np.linalg.solve(z.T @ z + 100.0 * 200 / 6 * np.eye(6), z.T @ (y - y.mean(0)))
    np.testing.assert_allclose(ws[100.0], direct, rtol=1e-8)
    np.testing.assert_allclose(mx, x.mean(0))
    np.testing.assert_allclose(sx, x.std(0))


def test_best_lag_finds_a_late_sound():
    rng = np.random.default_rng(1)
    tracked = np.convolve(rng.standard_normal(300), np.ones(5) / 5, mode="same")
    pred = np.roll(tracked, 3)  # the prediction (from the sound) comes 3 frames after the picture
    lag, r = lips.best_lag(pred, tracked)
    assert lag == 3 and r > 0.99


def _person(name: str, rng: np.random.Generator, weights: np.ndarray) -> lips.Person:
    feats = rng.standard_normal((150, 4))
    target = feats @ weights + 0.3 * rng.standard_normal((150, 2))
    target = (target - target.mean(0)) / target.std(0)
    return lips.Person(name, {"v": lips.with_context(feats, 1)}, target)


def test_leave_one_person_out_scores_each_person_unseen():
    rng = np.random.default_rng(2)
    weights = rng.standard_normal((4, 2))
    people = [_person(f"p{i}", rng, weights) for i in range(4)]
    rows = lips.lopo(people, "v")
    assert set(rows) == set(lips.ALPHAS)
    best = rows[min(lips.ALPHAS)]
    assert [r["person"] for r in best] == ["p0", "p1", "p2", "p3"]
    assert all(r["r_mouth_open"] > 0.8 and r["best_lag_frames"] == 0 for r in best)
    # a person whose lips follow other rules scores near zero: nothing of them leaks into their own fit
    people[3] = _person("odd", rng, np.eye(4, 2)[::-1].copy())
    odd = lips.lopo(people, "v")[min(lips.ALPHAS)][3]
    assert odd["r_mouth_open"] < 0.5


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant"):
        lips.variant_features("hubert", np.zeros(16000, np.float32), 25.0, 25, None)
