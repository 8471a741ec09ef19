"""A run's saved recipe is read back as the run meant it, also when an older instag wrote it."""

from __future__ import annotations

import pytest
import yaml

from instag.config.recipe import to_dict
from instag.errors import InputError
from instag.train.recipe import AdaptRecipe, LossConfig
from instag.train.run import load_run_recipe, save_recipe


def test_a_saved_recipe_reads_back_as_it_was(tmp_path):
    recipe = AdaptRecipe(seed=7)
    save_recipe(tmp_path, recipe)
    assert load_run_recipe(tmp_path, AdaptRecipe) == recipe


def test_a_recipe_from_before_the_read_out_and_the_loss_section_reads_as_its_run_had_it(tmp_path):
    old = to_dict(AdaptRecipe(loss=LossConfig(lambda_lips=0.25)))
    old["model"].pop("lip_readout")
    old["model"]["loss"] = old.pop("loss")  # where the loss weights lived then
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(old))
    recipe = load_run_recipe(tmp_path, AdaptRecipe)
    assert recipe.model.lip_readout is False  # its model had no read-out, so its checkpoints hold none
    assert recipe.loss.lambda_lips == 0.25


def test_an_unreadable_saved_recipe_is_one_clear_error(tmp_path):
    (tmp_path / "recipe.yaml").write_text("model: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        load_run_recipe(tmp_path, AdaptRecipe)
    with pytest.raises(InputError, match="cannot read recipe"):
        load_run_recipe(tmp_path / "absent", AdaptRecipe)
