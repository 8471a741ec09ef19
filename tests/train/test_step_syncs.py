"""A training step's own code never reads the device back. On CUDA every such read (`.item()`, `bool(t)`,
`float(t)`, a boolean-mask index, `nonzero`) makes the host wait for all queued work; on the CPU they cost nothing,
so they would creep back unseen. Here a dispatch mode records the ops that read data back, or whose result size
is data, when the step's code (train.step, train.frames, train.loop, train.losses, gaussians.field, and the motion
model's composition in motion.model) calls them directly. The rasteriser's own binning is not theirs to answer
for."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import instag
from instag.config.recipe import from_dict
from instag.data.dataset import load_dataset
from instag.gaussians.field import GaussianField
from instag.train.adapt import _Adaptation
from instag.train.frames import training_frames
from instag.train.loop import optimise
from instag.train.recipe import AdaptRecipe
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset

aten = torch.ops.aten
READS_BACK = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.item.default, aten.nonzero.default,
              aten.masked_select.default, aten._unique2.default, aten.unique_dim.default,
              aten.unique_consecutive.default, aten.equal.default}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
PACKAGE = Path(instag.__file__).parent
WATCHED = {PACKAGE / "train" / "step.py", PACKAGE / "train" / "frames.py", PACKAGE / "train" / "loop.py",
           PACKAGE / "train" / "losses.py", PACKAGE / "gaussians" / "field.py", PACKAGE / "motion" / "model.py"}
TORCH = Path(torch.__file__).parent

RECIPE = {"audio_feature": "mel", "model": {**TINY_MODEL, "articulation": True}, "init": TINY_INIT, "seed": 3,
          "loss": {"lambda_lips": 1.0, "lambda_lip_depth": 1.0, "lambda_depth_offset": 1.0},
          "stages": {"warmup": 1, "align": 3, "fuse": 1}, "densify": {"every": 0}}


def _reads_back(func, args) -> bool:
    if func in READS_BACK:
        return True
    # A boolean mask as an index: its number of True entries sizes the result, so it is read back first.
    return func in INDEXING and any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])


def _call_site() -> tuple[Path, int] | None:
    """File and line of the code that called the op: the first frame outside torch (its Python wrappers of tensor
    methods, dynamo's wrappers) and this mode. None for torch.optim's own ops: the reads there are of the step
    counts, which a (not capturable) optimiser keeps on the host."""
    frame = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(TORCH / "optim"):
            return None
        if path != Path(__file__) and not path.is_relative_to(TORCH):
            return path, frame.f_lineno
        frame = frame.f_back
    return None


class DeviceReads(TorchDispatchMode):
    """Records "op at file:line" for each op that reads the device back, called from a `WATCHED` file."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _reads_back(func, args):
            site = _call_site()
            if site is not None and site[0] in WATCHED:
                self.seen.append(f"{func} at {site[0].relative_to(PACKAGE.parent)}:{site[1]}")
        return func(*args, **(kwargs or {}))


def test_the_guard_sees_reads_back_in_watched_code():
    field = GaussianField(4)
    with DeviceReads() as reads:
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
        with DeviceReads() as reads:
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
