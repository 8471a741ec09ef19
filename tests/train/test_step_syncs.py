"""A training step's own code never reads the device back. On CUDA every such read (`.item()`, `bool(t)`,
`float(t)`, a boolean-mask index, `nonzero`) makes the host wait for all queued work; on the CPU they cost nothing,
so they would creep back unseen. Here a dispatch mode records the ops that read data back, or whose result size
is data, when the step's code (train.step, train.frames, train.loop, train.losses, gaussians.field, and the motion
model's composition in motion.model) calls them directly. The rasteriser's binning reads once, by design
(tests/kernels/test_rasterize.py)."""

from __future__ import annotations

import pytest
import torch
from instag_testing import PACKAGE, DeviceReads

from instag.config.recipe import from_dict
from instag.data.dataset import load_dataset
from instag.gaussians.field import GaussianField
from instag.train.adapt import _Adaptation
from instag.train.frames import training_frames
from instag.train.loop import optimise
from instag.train.recipe import AdaptRecipe
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset

WATCHED = {PACKAGE / "train" / "step.py", PACKAGE / "train" / "frames.py", PACKAGE / "train" / "loop.py",
           PACKAGE / "train" / "losses.py", PACKAGE / "gaussians" / "field.py", PACKAGE / "motion" / "model.py"}

RECIPE = {"audio_feature": "mel", "model": {**TINY_MODEL, "articulation": True}, "init": TINY_INIT, "seed": 3,
          "loss": {"lambda_lips": 1.0, "lambda_lip_depth": 1.0, "lambda_depth_offset": 1.0},
          "stages": {"warmup": 1, "align": 3, "fuse": 1}, "densify": {"every": 0}}


def test_the_guard_sees_reads_back_in_watched_code():
    field = GaussianField(4)
    with DeviceReads(WATCHED) as reads:
        field.extent()  # float(tensor)
        field.prune(torch.tensor([True, False, True, True]), None)  # boolean-mask index
    assert any("_local_scalar_dense" in s for s in reads.seen), reads.seen
    assert any("aten.index.Tensor" in s for s in reads.seen), reads.seen


def test_a_training_step_reads_nothing_back(tmp_path):
    recipe = from_dict(AdaptRecipe, RECIPE)
    frames = training_frames(load_dataset(write_dataset(tmp_path / "ds")), "mel", recipe.model, torch.device("cpu"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = _Adaptation(recipe, frames, None)
        stage = next(s for s in run.stages if s.aligner)  # geometry prior, lips, articulation: every term but contrast
        run.apply_stage(stage)
        ident, train = run.identity, frames.train_indices
        optimise(run, ident, int(train[0]), stage, [])  # the first step finds the lip Gaussians once
        with DeviceReads(WATCHED) as reads:
            _, logged, _, _ = optimise(run, ident, int(train[1]), stage, [])
    finally:
        torch.set_num_threads(threads)
    assert {"lips", "lip_depth", "articulation", "depth", "normal", "depth_offset"} <= logged.keys()
    assert not reads.seen, "\n".join(reads.seen)


@pytest.mark.cuda  # selected by `pytest -m cuda` (scripts/gpu_check.py)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_frame_is_copied_in_without_waiting_on_cuda(tmp_path):
    # What the CPU guard cannot see: a blocking host-to-device copy.
    recipe = from_dict(AdaptRecipe, RECIPE)
    frames = training_frames(load_dataset(write_dataset(tmp_path / "ds")), "mel", recipe.model, torch.device("cuda"))
    torch.cuda.set_sync_debug_mode("error")
    try:
        cond, gt = frames.condition(1, recipe.model.audio), frames.target(1)
        lips, windows = frames.tracked_lips([1, 2, 3]), frames.audio_windows([2, 3], recipe.model.audio)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(x.is_cuda for x in (cond.audio_windows, cond.background, cond.K, gt.image, gt.face, lips, windows))
