"""`instag bench lips` pieces: the ridge from summed moments (`instag.stats`), the lag search, and leave-one-person-out scoring."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from instag.bench import lips
from instag.stats import ridge_from_moments, ridge_moments
from instag.train.recipe import LipStageConfig
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset


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


def test_the_lip_stage_is_scored_on_every_person_by_predictors_that_never_saw_them(tmp_path):
    datasets = [write_dataset(tmp_path / f"ds{i}", frames=16, seed=i) for i in range(4)]
    recipe = {"audio_feature": "mel", "model": {**TINY_MODEL, "articulation": True}, "init": TINY_INIT,
              "lips": {"steps": 3, "batch": 4}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    doc = lips.lip_stage_holdout(datasets, path, [2, 3], folds=2)
    assert doc["folds"] == 2 and doc["readout_alpha"] == LipStageConfig().readout_alpha
    assert [r["steps"] for r in doc["runs"]] == [2, 3]
    for run in doc["runs"]:
        assert sorted(run["people"]) == sorted(p.name for p in datasets)
        assert all(set(r) == {"head", "readout", "mean"} and all(-1 <= x <= 1 for x in r["head"])
                   for r in run["people"].values())
        assert 0 <= run["mean_beats_head_mouth_open"] <= 4
        means = np.mean([r["mean"][0] for r in run["people"].values()])
        assert run["mean_mean_r_mouth_open"] == pytest.approx(means, abs=1e-4)
    ridge = {"alpha": 1.0, "people": []} | {f"{s}_r_{c}": 0.0 for s in ("mean", "median") for c in lips.LIP_COEFFS}
    table = lips.markdown_table({"datasets": [], "machine": {"cpu": "x"}, "commit": "c", "context_frames": 2,
                                 "alphas": [], "variants": {"whisper3": ridge}, "lip_stage": [doc]})
    assert "mean follows the tracked lips better than the head alone" in table
