"""Training recipes: what `instag pretrain` and `instag adapt` read from YAML (strict: unknown keys are errors).

A recipe holds the model's sizes (`ModelConfig`) and everything about the run: initialisation of the
Gaussians, the stage schedule, densification, the trainer's own loss weights, checkpoint and preview cadence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from instag.config.model import ModelConfig
from instag.errors import InputError


@dataclass(frozen=True)
class InitConfig:
    """How each identity's canonical Gaussians start (from its dataset dir)."""

    face_points: int = 20_000  # sampled on the tracked face mesh (area-weighted)
    hair_points: int = 8_000  # the first frame's hair pixels lifted to the depth of the head
    mouth_points: int = 2_000  # a thin slab behind the inner lips of the most open training frame
    hair_depth_offset: float = 0.03  # metres behind the head centre the hair pixels are lifted to
    # Adaptation: move the canonical Gaussians against the motion's mean displacement over the training frames,
    # so the moved ones start where they were placed (`init.cancel_mean_motion`).
    cancel_mean_motion: bool = True


@dataclass(frozen=True)
class DensifyConfig:
    """3DGS adaptive density control, in iterations of the stages that densify."""

    every: int = 100  # 0 switches densification off
    start: int = 300  # first iteration (global) densification may run
    stop_before_end: int = 500  # no densification in the last this many iterations of the run
    opacity_reset_every: int = 0  # 0 = never; 3DGS uses 3000
    opacity_reset_ceiling: float = 0.01


@dataclass(frozen=True)
class LossConfig:
    """Every loss weight of training (`instag.train.step`), in the recipe's `loss` section."""

    lambda_dssim: float = 0.2  # photometric: (1 − λ) L1 + λ D-SSIM
    ssim_window: int = 11
    ssim_sigma: float = 1.5
    lambda_depth: float = 1e-2  # geometry prior: scale-invariant depth
    lambda_normal: float = 1e-3  # geometry prior: normal cosine
    lambda_contrast: float = 1.0  # pre-training's negative contrast between identities' residual motion
    lambda_motion: float = 1e-4  # keeps deformations small where no pixel asks for them
    lambda_aligner: float = 1e-3  # keeps the aligner near the identity it starts from
    lambda_anisotropy: float = 1e-3
    max_anisotropy: float = 10.0  # largest / smallest axis allowed before the regulariser bites
    lambda_mouth: float = 1.0  # photometric term restricted to the mouth-interior pixels (the mouth branch)
    lambda_alpha: float = 0.05  # face-branch alpha ≈ head mask (face, lips, hair): keeps splats off the torso
    # Tracked lip landmarks vs the face motion at the mesh's lip vertices (`losses.lip_landmark_loss`): where the
    # tracked lip shape fed to the face branch should put the lips.
    lambda_lips: float = 1.0
    # The lip Gaussians' mean depth (after motion) held at the face mesh lips' (`losses.lip_depth_loss`): with a
    # fixed UMF nothing else tells a new person's lips how deep to sit.
    lambda_lip_depth: float = 1.0
    # The face render's mean depth held at the mesh prior's over the face mask (`losses.depth_offset_loss`), with
    # the geometry prior, for the same reason.
    lambda_depth_offset: float = 1.0
    # Squared error of the UMF's lip shape predicted from the audio against the tracked one (model.articulation),
    # over the step's frame and `articulation_batch` more of the identity's: a few, as many over-fit the corpus
    # voices (benchmarks/umf_ablation_notes.md).
    lambda_articulation: float = 1.0
    articulation_batch: int = 2

    def __post_init__(self) -> None:
        _check_counts("loss", {"articulation_batch": self.articulation_batch})


@dataclass(frozen=True)
class LRScheduleConfig:
    """Exponential decay from the recipe's rates to this fraction of them at the last iteration."""

    means_final: float = 0.01  # the 3DGS position schedule (1.6e-4 → 1.6e-6)
    motion_final: float = 0.1  # grids and networks


@dataclass(frozen=True)
class AdaptStages:
    warmup: int = 2_000  # hook, Gaussians (and the UMF unless fixed); the aligner stays out of the optimiser
    align: int = 6_000  # aligner and the geometry prior on, densify and prune
    fuse: int = 1_000  # colours and opacities only, everything else frozen, on the full composite

    @property
    def total(self) -> int:
        return self.warmup + self.align + self.fuse


@dataclass(frozen=True)
class PretrainStages:
    face: int = 20_000  # face branch (mouth-interior pixels left out of the loss)
    mouth: int = 5_000  # mouth branch (mouth-interior pixels only; face frozen)
    joint: int = 5_000  # both branches on the full composite

    @property
    def total(self) -> int:
        return self.face + self.mouth + self.joint


@dataclass(frozen=True)
class LipStageConfig:
    """Pre-training's lip stage (`instag.train.lips`): the audio nets learn audio → lip shape from the tracked
    landmarks of every identity before the photometric stages, which then keep them fixed. 0 steps: off (the
    audio nets learn inside the photometric stages, through the articulation loss, as `mel_v3` did)."""

    steps: int = 200
    batch: int = 64  # frames a step, drawn across identities
    lr: float = 1e-3  # AdamW, cosine to 0 over the steps
    weight_decay: float = 1e-2
    # Ridge strength of the lip read-out (model.lip_readout), fitted after the steps: the penalty is
    # readout_alpha · frames / inputs on standardised inputs, the strength `instag bench lips` picks (lips_cpu.md).
    readout_alpha: float = 10_000.0


@dataclass(frozen=True)
class RunConfig:
    """Cadence of what a run writes besides the model."""

    checkpoint_every: int = 1_000  # 0 = only at the end (and on Ctrl-C)
    log_every: int = 10  # losses.csv rows
    previews: int = 4  # rendered previews saved over the run (evenly spaced), plus one at the end
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    device: str = "auto"  # auto (CUDA when torch sees one) | cpu | cuda


@dataclass(frozen=True)
class AdaptRecipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    audio_feature: str = "whisper"
    seed: int = 0
    # A loaded UMF stays fixed while the aligner, hook and Gaussians fit the person: fine-tuned on 5 s it memorises
    # the clip's mouth shapes by their audio (benchmarks/umf_ablation_notes.md). Without a UMF its fields learn.
    fix_umf: bool = True
    # With a fixed UMF that has the articulation head: its branches read the person's mean audio code, so a frame's
    # audio moves the face only through the predicted lip shape, not through what only the corpus voices had
    # (benchmarks/umf_ablation_notes.md). Ignored without a fixed UMF or without articulation.
    audio_through_opening: bool = True
    # With a fixed UMF that has the articulation head: the predicted lip shape is scaled to the tracked one's spread
    # over the training frames (`adapt.lip_gain`), so a dub opens the mouth as wide as the person does. Ignored as
    # audio_through_opening is.
    opening_gain: bool = True
    init: InitConfig = field(default_factory=InitConfig)
    stages: AdaptStages = field(default_factory=AdaptStages)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    lr: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _check_counts("stages", {"warmup": self.stages.warmup, "align": self.stages.align, "fuse": self.stages.fuse})
        if self.stages.total < 1:
            raise InputError("stages: the run needs at least one iteration")


@dataclass(frozen=True)
class PretrainRecipe:
    model: ModelConfig = field(default_factory=ModelConfig)
    audio_feature: str = "whisper"
    seed: int = 0
    init: InitConfig = field(default_factory=InitConfig)
    stages: PretrainStages = field(default_factory=PretrainStages)
    lips: LipStageConfig = field(default_factory=LipStageConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    lr: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _check_counts("stages", {"face": self.stages.face, "mouth": self.stages.mouth, "joint": self.stages.joint})
        _check_counts("lips", {"steps": self.lips.steps, "batch": self.lips.batch})
        if self.lips.steps > 0 and not self.model.articulation:
            raise InputError("lips.steps: the lip stage trains the articulation head; turn model.articulation on")
        if self.stages.total < 1:
            raise InputError("stages: the run needs at least one iteration")
        _check_personalized_smaller(self.model)


def _check_personalized_smaller(cfg: ModelConfig) -> None:
    """The personalized fields must be smaller than the UMF (DESIGN §6): a residual field with the UMF's capacity
    fits each identity's motion on its own and leaves the UMF with little to learn (the first shipped UMF, mel_v1,
    had equal sizes: each identity's residual moved the lips about as much as the UMF did)."""
    u, p = cfg.umf, cfg.personalized
    sizes = {"triplane.n_levels": (u.triplane.n_levels, p.triplane.n_levels),
             "triplane.n_features": (u.triplane.n_features, p.triplane.n_features),
             "triplane.log2_table_size": (u.triplane.log2_table_size, p.triplane.log2_table_size),
             "triplane.max_resolution": (u.triplane.max_resolution, p.triplane.max_resolution),
             "hidden_dim": (u.hidden_dim, p.hidden_dim), "n_layers": (u.n_layers, p.n_layers)}
    larger = [f"{k} {pv} > {uv}" for k, (uv, pv) in sizes.items() if pv > uv]
    if larger or all(uv == pv for uv, pv in sizes.values()):
        why = ", ".join(larger) if larger else "the sizes are equal"
        raise InputError(f"model.personalized must be smaller than model.umf ({why}): the residual fields would "
                         "take over the motion the UMF should learn")


def _check_counts(where: str, counts: dict[str, int]) -> None:
    for name, value in counts.items():
        if value < 0:
            raise InputError(f"{where}.{name}: must be ≥ 0, got {value}")
