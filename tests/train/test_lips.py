"""The lip stage: the audio nets learn the tracked lip shape across people, and pre-training keeps them fixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file

from instag.audio.live_context import CPU_FEATURE_HOP, LOOKAHEAD_FRAMES, context_end
from instag.config.model import ModelConfig
from instag.config.recipe import from_dict
from instag.data.dataset import load_dataset
from instag.errors import InputError
from instag.motion.audio import frame_audio_windows
from instag.motion.fields import LIVE_HEAD_WEIGHT
from instag.motion.model import MotionModel
from instag.motion.umf_file import load_umf
from instag.train.lips import (
    LipClip,
    fit_lip_predictor,
    fit_lip_readout,
    fit_live_readout,
    lip_audio_nets,
    live_feature_model,
    live_windows,
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
        return LipClip(f"c{i}", feats, lips, np.arange(200), Path(f"c{i}"))

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
    assert set(new) - set(old) == {f"umf.{r}.{k}" for r in ("lip_readout", "lip_readout_live")
                                   for k in ("in_mean", "in_scale", "weight", "bias", "fitted")} | {
                                       "umf.lip_readout_live.gain"}
    assert all(torch.equal(v, new[k]) for k, v in old.items())
    assert float(new["umf.lip_readout.fitted"]) == 1.0 and new["umf.lip_readout.weight"].abs().sum() > 0
    doc = json.loads((tmp_path / "new.json").read_text())
    assert doc["config"]["lip_readout"] is True and doc["lip_readout"]["alpha"] == 100.0
    # The synthetic datasets have no sound to run the live mode's feature model on: the live read-out stays
    # unfitted, and the JSON and the card say why.
    assert float(new["umf.lip_readout_live.fitted"]) == 0.0 and doc["live_readout_fit"]["fitted"] is False
    assert "live mode computes" in doc["live_readout_fit"]["not_fitted"]
    assert "live read-out: not fitted" in (tmp_path / "new_MODEL_CARD.md").read_text()
    # --keep-readout fits the live read-out alone: the read-out stays to the bit, and needs to be there.
    refit_lip_readout(tmp_path / "new", datasets, tmp_path / "newer", alpha=5.0, keep_readout=True)
    newer = load_file(str(tmp_path / "newer.safetensors"))
    assert newer.keys() == new.keys() and all(torch.equal(newer[k], v) for k, v in new.items() if ".lip_readout." in k)
    assert json.loads((tmp_path / "newer.json").read_text())["lip_readout"]["alpha"] == 100.0  # its own account
    with pytest.raises(InputError, match="no fitted lip read-out to keep"):
        refit_lip_readout(tmp_path / "old", datasets, tmp_path / "never", alpha=5.0, keep_readout=True)
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


def _with_sound(path: Path, seed: int) -> Path:
    """A synthetic dataset given speech-like sound and features marked as librosa's log-mel: what the live read-out's
    fit needs besides the lips. Every clip says the same syllables under its own noise, so a map fitted on 16-frame
    clips reaches another's."""
    from instag.audio import features as af
    from instag.bench.render import speech_like

    noise = 0.01 * np.random.default_rng(seed).standard_normal(int(16 / 25 * 16000))
    soundfile.write(path / "audio.wav", (speech_like(16 / 25) + noise).astype(np.float32), 16000)
    meta = json.loads((path / "meta.json").read_text())
    meta["audio"]["features"]["mel"]["source"] = af.feature_source("mel", None)
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_the_live_read_out_is_fitted_on_the_live_modes_windows(datasets, tmp_path, device):
    cfg = _recipe().model
    torch.manual_seed(0)
    umf = MotionModel(cfg).umf.to(device)  # the windows are made on the CPU wherever the nets are
    clips = [load_lip_clip(d, "mel", cfg) for d in datasets]
    front, why = live_feature_model(clips, "mel")
    assert front is None and "the live mode computes 'librosa log-mel (dB)'" in why  # no sound, no source
    sounded = [_with_sound(write_dataset(tmp_path / f"s{i}", frames=16, seed=i), seed=i) for i in range(4)]
    clips = [load_lip_clip(d, "mel", cfg) for d in sounded]
    assert live_feature_model(clips, "mel") == (None, None)  # mel needs no model

    # Lip shapes that are a linear map of the live windows' read-out inputs: fitted on three clips, it predicts
    # a fourth it never saw; frames whose look-ahead runs past the clip are left out.
    gen = torch.Generator().manual_seed(0)
    truth = torch.randn(umf.lip_readout_live.weight.shape, generator=gen)
    windows = {}
    for c in clips:
        audio, _ = load_dataset(c.path).audio()
        groups = list(live_windows(audio, 25.0, list(range(16)), 16, "mel", None, cfg.audio, cfg.audio.feature_dim))
        frames = [t for g, _ in groups for t in g]
        assert frames == [t for t in range(16) if context_end(t, LOOKAHEAD_FRAMES, CPU_FEATURE_HOP) < 16]
        windows[c.name] = torch.cat([w for _, w in groups])
        c.lips = torch.zeros(16, 2)
        c.lips[frames] = umf.lip_readout.inputs(windows[c.name]) @ truth  # inputs: no weights, any device
    assert fit_live_readout(umf, clips[:3], cfg, 1.0, "mel", None) == 3 * len(frames)
    assert float(umf.lip_readout_live.fitted) == 1.0 and float(umf.lip_readout.fitted) == 0.0
    # Its gain: how much more widely the file prediction (here the head's alone) spreads than the live one.
    gain = umf.lip_readout_live.gain.cpu()
    assert torch.isfinite(gain).all() and (gain > 0).all() and not torch.equal(gain, torch.ones(2))
    read = umf.lip_readout_live(windows[clips[3].name].to(device)).cpu()
    assert all(np.corrcoef(read[:, j], clips[3].lips[frames, j])[0, 1] > 0.95 for j in range(2))


def test_live_frames_read_the_live_read_out_once_it_is_fitted():
    cfg = _recipe().model
    torch.manual_seed(0)
    motion = MotionModel(cfg)
    umf = motion.umf
    windows = torch.randn(5, cfg.audio.smooth_window, cfg.audio.window, cfg.audio.feature_dim)
    code = umf.audio_codes(windows)
    head = umf.articulation(code)
    for readout in (umf.lip_readout, umf.lip_readout_live):
        readout.weight.normal_()
    umf.lip_readout.fitted.fill_(1.0)
    file_lips = umf.lip_shape(code, windows)
    torch.testing.assert_close(file_lips, 0.5 * (head + umf.lip_readout(windows)))
    # Unfitted, the live read-out takes no part: a live frame's lips are a file frame's.
    assert torch.equal(umf.lip_shape(code, windows, live=True), file_lips)
    assert torch.equal(umf.live_gain(), torch.ones(2))
    umf.lip_readout_live.fitted.fill_(1.0)
    umf.lip_readout_live.gain.copy_(torch.tensor([1.5, 0.5]))
    live = umf.lip_shape(code, windows, live=True)
    torch.testing.assert_close(live, LIVE_HEAD_WEIGHT * head + (1 - LIVE_HEAD_WEIGHT) * umf.lip_readout_live(windows))
    assert torch.equal(umf.live_gain(), torch.tensor([1.5, 0.5]))
    # Calibrated, the live shape's spread about the person's bias is scaled by the gain; a file's is not.
    bias, gain = torch.tensor([0.3, -0.2]), torch.tensor([2.0, 1.0])
    motion.set_calibration(None, bias, gain)
    torch.testing.assert_close(motion.predicted_lips(code, windows, live=True),
                               (live - bias) * torch.tensor([1.5, 0.5]) * gain)
    torch.testing.assert_close(motion.predicted_lips(code, windows), (file_lips - bias) * gain)
    assert not torch.allclose(live, file_lips)
    assert torch.equal(umf.lip_shape(code, windows), file_lips)  # files keep the read-out
