"""The shipped training recipes load strictly, and the quick CPU recipe stays small."""

from __future__ import annotations

import pytest

from instag.config.recipe import RECIPE_DIR, load_recipe, to_dict
from instag.errors import InputError
from instag.train.recipe import AdaptRecipe, PretrainRecipe
from instag.train.schedules import adapt_stages, pretrain_stages

RECIPES = RECIPE_DIR


def test_shipped_recipes_load():
    quick = load_recipe(RECIPES / "adapt_quick_cpu.yaml", AdaptRecipe)
    paper = load_recipe(RECIPES / "adapt_5s.yaml", AdaptRecipe)
    pre = load_recipe(RECIPES / "pretrain.yaml", PretrainRecipe)
    assert paper.model.umf.triplane.log2_table_size == 17 and paper.model.umf.triplane.n_levels == 12
    assert quick.model.umf.triplane.log2_table_size < 17 and quick.stages.total < paper.stages.total
    assert [s.name for s in adapt_stages(paper.stages)] == ["warmup", "align", "fuse"]
    assert [s.name for s in pretrain_stages(pre.stages)] == ["face", "mouth", "joint"]
    assert pre.loss.lambda_contrast == 1.0 and pre.loss.lambda_depth == 1e-2


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


def test_shipped_recipes_use_the_articulation_head_and_the_quick_ones_share_the_umf_sizes():
    recipes = [load_recipe(RECIPES / f"{n}.yaml", AdaptRecipe) for n in ("adapt_quick_cpu", "adapt_5s")]
    recipes += [load_recipe(RECIPES / f"{n}.yaml", PretrainRecipe) for n in ("pretrain_quick_cpu", "pretrain")]
    assert all(r.model.articulation and r.loss.lambda_articulation > 0 for r in recipes)
    assert recipes[0].model.umf == recipes[2].model.umf  # so the quick pre-training's export loads into adaptation


def test_negative_articulation_batch_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: {articulation_batch: -1}\n")
    with pytest.raises(InputError, match="loss.articulation_batch"):
        load_recipe(bad, AdaptRecipe)


def test_pretraining_refuses_personalized_fields_as_large_as_the_umf(tmp_path):
    """A residual field with the UMF's capacity takes over the motion the UMF should learn (DESIGN §6)."""
    quick = load_recipe(RECIPES / "pretrain_quick_cpu.yaml", PretrainRecipe)
    u, p = quick.model.umf, quick.model.personalized
    assert p.hidden_dim < u.hidden_dim and p.triplane.log2_table_size < u.triplane.log2_table_size
    plane = "{n_levels: 4, log2_table_size: 10, base_resolution: 4, max_resolution: 32}"
    for personalized, why in ((f"{{triplane: {plane}, hidden_dim: 16, n_layers: 2}}", "equal"),
                              (f"{{triplane: {plane}, hidden_dim: 32, n_layers: 1}}", "hidden_dim 32 > 16")):
        path = tmp_path / "pre.yaml"
        path.write_text(f"model:\n  umf: {{triplane: {plane}, hidden_dim: 16, n_layers: 2}}\n"
                        f"  personalized: {personalized}\n")
        with pytest.raises(InputError, match=f"personalized must be smaller.*{why}"):
            load_recipe(path, PretrainRecipe)


@pytest.mark.parametrize(("adapt", "pre"), [("adapt_quick_cpu", "pretrain_quick_cpu"), ("adapt_5s", "pretrain"),
                                            ("adapt_quick_cpu_mel", "pretrain_quick_cpu_mel")])
def test_adaptation_recipes_read_the_audio_their_pretraining_recipe_writes(adapt, pre):
    """A UMF is the default of an adaptation recipe only with the same audio front end (the lip coefficients,
    like its motion sizes, it lends)."""
    a = load_recipe(RECIPES / f"{adapt}.yaml", AdaptRecipe)
    p = load_recipe(RECIPES / f"{pre}.yaml", PretrainRecipe)
    assert (a.audio_feature, a.model.audio) == (p.audio_feature, p.model.audio)
    assert p.lips.steps > 0


def test_whisper_is_the_default_front_end():
    for name in ("adapt_quick_cpu", "adapt_5s"):
        assert load_recipe(RECIPES / f"{name}.yaml", AdaptRecipe).audio_feature == "whisper"
    assert load_recipe(RECIPES / "pretrain_quick_cpu.yaml", PretrainRecipe).audio_feature == "whisper"


def _leaves(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        out |= _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v}
    return out


def test_a_setting_every_shipped_recipe_agrees_on_is_its_default():
    """One source per setting: what all shipped recipes use is what the dataclasses default to, so a recipe that
    leaves it out gets what ships."""
    shipped = [_leaves(to_dict(load_recipe(p, AdaptRecipe if p.name.startswith("adapt") else PretrainRecipe)))
               for p in sorted(RECIPES.glob("*.yaml"))]
    defaults = _leaves(to_dict(AdaptRecipe())) | _leaves(to_dict(PretrainRecipe()))
    agreed = {k: shipped[0][k] for k in shipped[0] if all(k in r and r[k] == shipped[0][k] for r in shipped)}
    assert len(shipped) >= 6 and "model.articulation" in agreed
    assert {k: (defaults[k], v) for k, v in agreed.items() if defaults[k] != v} == {}
