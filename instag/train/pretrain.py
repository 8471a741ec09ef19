"""Identity-free pre-training of the Universal Motion Field (`instag pretrain`).

One UMF (with the audio nets and the face-mouth hook) is shared by all identities; each identity has its own
pair of Gaussian fields and a `PersonalizedField` whose residual motion is added to the UMF's. The negative
contrast loss pushes each identity's residual away from the others' at the same points and conditions, so
motion common to all identities ends up in the UMF.

Distributed (torchrun): identities are sharded across ranks (identity i on rank i mod world). The UMF, the hook
and every personalized field are replicated on all ranks; their gradients are all-reduced each step (UMF and
hook averaged; a personalized field's gradient comes from its owner only) and every rank applies the same
AdamW step, so the replicas stay identical. Gaussians live only on their owner's rank. Each rank's stop flag
(Ctrl-C, SIGTERM) rides in the same all-reduce; the loop reads the sum on its logged steps, so all ranks stop
after the same step, and no other step waits on the device for it.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from instag.config.recipe import to_dict
from instag.data.dataset import load_dataset
from instag.errors import InputError
from instag.gaussians.field import GaussianField
from instag.machine import device_description, resolve_device
from instag.motion.fields import PersonalizedField, UniversalMotionField
from instag.motion.model import MotionModel, build_personalized
from instag.train import checkpoint as ck
from instag.train.frames import training_frames
from instag.train.init import init_gaussians
from instag.train.lips import (
    LipClip,
    fit_lip_predictor,
    fit_lip_readout,
    fit_live_readout,
    lip_audio_nets,
    live_feature_model,
    load_lip_clip,
)
from instag.train.loop import LoopOutputs, save_checkpoint, start_fresh, train, use_threads
from instag.train.recipe import PretrainRecipe
from instag.train.run import (
    Callback,
    ProgressEvent,
    RunLog,
    RunResult,
    StopFlag,
    gaussian_optimizer,
    load_run_recipe,
    motion_optimizer,
    set_field_trainable,
    set_trainable,
)
from instag.train.schedules import pretrain_stages
from instag.train.step import Identity
from instag.train.umf import write_umf


def _world(device: torch.device) -> tuple[int, int]:
    """(rank, world size), initialising the process group under torchrun (gloo on CPU, NCCL on CUDA)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _rank_dir(run_dir: Path, rank: int) -> Path:
    return run_dir / f"rank{rank}"


class _Pretraining:
    def __init__(self, recipe: PretrainRecipe, datasets: list[Path], rank: int, world: int,
                 device: torch.device) -> None:
        cfg = recipe.model
        self.recipe, self.rank, self.world, self.device = recipe, rank, world, device
        torch.manual_seed(recipe.seed)  # identical replicated nets on every rank
        self.motion = MotionModel(cfg, with_aligner=False).to(device)
        self.personalized = nn.ModuleList([build_personalized(cfg) for _ in datasets]).to(device)
        self.gen = torch.Generator().manual_seed(recipe.seed * 1000 + rank)
        self.local: list[Identity] = []
        self.owned = [i for i in range(len(datasets)) if i % world == rank]
        for i in self.owned:
            ds = load_dataset(datasets[i])
            frames = training_frames(ds, recipe.audio_feature, cfg, device)
            init_gen = torch.Generator().manual_seed(recipe.seed * 7919 + i)  # independent of the sharding
            face, mouth = (f.to(device) for f in init_gaussians(frames, recipe.init, cfg.gaussians, init_gen))
            self.local.append(Identity(f"id{i}", frames, face, mouth, face.extent(), face.extent(),
                                       self.personalized[i]))
        self.stages = pretrain_stages(recipe.stages)
        self.total = recipe.stages.total
        self._build_optimizers()

    @property
    def identities(self) -> list[Identity]:
        return self.local

    def pick(self, step: int) -> tuple[Identity, list[PersonalizedField]]:
        identity = self.local[step % len(self.local)]
        return identity, [p for p in self.personalized if p is not identity.personalized]

    def _shared(self) -> nn.Module:
        return nn.ModuleDict({"umf": self.motion.umf, "hook": self.motion.hook, "personalized": self.personalized})

    def _build_optimizers(self) -> None:
        cfg = self.recipe.model
        for module in [self.motion, self.personalized, *(f for ident in self.local for f in (ident.face, ident.mouth))]:
            module.requires_grad_(True)
        fields = {}
        for ident in self.local:
            fields[f"{ident.name}.face"] = (ident.face, ident.face_extent)
            fields[f"{ident.name}.mouth"] = (ident.mouth, ident.mouth_extent)
        self.opt_g = gaussian_optimizer(fields, cfg)
        self.opt_m = motion_optimizer(self._shared(), cfg)
        self.shared_params = [p for g in self.opt_m.param_groups for p in g["params"]]
        umf_ids = {id(p) for p in list(self.motion.umf.parameters()) + list(self.motion.hook.parameters())}
        self.is_umf = [id(p) in umf_ids for p in self.shared_params]

    def apply_stage(self, stage) -> None:
        for ident in self.local:
            set_field_trainable(ident.face, stage.face, stage.colors_only)
            set_field_trainable(ident.mouth, stage.mouth, stage.colors_only)
        umf = self.motion.umf
        audio_learns = self.recipe.lips.steps == 0  # a lip stage has trained them, on far more than a frame a step
        set_trainable(umf.audio_encoder, audio_learns)
        set_trainable(umf.audio_smoother, audio_learns)
        set_trainable(umf.articulation, audio_learns)
        set_trainable(umf.face, stage.face)
        set_trainable(umf.mouth, stage.mouth)
        set_trainable(self.motion.hook, stage.mouth)
        for p in self.personalized:
            set_trainable(p.face, stage.face)
            set_trainable(p.mouth, stage.mouth)

    def sync(self, stop: bool) -> bool | Tensor:
        """All-reduce the shared gradients (and the stop flag); every trainable shared parameter gets a grad. Under
        torchrun the stop comes back as the summed flags, a device scalar (`loop._stopping` reads it)."""
        live = [(p, u) for p, u in zip(self.shared_params, self.is_umf, strict=True) if p.requires_grad]
        for p, _ in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self.world == 1:
            return stop
        flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
        flat = torch.cat([p.grad.reshape(-1) for p, _ in live] + [flag])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, is_umf in live:
            n = p.numel()
            g = flat[offset : offset + n].view_as(p)
            p.grad.copy_(g / self.world if is_umf else g)
            offset += n
        return flat[-1] > 0

    # ----- checkpoints --------------------------------------------------------------------------------------

    def tensors(self) -> tuple[dict, dict]:
        t = ck.module_tensors("motion", self.motion) | ck.module_tensors("personalized", self.personalized)
        for ident in self.local:
            t |= ck.module_tensors(f"{ident.name}.face", ident.face)
            t |= ck.module_tensors(f"{ident.name}.mouth", ident.mouth)
        t |= ck.rng_tensors(self.gen)
        tg, groups_g = ck.optimizer_state("opt_g", self.opt_g)
        tm, groups_m = ck.optimizer_state("opt_m", self.opt_m)
        extents = {ident.name: [ident.face_extent, ident.mouth_extent] for ident in self.local}
        return t | tg | tm, {"groups_g": groups_g, "groups_m": groups_m, "extents": extents,
                             "rank": self.rank, "world": self.world}

    def restore(self, tensors: dict, state: dict) -> None:
        if state["world"] != self.world:
            raise InputError(f"the checkpoint was written by {state['world']} ranks; resume with the same number")
        self.motion.load_state_dict(ck.sub_tensors(tensors, "motion"))
        self.personalized.load_state_dict(ck.sub_tensors(tensors, "personalized"))
        for ident in self.local:
            ident.face = GaussianField.from_tensors(ck.sub_tensors(tensors, f"{ident.name}.face")).to(self.device)
            ident.mouth = GaussianField.from_tensors(ck.sub_tensors(tensors, f"{ident.name}.mouth")).to(self.device)
            ident.face_extent, ident.mouth_extent = state["extents"][ident.name]
        self._build_optimizers()
        ck.load_optimizer_state(self.opt_g, "opt_g", tensors, state["groups_g"])
        ck.load_optimizer_state(self.opt_m, "opt_m", tensors, state["groups_m"])
        ck.restore_rng(tensors, self.gen)


def pretrain(
    datasets: list[str | Path],
    run_dir: str | Path,
    recipe: PretrainRecipe | None = None,
    resume: bool = False,
    force: bool = False,
    callback: Callback | None = None,
    should_stop: StopFlag | None = None,
) -> RunResult:
    """Pre-train on DATASETs into RUN (checkpoints, recipe, losses, previews). Under torchrun every rank calls
    this with the same arguments; only rank 0 writes the shared files and reports progress."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    if resume:
        recipe = load_run_recipe(run_dir, PretrainRecipe)
    elif recipe is None:
        raise InputError("pretrain: a recipe is needed (--recipe)")
    device = resolve_device(recipe.run.device, "run.device")
    rank, world = _world(device)
    if len(datasets) < 2:
        raise InputError("pretrain: the negative contrast loss needs at least two identities (datasets)")
    if len(datasets) < world:
        raise InputError(f"pretrain: {len(datasets)} datasets cannot be sharded over {world} ranks")
    if not resume:
        if (run_dir / "recipe.yaml").exists() and not force:
            raise InputError(f"{run_dir}: holds a run already (pass --resume to continue it or --force to restart)")
        _barrier(world)  # every rank has checked before rank 0 writes
        if rank == 0:
            start_fresh(run_dir, recipe)
        _barrier(world)
    use_threads(recipe.run)
    run = _Pretraining(recipe, [Path(d) for d in datasets], rank, world, device)
    rank_dir = _rank_dir(run_dir, rank)
    start = 0
    trained_on = device_description(device)  # checkpointed, for the model card of the exported UMF
    log = RunLog(run_dir, recipe.run.log_every) if rank == 0 else None
    if resume:
        latest = ck.latest_checkpoint(rank_dir)
        step = int(latest.name.split("_")[1]) if latest else -1
        common = _min_over_ranks(step, world, device)
        if common < 0:
            raise InputError(f"{run_dir}: no checkpoint to resume from")
        tensors, state = ck.load_checkpoint(ck.checkpoint_dir(rank_dir, common))
        start = int(state["step"])
        run.restore(tensors, state)
        if log:
            log.truncate_after(start)
    io = LoopOutputs(rank_dir, log, run_dir / "previews" if rank == 0 else None,
                     callback if rank == 0 else None, should_stop, {"device": trained_on})
    if not resume and (recipe.lips.steps > 0 or run.motion.umf.lip_readout is not None):
        _lip_stage(run, recipe, datasets, world, io.callback)
        save_checkpoint(run, io, 0)  # a resumed run never repeats the lip stage
    if rank == 0:
        (run_dir / "datasets.txt").write_text("".join(f"{Path(d).resolve()}\n" for d in datasets))
    step, interrupted = train(run, start, io)
    _barrier(world)
    return RunResult(run_dir, step, run.total, interrupted, time.perf_counter() - t0,
                     extra={"rank": rank, "world": world})


def _lip_stage(run: _Pretraining, recipe: PretrainRecipe, datasets: list[str | Path], world: int,
               callback: Callback | None) -> None:
    """The lip stage over every identity (each rank reads them all: features and tracks only) and the fit of the
    lip read-out, then rank 0's audio nets and read-out everywhere, so the ranks' replicas agree to the bit
    whatever their arithmetic. Rank 0 alone fits the live read-out, which runs the feature model over the audio."""
    clips = [load_lip_clip(d, recipe.audio_feature, recipe.model) for d in datasets]
    t0 = time.perf_counter()

    def report(step: int, loss: float) -> None:
        if callback and (step % recipe.run.log_every == 0 or step == recipe.lips.steps):
            rate = step / max(time.perf_counter() - t0, 1e-9)
            callback(ProgressEvent(step, recipe.lips.steps, "lips", {"lips": loss}, rate))

    umf = run.motion.umf
    if recipe.lips.steps > 0:
        fit_lip_predictor(umf, clips, recipe.model, recipe.lips, recipe.seed, report)
    if umf.lip_readout is not None:
        fit_lip_readout(umf, clips, recipe.model, recipe.lips.readout_alpha)
    if umf.lip_readout_live is not None and (world == 1 or dist.get_rank() == 0):
        _fit_live_readout(umf, clips, recipe, callback)
    if world > 1:
        readout = [b for r in (umf.lip_readout, umf.lip_readout_live) if r is not None for b in r.buffers()]
        for t in [p for net in lip_audio_nets(umf) for p in net.parameters()] + readout:
            dist.broadcast(t.data, src=0)


def _fit_live_readout(umf: UniversalMotionField, clips: list[LipClip], recipe: PretrainRecipe,
                      callback: Callback | None) -> None:
    """The live read-out's fit, or a note on why it cannot be fitted here (then the preview's microphone mode
    reads the read-out, as before there was a live one)."""
    front, why = live_feature_model(clips, recipe.audio_feature)
    if why is not None:
        if callback:
            callback(ProgressEvent(0, len(clips), "live read-out", {}, 0.0, f"live read-out not fitted: {why}"))
        return
    t0 = time.perf_counter()

    def report(done: int, total: int) -> None:
        if callback:
            callback(ProgressEvent(done, total, "live read-out", {}, done / max(time.perf_counter() - t0, 1e-9)))

    fit_live_readout(umf, clips, recipe.model, recipe.lips.readout_alpha, recipe.audio_feature, front, report)


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _min_over_ranks(value: int, world: int, device: torch.device) -> int:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def export_umf(run_dir: str | Path, out: str | Path, notes: str | None = None) -> tuple[Path, Path]:
    """Write the UMF (+ hook) of RUN's latest rank-0 checkpoint as `out`.safetensors + `out`.json, and the model
    card (NAME_MODEL_CARD.md, loss curves) beside them; `notes` are the card's known limits."""
    run_dir = Path(run_dir)
    recipe = load_run_recipe(run_dir, PretrainRecipe)
    latest = ck.latest_checkpoint(_rank_dir(run_dir, 0))
    if latest is None:
        raise InputError(f"{run_dir}: no checkpoint to export")
    tensors, state = ck.load_checkpoint(latest)
    motion = MotionModel(recipe.model, with_aligner=False)
    motion.load_state_dict(ck.sub_tensors(tensors, "motion"))
    corpus = []
    listing = run_dir / "datasets.txt"
    for line in (listing.read_text().splitlines() if listing.exists() else []):
        try:
            meta = load_dataset(line).meta
            source = meta.get("source", {})
            corpus.append({"dataset": Path(line).name, "source": Path(source.get("path", line)).name,
                           "source_sha256": source.get("sha256"), "frames": meta.get("frame_count")})
        except InputError:
            corpus.append({"dataset": Path(line).name})
    info = {
        "audio_feature": recipe.audio_feature,
        "corpus": corpus,
        "iterations": int(state["step"]),
        "stages": to_dict(recipe.stages),
        "lip_stage": to_dict(recipe.lips),
        "ranks": int(state["world"]),
        "device": state.get("device", "not recorded"),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return write_umf(out, motion, recipe.model, info, losses=run_dir / "losses.csv", notes=notes)
