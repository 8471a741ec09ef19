"""The lip stage: the audio nets learn the tracked lip shape across people, and pre-training keeps them fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from instag.config.recipe import from_dict
from instag.errors import InputError
from instag.motion.model import MotionModel
from instag.train.lips import fit_lip_predictor, lip_audio_nets, load_lip_clip, predict_lips
from instag.train.pretrain import pretrain
from instag.train.recipe import LipStageConfig, PretrainRecipe
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset

MODEL = {**TINY_MODEL, "articulation": True, "lip_coeffs": ["mouth_open", "mouth_width"]}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("lips")
    return [write_dataset(root / f"ds{i}", frames=16, seed=i) for i in range(3)]


def _recipe(**over) -> PretrainRecipe:
    return from_dict(PretrainRecipe, {"audio_feature": "mel", "model": MODEL, "init": TINY_INIT, "seed": 1,
                                      "stages": {"face": 2, "mouth": 1, "joint": 1}, "densify": {"every": 0},
                                      "run": {"checkpoint_every": 0, "log_every": 1, "previews": 0, "threads": 1},
                                      **over})


def test_lip_stage_fits_the_lip_shape_and_touches_nothing_else(datasets):
    recipe = _recipe()
    cfg = recipe.model
    clips = [load_lip_clip(d, "mel", cfg) for d in datasets]
    assert clips[0].lips.shape == (16, 2)
    assert torch.allclose(clips[0].lips[clips[0].frames].mean(0), torch.zeros(2), atol=1e-5)
    torch.manual_seed(0)
    motion = MotionModel(cfg)
    face_before = {k: v.clone() for k, v in motion.umf.face.state_dict().items()}
    before = [(predict_lips(motion.umf, c, cfg) - c.lips).square().mean() for c in clips]
    losses = fit_lip_predictor(motion.umf, clips, cfg, LipStageConfig(steps=150, batch=16, lr=3e-3), seed=0)
    after = [(predict_lips(motion.umf, c, cfg) - c.lips).square().mean() for c in clips]
    assert len(losses) == 150 and sum(losses[-20:]) < sum(losses[:20])
    assert sum(after) < 0.5 * sum(before)
    assert all(torch.equal(v, motion.umf.face.state_dict()[k]) for k, v in face_before.items())
    assert not any(p.requires_grad for net in lip_audio_nets(motion.umf) for p in net.parameters())


def test_pretraining_keeps_the_lip_stage_audio_nets_and_resume_skips_it(datasets, tmp_path):
    recipe = _recipe(lips={"steps": 20, "batch": 8})
    events = []
    pretrain(datasets, tmp_path / "run", recipe, callback=events.append)
    assert [e.stage for e in events[:20]] == ["lips"] * 20
    ckpts = sorted((tmp_path / "run" / "rank0" / "checkpoints").iterdir())
    first, last = (load_file(str(c / "tensors.safetensors")) for c in (ckpts[0], ckpts[-1]))
    assert ckpts[0].name == "step_00000000"
    audio = [k for k in first if ".audio_encoder." in k or ".articulation." in k or ".audio_smoother." in k]
    assert audio and all(torch.equal(first[k], last[k]) for k in audio)
    assert any(not torch.equal(first[k], last[k]) for k in first if ".umf.face." in k)
    again = []
    pretrain(datasets, tmp_path / "run", resume=True, callback=again.append)
    assert "lips" not in {e.stage for e in again}


def test_lip_stage_needs_the_articulation_head():
    with pytest.raises(InputError, match="model.articulation"):
        _recipe(model={**MODEL, "articulation": False}, lips={"steps": 5})
