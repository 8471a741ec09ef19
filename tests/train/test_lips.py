"""The lip stage: the audio nets learn the tracked lip shape across people, and pre-training keeps them fixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from instag.config.model import ModelConfig
from instag.config.recipe import from_dict
from instag.errors import InputError
from instag.motion.audio import frame_audio_windows
from instag.motion.model import MotionModel
from instag.motion.umf_file import load_umf
from instag.train.lips import (
    LipClip,
    fit_lip_predictor,
    fit_lip_readout,
    lip_audio_nets,
    load_lip_clip,
    predict_lips,
)
from instag.train.pretrain import export_umf, pretrain
from instag.train.recipe import LipStageConfig, PretrainRecipe
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset
from instag.train.umf import refit_lip_readout

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


def test_the_read_out_reads_each_neighbours_own_feature_steps():
    cfg = _recipe().model
    readout = MotionModel(cfg).umf.lip_readout
    t, k, d = 30, 4, cfg.audio.feature_dim  # mel: four steps a frame
    # Step s of frame f holds f + s / 10 in every channel, so a frame's two mid steps average to f + 0.15.
    feats = (torch.arange(t)[:, None, None] + torch.arange(k)[None, :, None] / 10).float().expand(t, k, d)
    windows = torch.stack([frame_audio_windows(feats, i, cfg.audio) for i in (0, 12)])
    got = readout.inputs(windows).reshape(2, -1, d)[..., 0]
    c = readout.context
    assert c == 1  # the tiny smoothing window (4 frames) holds one neighbour each side
    expected = torch.tensor([[0.0, 0.0, 1.0], [11.0, 12.0, 13.0]]) + 0.15  # frames before the clip repeat frame 0
    torch.testing.assert_close(got, expected)


def test_the_read_out_is_fitted_in_closed_form_and_then_averaged_with_the_head(datasets):
    cfg = _recipe().model
    torch.manual_seed(0)
    umf = MotionModel(cfg).umf
    clips = [load_lip_clip(d, "mel", cfg) for d in datasets]
    head = [umf.articulation(umf.clip_lips(c.features, list(range(16)), cfg.audio)[0]) for c in clips]
    # Unfitted, it takes no part.
    assert all(torch.equal(predict_lips(umf, c, cfg), h) for c, h in zip(clips, head, strict=True))

    # Lip shapes that are a linear map of the read-out's inputs (plus noise): fitted on three clips, it predicts a
    # fourth it never saw.
    gen = torch.Generator().manual_seed(0)
    truth = torch.randn(umf.lip_readout.weight.shape, generator=gen)

    def clip(i: int) -> LipClip:
        feats = torch.randn(200, 4, cfg.audio.feature_dim, generator=gen)
        windows = torch.stack([frame_audio_windows(feats, t, cfg.audio) for t in range(200)])
        lips = umf.lip_readout.inputs(windows) @ truth + 0.1 * torch.randn(200, 2, generator=gen)
        return LipClip(f"c{i}", feats, lips, np.arange(200))

    synthetic = [clip(i) for i in range(4)]
    fit_lip_readout(umf, synthetic[:3], cfg, alpha=1.0)
    assert float(umf.lip_readout.fitted) == 1.0 and not list(umf.lip_readout.parameters())
    unseen = synthetic[3]
    windows = torch.stack([frame_audio_windows(unseen.features, t, cfg.audio) for t in range(200)])
    read = umf.lip_readout(windows)
    assert all(np.corrcoef(read[:, j], unseen.lips[:, j])[0, 1] > 0.95 for j in range(2))
    # Fitted, the predicted lip shape is the mean of the head's and the read-out's.
    codes, lips = umf.clip_lips(unseen.features, list(range(200)), cfg.audio)
    torch.testing.assert_close(lips, 0.5 * (umf.articulation(codes) + read))


def test_a_umf_without_a_read_out_gains_one_and_keeps_its_other_weights(datasets, tmp_path):
    recipe = _recipe(model={**MODEL, "lip_readout": False}, lips={"steps": 5, "batch": 4})
    pretrain(datasets, tmp_path / "run", recipe)
    export_umf(tmp_path / "run", tmp_path / "old")
    refit_lip_readout(tmp_path / "old", datasets, tmp_path / "new", alpha=100.0)
    old, new = load_file(str(tmp_path / "old.safetensors")), load_file(str(tmp_path / "new.safetensors"))
    assert set(new) - set(old) == {f"umf.lip_readout.{k}" for k in ("in_mean", "in_scale", "weight", "bias", "fitted")}
    assert all(torch.equal(v, new[k]) for k, v in old.items())
    assert float(new["umf.lip_readout.fitted"]) == 1.0 and new["umf.lip_readout.weight"].abs().sum() > 0
    doc = json.loads((tmp_path / "new.json").read_text())
    assert doc["config"]["lip_readout"] is True and doc["lip_readout"]["alpha"] == 100.0
    assert doc["lip_readout"]["refitted_from"]["umf"] == "old.safetensors"
    assert doc["iterations"] == json.loads((tmp_path / "old.json").read_text())["iterations"]
    assert "fitted afterwards onto the weights of `old.safetensors`" in (tmp_path / "new_MODEL_CARD.md").read_text()
    motion = MotionModel(from_dict(ModelConfig, doc["config"]))
    load_umf(tmp_path / "new", motion, motion_cfg := from_dict(ModelConfig, doc["config"]))
    assert motion_cfg.lip_readout and float(motion.umf.lip_readout.fitted) == 1.0
    with pytest.raises(InputError, match="no articulation head"):
        pretrain(datasets, tmp_path / "bare", _recipe(model={**MODEL, "articulation": False}, lips={"steps": 0}))
        export_umf(tmp_path / "bare", tmp_path / "bare_umf")
        refit_lip_readout(tmp_path / "bare_umf", datasets, tmp_path / "never", alpha=100.0)
