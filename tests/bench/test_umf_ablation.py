"""The UMF ablation's parts that need no adaptation: case parsing, who wins, the committed table."""

from __future__ import annotations

import pytest
import torch
import yaml

from instag.bench.umf_ablation import _mean, _same_recipe_run, markdown_table, parse_case, wins
from instag.errors import InputError
from instag.train import checkpoint as ck
from instag.train.recipe import AdaptRecipe
from instag.train.run import save_recipe


def test_cases_are_clip_at_seconds(tmp_path):
    clip = tmp_path / "a@b.mp4"  # an "@" in the name stays part of the path
    clip.write_bytes(b"x")
    assert parse_case(f"{clip}@5") == (clip, 5.0)
    for bad in (str(clip), f"{clip}@0", f"{clip}@soon", f"{tmp_path / 'missing.mp4'}@5"):
        with pytest.raises(InputError):
            parse_case(bad)


def _scores(psnr: float, lmd: float, corr: float | None) -> dict:
    return {"psnr_full": psnr, "psnr_face": psnr - 2, "psnr_mouth": psnr - 6, "ssim_full": 0.8, "ssim_face": 0.7,
            "ssim_mouth": 0.5, "lmd": lmd, "mouth_open_corr": corr, "n_frames": 75, "train_s": 300}


def test_lower_lmd_and_higher_scores_win():
    w = wins(_scores(22.0, 3.0, 0.2), _scores(21.0, 2.5, 0.4))
    assert w["lmd"] is True and w["mouth_open_corr"] is True and w["psnr_full"] is False
    assert w["ssim_full"] is False  # a tie is not a win
    assert wins(_scores(22.0, 3.0, None), _scores(22.0, 3.0, 0.4))["mouth_open_corr"] is None


def test_the_table_names_its_command_and_every_arm():
    case = {"clip": "k.mp4", "test_from_s": 5.0, "n_train": 125, "n_test": 77,
            "without_umf": _scores(22.0, 3.0, 0.2), "with_umf": _scores(21.5, 2.5, 0.4)}
    case["umf_wins"] = wins(case["without_umf"], case["with_umf"])
    doc = {"machine": {"cpu": "test CPU", "gpu": None}, "commit": "abc1234", "threads": 1, "time": "now",
           "recipe": "r.yaml", "umf": "u.safetensors", "umf_sha256": "0" * 64, "size": 256, "seeds": [0, 1],
           "cases": [case]}
    table = markdown_table(doc, "instag bench umf-ablation k.mp4@5 --work w")
    assert "`instag bench umf-ablation k.mp4@5 --work w`" in table and "abc1234" in table
    rows = [line for line in table.splitlines() if line.startswith("| k.mp4")]
    assert len(rows) == 2 and "| no |" in rows[0] and "| yes |" in rows[1] and "| 2.5 |" in rows[1]
    assert "better on lmd, mouth_open_corr" in table and "mean over seeds 0, 1" in table


def test_arms_are_means_over_seeds():
    rows = [_scores(22.0, 3.0, 0.2), _scores(24.0, 2.0, None)]
    m = _mean(rows)
    assert m["psnr_full"] == 23.0 and m["lmd"] == 2.5 and m["mouth_open_corr"] is None


def test_a_stopped_arm_is_resumed_only_with_the_same_recipe_as_written_and_the_same_umf(tmp_path):
    recipe = AdaptRecipe()
    run = tmp_path / "arm.run"
    save_recipe(run, recipe)
    ck.save_checkpoint(ck.checkpoint_dir(run, 5), {"x": torch.zeros(1)}, {"step": 5, "umf": {"sha256": "abc"}})
    assert _same_recipe_run(run, recipe, "abc")
    assert not _same_recipe_run(run, recipe, "def")
    assert not _same_recipe_run(run, recipe, None)
    # A run saved before a setting existed loads with today's default for it, yet it trained without it.
    doc = yaml.safe_load((run / "recipe.yaml").read_text())
    del doc["loss"]["lambda_lips"]
    (run / "recipe.yaml").write_text(yaml.safe_dump(doc))
    assert not _same_recipe_run(run, recipe, "abc")
