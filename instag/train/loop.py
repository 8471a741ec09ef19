"""The one training loop of adaptation and pre-training: stages, learning-rate decay, the optimisation step,
densify/prune and opacity resets, the losses log, previews, checkpoints, progress and a clean stop (Ctrl-C).

A workflow (`instag.train.adapt`, `instag.train.pretrain`) builds a `TrainingRun` (its nets, Gaussians and
optimisers, fresh or restored from a checkpoint) and hands it to `train`; the loop is the only place that
decides what happens within a step and in what order, so both workflows keep the same behaviour."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from instag.motion.fields import PersonalizedField
from instag.motion.model import MotionModel
from instag.render.avatar import AvatarRender
from instag.train import checkpoint as ck
from instag.train.recipe import RunConfig
from instag.train.run import (
    KEEP_CHECKPOINTS,
    Callback,
    ProgressEvent,
    RunLog,
    StopFlag,
    preview_steps,
    save_preview,
    save_recipe,
    set_learning_rates,
)
from instag.train.schedules import Stage, densify_due, opacity_reset_due, stage_at
from instag.train.step import Identity, accumulate_densify, frame_loss


class TrainingRun(Protocol):
    """One run's trainable state, as a workflow builds it."""

    recipe: Any  # an AdaptRecipe or a PretrainRecipe: model, loss, lr, densify and run are read
    motion: MotionModel
    stages: list[Stage]
    total: int
    gen: torch.Generator  # draws frames (and the articulation term's extra frames)
    opt_g: torch.optim.Optimizer  # the Gaussians'
    opt_m: torch.optim.Optimizer  # the motion nets'

    @property
    def identities(self) -> list[Identity]: ...  # those this process trains

    def apply_stage(self, stage: Stage) -> None: ...  # which parameters train in `stage`

    def pick(self, step: int) -> tuple[Identity, list[PersonalizedField]]:
        """The identity trained at global iteration `step`, and the other identities' residual fields (the
        negative contrast's; none in adaptation)."""
        ...

    def sync(self, stop: bool) -> bool | Tensor:
        """Between backward and the optimiser steps: make the gradients those every process applies (an all-reduce
        under torchrun) and agree on stopping. Returns whether to stop after this step: a bool, or under torchrun
        the agreed vote as a device scalar, which the loop reads only where it waits on the device anyway."""
        ...

    def tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]: ...  # checkpoint tensors and JSON state


@dataclass
class LoopOutputs:
    """Where the loop writes and whom it tells: checkpoints under `checkpoints` (a run dir, or a rank's dir);
    losses and previews only where `log` is set (rank 0)."""

    checkpoints: Path
    log: RunLog | None
    previews: Path | None
    callback: Callback | None = None
    should_stop: StopFlag | None = None
    checkpoint_state: dict[str, Any] | None = None  # extra JSON state in every checkpoint


def start_fresh(run_dir: Path, recipe: Any) -> None:
    """An empty run dir holding only the resolved recipe."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    save_recipe(run_dir, recipe)


def use_threads(run: RunConfig) -> None:
    """`run.threads` (0: torch's default, all cores) for this process's CPU work."""
    if run.threads > 0:
        torch.set_num_threads(run.threads)


def optimise(run: TrainingRun, identity: Identity, t: int, stage: Stage, others: list[PersonalizedField],
             stop: bool = False) -> tuple[Tensor, dict[str, Tensor], AvatarRender, bool | Tensor]:
    """One optimisation step on `identity`'s frame `t`: loss, backward, densification statistics, gradient sync,
    optimiser steps. → (loss, its logged terms (detached scalars), the frame's render, stop as `sync` gives it).
    `instag bench train` times this."""
    cfg = run.recipe.model
    loss, logged, out = frame_loss(identity, run.motion, t, stage, cfg, run.recipe.loss, others, run.gen)
    run.opt_g.zero_grad(set_to_none=True)
    run.opt_m.zero_grad(set_to_none=True)
    loss.backward()
    accumulate_densify(identity, out, stage)
    stop = run.sync(stop)
    run.opt_g.step()
    run.opt_m.step()
    return loss, logged, out, stop


def train(run: TrainingRun, start: int, io: LoopOutputs) -> tuple[int, bool]:
    """Iterations `start` … `run.total` − 1, then a final checkpoint. A stop request ends the run after the
    current step. → (iterations done, interrupted)."""
    recipe = run.recipe
    total = run.total
    previews = preview_steps(total, recipe.run.previews)
    stage = None
    step = start
    interrupted = False
    logged: dict[str, float] = {}  # the terms of the latest step read
    while step < total:
        s = stage_at(run.stages, step)
        if s is not stage:
            stage = s
            run.apply_stage(stage)
        set_learning_rates([run.opt_g, run.opt_m], step, total, recipe.lr)
        identity, others = run.pick(step)
        train_frames = identity.frames.train_indices
        t = int(train_frames[int(torch.randint(len(train_frames), (1,), generator=run.gen))])
        _, terms, out, stop = optimise(run, identity, t, stage, others,
                                       io.should_stop is not None and io.should_stop())
        notes = []
        if densify_due(step, total, stage, recipe.densify):
            notes.append(_densify(run, stage))
        if opacity_reset_due(step, total, stage, recipe.densify):
            for ident in run.identities:
                ident.face.reset_opacity(run.opt_g, recipe.densify.opacity_reset_ceiling)
        step += 1
        rate = 0.0
        # Reading a device value waits for the device: only on the steps the log and the progress report show.
        read_due = step % recipe.run.log_every == 0 or step == total or not logged
        if read_due:
            logged = {k: float(v) for k, v in terms.items()}
        if io.log is not None:
            rate = io.log.rate()
            if step % io.log.every == 0 or step == total:
                io.log.write({"step": step, "stage": stage.name, "identity": identity.name, **logged,
                              "n_face": identity.face.num_gaussians, "n_mouth": identity.mouth.num_gaussians,
                              "it_per_s": rate})
        if io.previews is not None and step in previews:
            save_preview(io.previews / f"step_{step:08d}_{identity.name}.png", out.image.cpu(),
                         identity.frames.target(t).image.cpu())
        if recipe.run.checkpoint_every > 0 and step % recipe.run.checkpoint_every == 0 and step < total:
            save_checkpoint(run, io, step)
            notes.append(f"checkpoint {step}")
        if io.callback is not None:
            io.callback(ProgressEvent(step, total, stage.name, logged, rate, "; ".join(notes) or None))
        if _stopping(stop, read_due):
            interrupted = step < total
            break
    save_checkpoint(run, io, step)
    return step, interrupted


def _stopping(stop: bool | Tensor, read_due: bool) -> bool:
    """A host flag counts at once. A vote agreed on the device (several ranks) is read only on `read_due` steps,
    which every rank shares, so all ranks stop after the same step without a wait on the device in the others."""
    if isinstance(stop, Tensor):
        return read_due and bool(stop)
    return stop


def save_checkpoint(run: TrainingRun, io: LoopOutputs, step: int) -> None:
    """The run's state after `step` iterations; only the newest `KEEP_CHECKPOINTS` stay."""
    tensors, state = run.tensors()
    ck.save_checkpoint(ck.checkpoint_dir(io.checkpoints, step), tensors,
                       {"step": step, **state, **(io.checkpoint_state or {})})
    ck.prune_checkpoints(io.checkpoints, KEEP_CHECKPOINTS)


def _densify(run: TrainingRun, stage: Stage) -> str:
    """Densify and prune the branches that train, of every identity; → the progress note."""
    cfg = run.recipe.model
    parts = []
    several = len(run.identities) > 1
    for ident in run.identities:
        for trains, name, branch, extent in ((stage.face, "face", ident.face, ident.face_extent),
                                             (stage.mouth, "mouth", ident.mouth, ident.mouth_extent)):
            if trains:
                r = branch.densify_and_prune(run.opt_g, cfg.gaussians, extent)
                who = f"{ident.name} {name}" if several else name
                parts.append(f"{who} +{r.cloned} cloned +{r.split} split −{r.pruned} pruned → {r.total}")
    return "densify: " + "; ".join(parts)
