"""Canonical Gaussians' placement: `cancel_mean_motion` puts the moved Gaussians back where init put them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from instag.config.recipe import from_dict
from instag.data.dataset import load_dataset
from instag.gaussians.field import Region
from instag.motion import MotionModel
from instag.train.frames import IdentityFrames
from instag.train.init import cancel_mean_motion, init_gaussians
from instag.train.recipe import AdaptRecipe
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset

OFFSET = torch.tensor([0.012, -0.006, 0.015])  # metres: a pre-trained field's constant offset, as large as the shipped UMF's
LOG_SCALE_SHIFT = 0.3


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> IdentityFrames:
    path = write_dataset(tmp_path_factory.mktemp("init") / "ds", test_from=6)
    return IdentityFrames(load_dataset(path), "mel", from_dict(AdaptRecipe, {"model": TINY_MODEL}).model.expression_dim)


def _offset_motion(cfg) -> MotionModel:
    """A tiny motion model whose branches add a constant offset (and a log-scale shift) to their random motion."""
    torch.manual_seed(0)
    motion = MotionModel(cfg, with_aligner=True)
    with torch.no_grad():
        motion.umf.face.mlp[-1].bias[:3] += OFFSET
        motion.umf.face.mlp[-1].bias[3:6] += LOG_SCALE_SHIFT
        motion.umf.mouth.mlp[-1].bias += OFFSET
    return motion


def _mean_moved(face, mouth, motion, frames, cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Face means, face log scales and mouth means after the motion, averaged over the training frames."""
    train = [int(t) for t in frames.train_indices]
    expression = frames.expressions[train].mean(dim=0)
    out = [torch.zeros_like(face.means), torch.zeros_like(face.log_scales), torch.zeros_like(mouth.means)]
    with torch.no_grad():
        for t in train:
            m = motion(face.means, face.region_index(Region.LIPS), mouth.means, frames.audio_windows([t], cfg.audio)[0],
                       expression, lip_shape=torch.zeros(1))
            for acc, value in zip(out, (face.means + m.face.d_means, face.log_scales + m.face.d_log_scales,
                                        mouth.means + m.mouth_d_means), strict=True):
                acc += value / len(train)
    return out[0], out[1], out[2]


def test_cancel_mean_motion_puts_the_moved_gaussians_back_on_their_placement(frames):
    recipe = from_dict(AdaptRecipe, {"model": TINY_MODEL, "init": TINY_INIT})
    cfg = recipe.model
    face, mouth = init_gaussians(frames, recipe.init, cfg.gaussians, torch.Generator().manual_seed(0))
    placed = (face.means.detach().clone(), face.log_scales.detach().clone(), mouth.means.detach().clone())
    motion = _offset_motion(cfg)

    moved = _mean_moved(face, mouth, motion, frames, cfg)
    gap_before = [float((a - b).norm(dim=-1).mean()) for a, b in zip(moved, placed, strict=True)]
    assert gap_before[0] > 0.015 and gap_before[2] > 0.015 and gap_before[1] > 0.4  # the offset is there

    before, after = cancel_mean_motion(face, mouth, motion, frames, cfg.audio)
    assert before > 0.015 and after < 0.2 * before
    moved = _mean_moved(face, mouth, motion, frames, cfg)
    gap_after = [float((a - b).norm(dim=-1).mean()) for a, b in zip(moved, placed, strict=True)]
    assert gap_after[0] < 0.1 * gap_before[0] and gap_after[2] < 0.1 * gap_before[2]
    assert gap_after[1] < 0.1 * gap_before[1]
    # The canonical Gaussians moved against the offset; nothing else about them changed.
    shift = (face.means.detach() - placed[0]).mean(dim=0)
    assert np.allclose(shift.numpy(), -OFFSET.numpy(), atol=0.004)
    assert face.num_gaussians == placed[0].shape[0] and mouth.num_gaussians == placed[2].shape[0]
