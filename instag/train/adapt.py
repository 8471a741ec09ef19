"""Motion-aligned adaptation (`instag adapt`): a new person from a few seconds of video.

The UMF (pre-trained, or fresh without one) drives the person's canonical Gaussians. Stages (recipe `stages`):
warm-up (Gaussians, UMF, hook; the aligner is exactly the identity and stays out of the optimiser), alignment
(the aligner and the geometry prior join; densify and prune), fuse (colours and opacities only). The result is
an avatar dir (instag.avatar). Checkpoints let `resume=True` continue bit-for-bit.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from pathlib import Path

import numpy as np
import torch

import instag
from instag.audio.sync import is_evidence
from instag.avatar.bundle import save_avatar
from instag.config.model import ModelConfig
from instag.config.recipe import to_dict
from instag.data.dataset import load_dataset
from instag.errors import InputError
from instag.gaussians.field import GaussianField
from instag.machine import resolve_device
from instag.motion.model import MotionModel
from instag.motion.umf_file import load_umf
from instag.render.plate import torso_layer
from instag.render.views import view_range
from instag.train import checkpoint as ck
from instag.train.frames import IdentityFrames, training_frames
from instag.train.init import cancel_mean_motion, init_gaussians
from instag.train.loop import LoopOutputs, start_fresh, train, use_threads
from instag.train.recipe import AdaptRecipe
from instag.train.run import (
    Callback,
    RunLog,
    RunResult,
    StopFlag,
    add_motion_groups,
    gaussian_optimizer,
    load_run_recipe,
    motion_optimizer,
    set_field_trainable,
    set_trainable,
)
from instag.train.schedules import adapt_stages
from instag.train.step import Identity
from instag.train.umf import with_umf_sizes


def default_run_dir(avatar: Path) -> Path:
    return avatar.with_name(avatar.name + ".run")


class _Adaptation:
    """The state of one adaptation run (built fresh or from a checkpoint)."""

    def __init__(self, recipe: AdaptRecipe, frames: IdentityFrames, umf: Path | None, fresh: bool = True) -> None:
        """fresh=False: the state is about to be restored from a checkpoint, so the placement is not worth doing."""
        self.recipe = recipe
        self.device = frames.device
        cfg = recipe.model
        torch.manual_seed(recipe.seed)
        self.gen = torch.Generator().manual_seed(recipe.seed)
        self.motion = MotionModel(cfg, with_aligner=True)
        self.umf_meta = load_umf(umf, self.motion, cfg) if umf else None
        self.motion.to(self.device)
        self._calibrate(frames)
        face, mouth = (f.to(self.device) for f in init_gaussians(frames, recipe.init, cfg.gaussians, self.gen))
        if recipe.init.cancel_mean_motion and fresh:
            cancel_mean_motion(face, mouth, self.motion, frames, cfg.audio)
        # One length for both branches (the head's): the mouth cloud alone is tiny, and thresholds relative to it
        # would prune its every Gaussian as "too big".
        self.identity = Identity("target", frames, face, mouth, face.extent(), face.extent())
        self.stages = adapt_stages(recipe.stages)
        self.total = recipe.stages.total
        self.first_align = next((s.start for s in self.stages if s.aligner), None)
        self._build_optimizers(0)

    def _calibrate(self, frames: IdentityFrames) -> None:
        """Whether the UMF stays fixed (a run from a UMF), and then its calibration to this person."""
        recipe, cfg = self.recipe, self.recipe.model
        self.umf_fixed = recipe.fix_umf and self.umf_meta is not None
        if self.umf_fixed and cfg.articulation:
            # Its audio nets never change here, so the calibration is known before the first step. A UMF learnt
            # here is calibrated at the end, once it has fitted these frames.
            code, bias, gain = speaker_calibration(self.motion, frames, cfg)
            self.motion.set_calibration(code if recipe.audio_through_opening else None, bias,
                                        gain if recipe.opening_gain else None)

    def _build_optimizers(self, step: int) -> None:
        cfg = self.recipe.model
        ident = self.identity
        for module in (ident.face, ident.mouth, self.motion):
            module.requires_grad_(True)
        if self.umf_fixed:
            self.motion.umf.requires_grad_(False)  # and so out of the optimiser
        self.opt_g = gaussian_optimizer({"face": (ident.face, ident.face_extent),
                                         "mouth": (ident.mouth, ident.mouth_extent)}, cfg)
        # The hook's groups first: with the UMF fixed they are the optimiser's only ones until the aligner joins.
        self.opt_m = motion_optimizer(self.motion.hook, cfg, cfg.optim.lr_adapt_net, "hook")
        if not self.umf_fixed:
            add_motion_groups(self.opt_m, self.motion.umf, cfg, "umf")
        self.aligner_in_optimizer = False
        # After `step` iterations the aligner is in the optimiser once an iteration of its stage has run.
        if self.first_align is not None and step > self.first_align:
            self._add_aligner()

    def _add_aligner(self) -> None:
        self.motion.aligner.requires_grad_(True)
        cfg = self.recipe.model
        add_motion_groups(self.opt_m, self.motion.aligner, cfg, "aligner", cfg.optim.lr_adapt_net)
        self.aligner_in_optimizer = True

    def apply_stage(self, stage) -> None:
        if stage.aligner and not self.aligner_in_optimizer:
            self._add_aligner()
        ident, m = self.identity, self.motion
        set_field_trainable(ident.face, stage.face, stage.colors_only)
        set_field_trainable(ident.mouth, stage.mouth, stage.colors_only)
        moving = not stage.colors_only
        umf_learns = moving and not self.umf_fixed
        set_trainable(m.umf.audio_encoder, umf_learns)
        set_trainable(m.umf.audio_smoother, umf_learns)
        set_trainable(m.umf.articulation, umf_learns)
        set_trainable(m.umf.face, umf_learns and stage.face)
        set_trainable(m.umf.mouth, umf_learns and stage.mouth)
        set_trainable(m.hook, moving and stage.mouth)
        set_trainable(m.aligner, moving and stage.aligner)

    @property
    def identities(self) -> list[Identity]:
        return [self.identity]

    def pick(self, step: int) -> tuple[Identity, list]:
        return self.identity, []

    def sync(self, stop: bool) -> bool:
        return stop

    # ----- checkpoints --------------------------------------------------------------------------------------

    def tensors(self) -> tuple[dict, dict]:
        t = ck.module_tensors("face", self.identity.face) | ck.module_tensors("mouth", self.identity.mouth)
        t |= ck.module_tensors("motion", self.motion) | ck.rng_tensors(self.gen)
        tg, groups_g = ck.optimizer_state("opt_g", self.opt_g)
        tm, groups_m = ck.optimizer_state("opt_m", self.opt_m)
        state = {"groups_g": groups_g, "groups_m": groups_m, "face_extent": self.identity.face_extent,
                 "mouth_extent": self.identity.mouth_extent, "umf": self.umf_meta}
        return t | tg | tm, state

    def restore(self, tensors: dict, state: dict, step: int) -> None:
        ident = self.identity
        ident.face = GaussianField.from_tensors(ck.sub_tensors(tensors, "face")).to(self.device)
        ident.mouth = GaussianField.from_tensors(ck.sub_tensors(tensors, "mouth")).to(self.device)
        ident.face_extent, ident.mouth_extent = state["face_extent"], state["mouth_extent"]
        self.motion.load_state_dict(ck.sub_tensors(tensors, "motion"))
        # The checkpoint says whether the run started from a UMF (`--resume` names none): a fixed UMF's optimiser
        # groups and its calibration (not saved; recomputed from its weights) must be the run's own.
        self.umf_meta = state.get("umf")
        self._calibrate(ident.frames)
        self._build_optimizers(step)
        ck.load_optimizer_state(self.opt_g, "opt_g", tensors, state["groups_g"])
        ck.load_optimizer_state(self.opt_m, "opt_m", tensors, state["groups_m"])
        ck.restore_rng(tensors, self.gen)


def adapt(
    dataset: str | Path,
    avatar: str | Path,
    recipe: AdaptRecipe | None = None,
    umf: str | Path | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    callback: Callback | None = None,
    should_stop: StopFlag | None = None,
) -> RunResult:
    """Adapt to DATASET and write the avatar dir AVATAR. With `resume`, continue the run in `run_dir` from its
    latest checkpoint using the recipe saved there. Returns what was done (interrupted=True after a stop).
    Starting from a UMF, its motion sizes replace the recipe's (`with_umf_sizes`); the saved recipe says so."""
    t0 = time.perf_counter()
    avatar = Path(avatar)
    run_dir = Path(run_dir) if run_dir else default_run_dir(avatar)
    latest = ck.latest_checkpoint(run_dir) if resume else None
    if resume:
        if latest is None:
            raise InputError(f"{run_dir}: no checkpoint to resume from")
        recipe = load_run_recipe(run_dir, AdaptRecipe)
    else:
        if recipe is None:
            raise InputError("adapt: a recipe is needed (--recipe)")
        if umf:
            recipe = dataclasses.replace(recipe, model=with_umf_sizes(recipe.model, umf))
        if ck.list_checkpoints(run_dir) and not force:
            raise InputError(f"{run_dir}: holds a run already (pass --resume to continue it or --force to restart)")
        if avatar.exists() and not force:
            raise InputError(f"{avatar}: already exists (pass --force to replace it)")
        start_fresh(run_dir, recipe)
    use_threads(recipe.run)
    cfg = recipe.model
    ds = load_dataset(dataset)
    frames = training_frames(ds, recipe.audio_feature, cfg, resolve_device(recipe.run.device, "run.device"))
    run = _Adaptation(recipe, frames, Path(umf) if umf else None, fresh=latest is None)
    start = 0
    log = RunLog(run_dir, recipe.run.log_every)
    if latest is not None:
        tensors, state = ck.load_checkpoint(latest)
        ran_with = (state.get("umf") or {}).get("sha256")
        if run.umf_meta is not None and run.umf_meta["sha256"] != ran_with:
            # The checkpoint's motion weights would silently replace the requested UMF.
            raise InputError(f"{run_dir}: this run was adapted from another UMF than {umf} "
                             "(pass --force to start over with it)")
        start = int(state["step"])
        run.restore(tensors, state, start)
        log.truncate_after(start)
    step, interrupted = train(run, start, LoopOutputs(run_dir, log, run_dir / "previews", callback, should_stop))
    if interrupted:
        return RunResult(run_dir, step, run.total, True, time.perf_counter() - t0)
    if cfg.articulation and not run.umf_fixed:
        # No gain: the head has just fitted these very frames, so their spread is no estimate of a new voice's.
        run.motion.set_calibration(None, speaker_calibration(run.motion, frames, cfg)[1])
    _write_avatar(avatar, run, ds, recipe, run_dir, force=True)
    return RunResult(run_dir, step, run.total, False, time.perf_counter() - t0,
                     extra={"n_face": run.identity.face.num_gaussians, "n_mouth": run.identity.mouth.num_gaussians})


def speaker_calibration(motion: MotionModel, frames: IdentityFrames,
                        cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over the training frames, from `motion`'s audio nets as they are: the person's mean audio code [code_dim],
    the UMF's mean (uncalibrated) predicted lip shape [C], and the gain [C] that gives the centred prediction
    the tracked lip shape's spread (`lip_gain`)."""
    train = [int(t) for t in frames.train_indices]
    with torch.no_grad():
        codes, lips = motion.umf.clip_lips(frames.features, train, cfg.audio)  # [F, code_dim], [F, C]
        tracked = frames.tracked_lips(train).to(lips)  # [F, C], mean 0 over these frames
        return codes.mean(0), lips.mean(0), lip_gain(lips - lips.mean(0), tracked)


def lip_gain(predicted: torch.Tensor, tracked: torch.Tensor) -> torch.Tensor:
    """Per coefficient, the gain [C] that gives the centred prediction [F, C] the spread of the tracked lip shape
    [F, C] (mean 0), so a dub opens the mouth as wide as the person does (a least-squares gain would shrink it by
    the correlation); 1, the head's own scale, where their correlation is no evidence (`is_evidence`)."""
    gains = torch.ones(predicted.shape[1])
    for c in range(predicted.shape[1]):
        p, t = predicted[:, c], tracked[:, c]
        if len(p) < 3 or p.std() == 0 or t.std() == 0:
            continue
        r = float(torch.corrcoef(torch.stack([p, t]))[0, 1])
        # Every frame counts here, unlike the sync's test: the spread is the person's whether or not 5 s show the
        # prediction following it, and the stricter count cost the one person it changed (umf_ablation_notes.md).
        if is_evidence(r, len(p)):
            gains[c] = float(t.std() / p.std())
    return gains


def _write_avatar(path: Path, run: _Adaptation, ds, recipe: AdaptRecipe, run_dir: Path, force: bool) -> None:
    frames = run.identity.frames
    train = frames.train_indices
    tracks = ds.tracks
    box = ds.meta.get("crop_box", {})
    drive = {
        "viewmats": tracks["viewmats"][train],
        "blink": tracks["blink"][train],
        "expression": tracks["expression"][train],
        "mouth_open": tracks["mouth_open"][train],
        "frame_index": train.astype(np.int64),
        "crop_box": np.array([box.get("x0", 0), box.get("y0", 0), box.get("side", ds.size)], dtype=np.int64),
    }
    chin = (frames.ids["face_skin"], frames.ids["lips"])
    torso = {int(i): torso_layer(frames.frame_uint8(int(i)), frames.label(int(i)), frames.ids["neck_torso"], chin,
                                 frames.ids["hair"])
             for i in train}
    k = ds.meta["intrinsics"]
    meta = {
        "recipe": to_dict(recipe),
        "audio_feature": recipe.audio_feature,
        "audio_feature_shape": list(frames.features.shape[1:]),
        "image_size": [ds.size, ds.size],
        "intrinsics": {"fx": k["fx"], "fy": k["fy"], "cx": k["cx"], "cy": k["cy"]},
        "fps": ds.fps,
        "labels": ds.meta["labels"],
        "view_range": view_range(drive["viewmats"]).describe(),
        "provenance": {
            "instag_version": instag.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dataset": str(ds.path.resolve()),
            "source": ds.meta.get("source", {}),
            "train_frames": [int(train[0]), int(train[-1]) + 1],
            "iterations": run.total,
            "umf": run.umf_meta,
            "run_dir": str(run_dir.resolve()),
        },
    }
    save_avatar(path, meta, run.identity.face, run.identity.mouth, run.motion, drive, frames.plate, torso,
                force=force)
