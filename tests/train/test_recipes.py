"""The shipped training recipes load strictly, and the quick CPU recipe stays small."""

from __future__ import annotations

from pathlib import Path

import pytest

from instag.config.recipe import load_recipe
from instag.errors import InputError
from instag.train.recipe import AdaptRecipe, PretrainRecipe
from instag.train.schedules import adapt_stages, pretrain_stages

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_shipped_recipes_load():
    quick = load_recipe(RECIPES / "adapt_quick_cpu.yaml", AdaptRecipe)
    paper = load_recipe(RECIPES / "adapt_5s.yaml", AdaptRecipe)
    pre = load_recipe(RECIPES / "pretrain.yaml", PretrainRecipe)
    assert paper.model.umf.triplane.log2_table_size == 17 and paper.model.umf.triplane.n_levels == 12
    assert quick.model.umf.triplane.log2_table_size < 17 and quick.stages.total < paper.stages.total
    assert [s.name for s in adapt_stages(paper.stages)] == ["warmup", "align", "fuse"]
    assert [s.name for s in pretrain_stages(pre.stages)] == ["face", "mouth", "joint"]
    assert pre.model.loss.lambda_contrast == 1.0


def test_stage_flags():
    stages = adapt_stages(load_recipe(RECIPES / "adapt_5s.yaml", AdaptRecipe).stages)
    warm, align, fuse = stages
    assert not warm.aligner and not warm.geometry and align.aligner and align.geometry
    assert fuse.colors_only and not fuse.densify and fuse.start == align.end


def test_unknown_key_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: {warmup: 1, align: 1, fuse: 1, polish: 3}\n")
    with pytest.raises(InputError, match="polish"):
        load_recipe(bad, AdaptRecipe)
