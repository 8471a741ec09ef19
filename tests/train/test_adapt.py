"""Motion-aligned adaptation: tiny synthetic runs (avatar written and reloaded, bit-for-bit resume, clean stop)
and a short run on a real clip (skipped without the real clips) whose photometric loss must fall."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from instag.avatar import load_avatar
from instag.config.recipe import from_dict
from instag.data.dataset import load_dataset
from instag.errors import InputError
from instag.gaussians import GaussianField
from instag.motion import MotionModel
from instag.render import FrameCondition, render_avatar
from instag.render.views import view_range
from instag.train import checkpoint as ck
from instag.train.adapt import adapt, lip_gain
from instag.train.frames import IdentityFrames
from instag.train.recipe import AdaptRecipe
from instag.train.synthetic import TINY_MODEL, TINY_RECIPE, write_dataset
from instag.train.umf import write_umf

TINY = {
    **TINY_RECIPE,
    "stages": {"warmup": 4, "align": 4, "fuse": 2},
    "densify": {"every": 3, "start": 1, "stop_before_end": 1},
    "run": {"checkpoint_every": 5, "log_every": 1, "previews": 2, "threads": 1},
}


@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("adapt") / "ds", test_from=6)


def _recipe(**over) -> AdaptRecipe:
    return from_dict(AdaptRecipe, {**TINY, **over})


def _conditions(av, ds_path: Path, t: int) -> FrameCondition:
    frames = IdentityFrames(load_dataset(ds_path), "mel", av.cfg.expression_dim)
    return frames.condition(t, av.cfg.audio)


def test_adapt_writes_an_avatar_that_renders_like_the_trained_model(tiny_ds, tmp_path):
    out = tmp_path / "av"
    notes = []
    result = adapt(tiny_ds, out, _recipe(), callback=lambda e: e.message and notes.append(e.message))
    assert not result.interrupted and result.steps_done == 10
    # What densification did, by branch, in words (one identity: no name before the branch).
    assert any(re.fullmatch(r"densify: face \+\d+ cloned \+\d+ split −\d+ pruned → \d+; mouth .* → \d+.*", n)
               for n in notes), notes
    for name in ("avatar.json", "model.safetensors", "drive.npz", "background.png"):
        assert (out / name).is_file()
    run = result.run_dir
    assert (run / "recipe.yaml").is_file() and len(list((run / "previews").glob("*.png"))) == 2
    with (run / "losses.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and all(r["lips"] != "" for r in rows if r["stage"] != "fuse")  # on by default

    av = load_avatar(out)
    assert av.meta["audio_feature"] == "mel" and av.meta["image_size"] == [32, 32]
    assert av.meta["view_range"] == av.view.describe() == view_range(av.drive["viewmats"]).describe()
    assert av.n_drive_frames == 6 and len(list((out / "torso").glob("*.png"))) == 6
    # The avatar renders exactly what the final checkpoint's model renders.
    tensors, _ = ck.load_checkpoint(ck.latest_checkpoint(run))
    face = GaussianField.from_tensors(ck.sub_tensors(tensors, "face"))
    mouth = GaussianField.from_tensors(ck.sub_tensors(tensors, "mouth"))
    motion = MotionModel(av.cfg, with_aligner=True)
    motion.load_state_dict(ck.sub_tensors(tensors, "motion"))
    cond = _conditions(av, tiny_ds, 7)
    with torch.no_grad():
        expected = render_avatar(face, mouth, motion, cond, backend=av.cfg.backend).image
    assert torch.equal(av.render(cond).image, expected)
    assert torch.equal(load_avatar(out).render(cond).image, expected)


def test_the_lip_and_depth_placement_losses_train_the_motion_and_skip_the_fuse_stage(tiny_ds, tmp_path):
    loss = {"lambda_lips": 1.0, "lambda_lip_depth": 1.0, "lambda_depth_offset": 1.0}
    result = adapt(tiny_ds, tmp_path / "av", _recipe(loss=loss))
    with (result.run_dir / "losses.csv").open() as f:
        rows = list(csv.DictReader(f))
    for term in ("lips", "lip_depth"):
        assert all(float(r[term]) > 0 for r in rows if r["stage"] != "fuse")
        assert all(r[term] == "" for r in rows if r["stage"] == "fuse")
    # The depth offset comes with the geometry prior: from the alignment stage on, not in the fuse stage.
    geometry = [r for r in rows if r["depth"] != ""]
    assert geometry and all(float(r["depth_offset"]) > 0 for r in geometry)
    assert all(r["depth_offset"] == "" for r in rows if r["depth"] == "")


def test_the_articulation_head_learns_from_the_tracked_opening_unless_the_umf_is_fixed(tiny_ds, tmp_path):
    model = {**TINY_MODEL, "articulation": True}
    scratch = adapt(tiny_ds, tmp_path / "scratch", _recipe(model=model))
    with (scratch.run_dir / "losses.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["articulation"]) > 0 for r in rows if r["stage"] != "fuse")
    assert all(r["articulation"] == "" for r in rows if r["stage"] == "fuse")
    assert load_avatar(tmp_path / "scratch").cfg.articulation

    cfg = _recipe(model=model).model
    torch.manual_seed(3)
    umf = MotionModel(cfg)
    write_umf(tmp_path / "umf", umf, cfg, {"audio_feature": "mel"})
    fixed = adapt(tiny_ds, tmp_path / "fixed", _recipe(model=model), umf=tmp_path / "umf")
    with (fixed.run_dir / "losses.csv").open() as f:
        assert all(r["articulation"] == "" for r in csv.DictReader(f))
    weights = load_file(tmp_path / "fixed" / "model.safetensors")
    head = {k: v for k, v in weights.items() if ".articulation." in k}
    assert len(head) == 2
    loaded = dict(umf.umf.named_parameters())  # the fixed UMF's head is saved as it was loaded
    for k, v in head.items():
        assert torch.equal(v, loaded[k[k.index("articulation"):]])

    # Calibration: both avatars' predicted opening is centred on their training frames; only the fixed UMF's
    # branches read the person's mean audio code (`audio_through_opening`), and switched off they read each frame's.
    frames = IdentityFrames(load_dataset(tiny_ds), "mel", cfg.expression_dim)
    windows = frames.audio_windows([int(t) for t in frames.train_indices], cfg.audio)
    for name, has_code in (("scratch", False), ("fixed", True)):
        av = load_avatar(tmp_path / name)
        codes = av.motion.umf.audio_codes(windows)
        assert float(av.motion.predicted_lips(codes, windows).mean()) == pytest.approx(0.0, abs=1e-5)
        assert (av.motion.speaker_code is not None) == has_code
    assert torch.allclose(load_avatar(tmp_path / "fixed").motion.speaker_code, umf.umf.audio_codes(windows).mean(0))
    # The fixed UMF's prediction is scaled by its gain to the tracked opening's spread over the training frames;
    # the scratch head has fitted those frames, so it keeps gain 1.
    tracked = frames.tracked_lips([int(t) for t in frames.train_indices])
    motion = load_avatar(tmp_path / "fixed").motion
    calibrated = motion.predicted_lips(motion.umf.audio_codes(windows), windows)
    centred = motion.umf.lip_shape(motion.umf.audio_codes(windows), windows)
    centred = centred - centred.mean(0)
    torch.testing.assert_close(motion.lip_gain, lip_gain(centred, tracked), rtol=1e-5, atol=0)
    assert torch.allclose(calibrated, centred * motion.lip_gain, atol=1e-6)
    assert load_avatar(tmp_path / "scratch").motion.lip_gain.tolist() == [1.0]
    adapt(tiny_ds, tmp_path / "per_frame", _recipe(model=model, audio_through_opening=False, opening_gain=False),
          umf=tmp_path / "umf")
    per_frame = load_avatar(tmp_path / "per_frame").motion
    assert per_frame.speaker_code is None and per_frame.lip_gain.tolist() == [1.0]


@pytest.mark.parametrize("umf_fixed", [True, False])
def test_lr_adapt_net_sets_the_aligner_and_hook_network_rates_only(tiny_ds, tmp_path, umf_fixed):
    from instag.data.dataset import load_dataset
    from instag.train.adapt import _Adaptation
    from instag.train.frames import IdentityFrames

    recipe = _recipe(model={**TINY_MODEL, "optim": {"lr_adapt_net": 2e-3}})
    umf = None
    if umf_fixed:
        write_umf(tmp_path / "umf", MotionModel(recipe.model), recipe.model, {"audio_feature": "mel"})
        umf = tmp_path / "umf"
    run = _Adaptation(recipe, IdentityFrames(load_dataset(tiny_ds), "mel", 1), umf)
    run.apply_stage(run.stages[-2])  # the alignment stage adds the aligner
    rates = {g["name"]: g["lr"] for g in run.opt_m.param_groups}
    expected = {"hook.nets": 2e-3, "aligner.grids": 5e-3, "aligner.nets": 2e-3}
    if not umf_fixed:
        expected |= {"umf.grids": 5e-3, "umf.nets": 5e-4}
    assert rates == expected


def _resumed_from_step_5(tiny_ds, tmp_path, a):
    """Run `a` again as "b", resumed from its step-5 checkpoint; both avatars' weights must be equal."""
    run_b = tmp_path / "b.run"
    shutil.copytree(a.run_dir, run_b)
    shutil.rmtree(run_b / "checkpoints" / "step_00000010")
    b = adapt(tiny_ds, tmp_path / "b", run_dir=run_b, resume=True)
    assert b.steps_done == 10
    ta, tb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    return run_b


def test_resume_continues_bit_for_bit(tiny_ds, tmp_path):
    a = adapt(tiny_ds, tmp_path / "a", _recipe())
    # Step 5 lies in the alignment stage: the aligner's optimiser groups are rebuilt on resume.
    run_b = _resumed_from_step_5(tiny_ds, tmp_path, a)
    rows_a = (a.run_dir / "losses.csv").read_text().splitlines()
    rows_b = (run_b / "losses.csv").read_text().splitlines()
    # Same losses row for row (the last column, it/s, is a timing).
    assert [r.rsplit(",", 1)[0] for r in rows_a] == [r.rsplit(",", 1)[0] for r in rows_b]


def test_resume_of_a_run_from_a_fixed_umf_continues_bit_for_bit(tiny_ds, tmp_path):
    """`adapt --resume` names no UMF (the Ctrl-C message suggests just that): the run's own checkpoint says it
    started from one, so the fixed UMF stays out of the optimiser and its calibration is the same."""
    model = {**TINY_MODEL, "articulation": True}
    cfg = _recipe(model=model).model
    torch.manual_seed(3)
    write_umf(tmp_path / "umf", MotionModel(cfg), cfg, {"audio_feature": "mel"})
    a = adapt(tiny_ds, tmp_path / "a", _recipe(model=model), umf=tmp_path / "umf")
    _resumed_from_step_5(tiny_ds, tmp_path, a)
    assert load_avatar(tmp_path / "a").meta["motion_calibration"] == load_avatar(tmp_path / "b").meta[
        "motion_calibration"]


def test_stop_saves_a_checkpoint_and_writes_no_avatar(tiny_ds, tmp_path):
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    # The step in progress when the stop comes finishes: 4, the last of the warm-up, so the resumed run starts the
    # alignment stage from a checkpoint whose optimiser has no aligner yet.
    result = adapt(tiny_ds, tmp_path / "av", _recipe(), should_stop=stop)
    assert result.interrupted and result.steps_done == 4
    assert not (tmp_path / "av").exists()
    assert ck.latest_checkpoint(result.run_dir).name == "step_00000004"
    with pytest.raises(InputError, match="--resume"):
        adapt(tiny_ds, tmp_path / "av", _recipe())
    done = adapt(tiny_ds, tmp_path / "av", resume=True)
    assert done.steps_done == 10 and (tmp_path / "av" / "avatar.json").is_file()


def test_wrong_feature_size_is_a_clear_error(tiny_ds, tmp_path):
    model = {**TINY_MODEL, "audio": {**TINY_MODEL["audio"], "feature_dim": 80}}
    with pytest.raises(InputError, match="feature_dim"):
        adapt(tiny_ds, tmp_path / "av", _recipe(model=model))


@pytest.mark.real_data
@pytest.mark.slow
def test_adaptation_on_a_real_clip_lowers_the_photometric_loss(real_data, tmp_path_factory):
    from instag.config.preprocess import PreprocessConfig
    from instag.data.preprocess import preprocess_clip

    root = tmp_path_factory.mktemp("real")
    ds = root / "ds"
    preprocess_clip(real_data / "OpenTalker_video-retalking_5.mp4", ds,
                    PreprocessConfig(size=128, test_from_s=4.0, audio_features=("mel",)))
    recipe = _recipe(
        model={**{k: v for k, v in TINY_MODEL.items() if k != "audio"}, "gaussians": {"init_opacity": 0.5},
               "audio": {"feature_dim": 80, "window": 16, "feature_shift": -50.0, "feature_scale": 25.0}},
        init={"face_points": 3000, "hair_points": 1500, "mouth_points": 200},
        stages={"warmup": 60, "align": 50, "fuse": 10},
        densify={"every": 50, "start": 50, "stop_before_end": 20},
        run={"checkpoint_every": 0, "log_every": 1, "previews": 1, "threads": 1},
    )
    result = adapt(ds, root / "av", recipe)
    with (result.run_dir / "losses.csv").open() as f:
        photo = np.array([float(r["photo"]) for r in csv.DictReader(f)])
    first, last = photo[:10].mean(), photo[-20:].mean()
    assert last < 0.6 * first, (first, last)
    av = load_avatar(root / "av")
    cond = _conditions(av, ds, int(av.drive["frame_index"][0]))
    again = load_avatar(root / "av")
    assert torch.equal(av.render(cond).image, again.render(cond).image)


def test_lip_gain_matches_the_spread_only_on_evidence():
    gen = torch.Generator().manual_seed(0)
    tracked = torch.randn(125, 2, generator=gen)
    tracked -= tracked.mean(0)
    predicted = 2.0 * tracked + torch.randn(125, 2, generator=gen)  # r ≈ 0.9
    predicted -= predicted.mean(0)
    gain = lip_gain(predicted, tracked)
    torch.testing.assert_close(gain, tracked.std(0) / predicted.std(0))
    assert torch.allclose((predicted * gain).std(0), tracked.std(0))  # the dub opens as wide as the person
    noise = torch.randn(125, generator=gen)  # |r| below 2/sqrt(125): keep the head's scale
    noise -= noise.mean()
    assert abs(float(torch.corrcoef(torch.stack([noise, tracked[:, 0]]))[0, 1])) < 2 / 125**0.5
    mixed = torch.stack([noise, predicted[:, 1]], 1)
    assert lip_gain(mixed, tracked)[0] == 1.0 and lip_gain(mixed, tracked)[1] == gain[1]
    assert lip_gain(-predicted, tracked).tolist() == [1.0, 1.0]  # read backwards: no evidence either
    assert lip_gain(torch.zeros(125, 2), tracked).tolist() == [1.0, 1.0]

