"""The UMFs shipped in instag/assets/umf: small, described, and the default of the adaptation recipes of their audio
front end."""

from __future__ import annotations

from pathlib import Path

import pytest

from instag.config.recipe import RECIPE_DIR, load_recipe
from instag.errors import InputError
from instag.motion.model import MotionModel
from instag.motion.umf_file import SHIPPED_UMFS, UMF_DIR, find_umf, load_umf, shipped_umf, umf_paths
from instag.train.model_card import card_path
from instag.train.recipe import AdaptRecipe
from instag.train.umf import choose_umf, with_umf_sizes

RECIPES = RECIPE_DIR


@pytest.mark.parametrize("kind", sorted(SHIPPED_UMFS))
def test_shipped_umf_is_small_and_has_its_card(kind):
    st_path, json_path = umf_paths(UMF_DIR / SHIPPED_UMFS[kind])
    assert shipped_umf(kind) == UMF_DIR / SHIPPED_UMFS[kind]
    assert st_path.stat().st_size + json_path.stat().st_size < 50 * 2**20
    card = card_path(st_path).read_text()
    for needle in (f"`{st_path.stem}`", "Corpus", "iterations", "device", "Known limits", f"{st_path.stem}_losses.png"):
        assert needle in card, needle
    assert (st_path.parent / f"{st_path.stem}_losses.png").is_file()


@pytest.mark.parametrize(("recipe", "kind"), [("adapt_quick_cpu.yaml", "whisper"), ("adapt_quick_cpu_mel.yaml", "mel")])
def test_quick_recipes_start_from_the_shipped_umf_of_their_features(recipe, kind):
    quick = load_recipe(RECIPES / recipe, AdaptRecipe)
    assert quick.audio_feature == kind
    path, why = choose_umf(None, True, quick.model, quick.audio_feature)
    assert path == umf_paths(shipped_umf(kind))[0] and "replace" not in why, why  # trained at these sizes
    meta = load_umf(path, MotionModel(quick.model, with_aligner=True), quick.model)
    assert meta["audio_feature"] == kind and meta["iterations"] > 0 and len(meta["corpus"]) >= 2


def test_paper_sized_recipe_takes_the_whisper_umf_motion_sizes():
    quick = load_recipe(RECIPES / "adapt_quick_cpu.yaml", AdaptRecipe)
    paper = load_recipe(RECIPES / "adapt_5s.yaml", AdaptRecipe)
    path, why = choose_umf(None, True, paper.model, paper.audio_feature)
    assert path == umf_paths(shipped_umf("whisper"))[0] and "model.{umf}" in why, why
    adopted = with_umf_sizes(paper.model, path)
    assert adopted.umf == quick.model.umf and adopted != quick.model
    assert (adopted.gaussians, adopted.aligner) == (paper.model.gaussians, paper.model.aligner)
    load_umf(path, MotionModel(adopted, with_aligner=True), adopted)


def test_a_bare_name_finds_a_shipped_umf_and_writing_never_goes_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = umf_paths(UMF_DIR / "whisper_v1")
    assert find_umf("whisper_v1") == find_umf("assets/umf/whisper_v1.safetensors") == shipped
    with pytest.raises(InputError, match="no such UMF"):
        find_umf(tmp_path / "runs" / "whisper_v1")  # a path elsewhere is that path, not the shipped one
    assert umf_paths("whisper_v1")[0] == Path("whisper_v1.safetensors")  # where a new UMF of that name goes


def test_the_shipped_whisper_umf_drives_files_as_whisper_v3_and_has_a_fitted_live_read_out():
    """`whisper_v4` is `whisper_v3` with a live read-out added (`--keep-readout`): every tensor of `whisper_v3` is
    there unchanged, so dubs and adaptations are those `whisper_v3` gave, and the live read-out is fitted."""
    from safetensors.torch import load_file

    v3 = load_file(str(umf_paths(UMF_DIR / "whisper_v3")[0]))
    shipped = load_file(str(umf_paths(shipped_umf("whisper"))[0]))
    assert all(shipped[k].equal(v) for k, v in v3.items())
    assert {k.rsplit(".", 1)[0] for k in shipped.keys() - v3.keys()} == {"umf.lip_readout_live"}
    assert float(shipped["umf.lip_readout_live.fitted"]) == 1.0 and shipped["umf.lip_readout_live.weight"].abs().sum() > 0


def _copy_with(tmp_path: Path, name: str, key: str) -> Path:
    """A copy of shipped UMF `name` under tmp_path with tensor `key` changed."""
    import shutil

    from safetensors.torch import load_file, save_file

    st_path, json_path = umf_paths(UMF_DIR / name)
    tensors = load_file(str(st_path))
    tensors[key] = tensors[key] + 1.0
    save_file(tensors, str(tmp_path / st_path.name))
    shutil.copy(json_path, tmp_path / json_path.name)
    return tmp_path / name


def test_the_lip_predictor_digest_changes_with_what_a_file_prediction_reads_and_nothing_else(tmp_path):
    from instag.motion.umf_file import lip_predictor_sha256

    v3 = lip_predictor_sha256(UMF_DIR / "whisper_v3")
    assert lip_predictor_sha256(UMF_DIR / "whisper_v4") == v3  # v4 added the live read-out alone
    assert lip_predictor_sha256(UMF_DIR / "whisper_v2") != v3
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert lip_predictor_sha256(_copy_with(tmp_path / "a", "whisper_v4", "umf.lip_readout_live.weight")) == v3
    assert lip_predictor_sha256(_copy_with(tmp_path / "b", "whisper_v4", "umf.lip_readout.weight")) != v3


def test_a_dataset_placed_by_an_older_file_with_the_same_lip_predictor_counts_as_placed_now(monkeypatch):
    from instag.data import preprocess
    from instag.data.video import sha256_of
    from instag.motion.umf_file import lip_predictor_sha256

    monkeypatch.setattr(preprocess, "sync_kind", lambda: "whisper")
    v3_file, v2_file = (sha256_of(umf_paths(UMF_DIR / n)[0]) for n in ("whisper_v3", "whisper_v2"))
    now = lip_predictor_sha256(shipped_umf("whisper"))
    assert preprocess.placed_as_now({"umf_sha256": v3_file})  # recorded before the digest was
    assert not preprocess.placed_as_now({"umf_sha256": v2_file})
    assert not preprocess.placed_as_now({"umf_sha256": "0" * 64})
    assert not preprocess.placed_as_now({})  # given, off or unavailable: no predictor read it
    assert preprocess.placed_as_now({"umf_sha256": v2_file, "umf_lip_predictor_sha256": now})
    assert not preprocess.placed_as_now({"umf_sha256": v3_file, "umf_lip_predictor_sha256": "0" * 64})
    monkeypatch.setattr(preprocess, "sync_kind", lambda: None)
    assert preprocess.placed_as_now({}) and not preprocess.placed_as_now({"umf_sha256": v3_file})
