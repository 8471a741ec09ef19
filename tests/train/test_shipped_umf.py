"""The UMF shipped in assets/umf: small, described, and the default of both adaptation recipes."""

from __future__ import annotations

from pathlib import Path

from instag.config.recipe import load_recipe
from instag.motion.model import MotionModel
from instag.train.recipe import AdaptRecipe
from instag.train.model_card import card_path
from instag.train.umf import SHIPPED_UMFS, UMF_DIR, choose_umf, load_umf, umf_paths, with_umf_sizes

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SHIPPED_UMF = UMF_DIR / SHIPPED_UMFS["mel"]


def test_shipped_umf_is_small_and_has_its_card():
    st_path, json_path = umf_paths(SHIPPED_UMF)
    assert st_path.stat().st_size + json_path.stat().st_size < 50 * 2**20
    card = card_path(st_path).read_text()
    for needle in ("Corpus", "iterations", "device", "training-loop time", "Known limits", "_losses.png"):
        assert needle in card, needle
    assert (st_path.parent / f"{st_path.stem}_losses.png").is_file()


def test_both_adaptation_recipes_start_from_the_shipped_umf():
    quick = load_recipe(RECIPES / "adapt_quick_cpu.yaml", AdaptRecipe)
    path, why = choose_umf(None, True, quick.model, quick.audio_feature)
    assert path == umf_paths(SHIPPED_UMF)[0] and "replace" not in why, why  # trained at the quick recipe's sizes
    meta = load_umf(path, MotionModel(quick.model, with_aligner=True), quick.model)
    assert meta["audio_feature"] == "mel" and meta["iterations"] > 0 and len(meta["corpus"]) >= 2
    # The paper-sized GPU recipe takes the UMF's motion sizes and keeps its own Gaussians, aligner and schedule.
    paper = load_recipe(RECIPES / "adapt_5s.yaml", AdaptRecipe)
    path, why = choose_umf(None, True, paper.model, paper.audio_feature)
    assert path == umf_paths(SHIPPED_UMF)[0] and "model.{umf}" in why, why
    adopted = with_umf_sizes(paper.model, path)
    assert adopted.umf == quick.model.umf and adopted != quick.model
    assert (adopted.gaussians, adopted.aligner) == (paper.model.gaussians, paper.model.aligner)
    load_umf(path, MotionModel(adopted, with_aligner=True), adopted)
