"""Stage schedules (which parts train, which losses are on, in which iterations) and learning-rate decay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from instag.train.recipe import AdaptStages, DensifyConfig, PretrainStages

LossRegion = Literal["full", "no_mouth", "mouth"]


@dataclass(frozen=True)
class Stage:
    """One stage of a run: global iterations [start, start + iterations)."""

    name: str
    start: int
    iterations: int
    face: bool  # face Gaussians and the face motion branch train
    mouth: bool  # mouth Gaussians, the mouth motion branch and the hook train
    aligner: bool  # the motion aligner is in the optimiser
    geometry: bool  # depth and normal priors
    densify: bool
    colors_only: bool  # only colours and opacities train (the fuse stage)
    contrast: bool  # negative contrast loss between identities (pre-training)
    region: LossRegion  # pixels the photometric loss looks at

    @property
    def end(self) -> int:
        return self.start + self.iterations


def _chain(specs: list[dict]) -> list[Stage]:
    stages, start = [], 0
    for spec in specs:
        if spec["iterations"] > 0:
            stages.append(Stage(start=start, **spec))
            start += spec["iterations"]
    return stages


def adapt_stages(s: AdaptStages) -> list[Stage]:
    """Warm-up (UMF as is, aligner left out), alignment (aligner + geometry prior, densify), fuse (colours)."""
    common = dict(face=True, mouth=True, contrast=False, region="full")
    return _chain([
        dict(name="warmup", iterations=s.warmup, aligner=False, geometry=False, densify=True, colors_only=False, **common),
        dict(name="align", iterations=s.align, aligner=True, geometry=True, densify=True, colors_only=False, **common),
        dict(name="fuse", iterations=s.fuse, aligner=False, geometry=False, densify=False, colors_only=True, **common),
    ])  # fmt: skip


def pretrain_stages(s: PretrainStages) -> list[Stage]:
    """Face branch, then mouth branch (face frozen), then both on the full composite; contrast loss throughout."""
    common = dict(aligner=False, colors_only=False, contrast=True)
    return _chain([
        dict(name="face", iterations=s.face, face=True, mouth=False, geometry=True, densify=True, region="no_mouth", **common),
        dict(name="mouth", iterations=s.mouth, face=False, mouth=True, geometry=False, densify=True, region="mouth", **common),
        dict(name="joint", iterations=s.joint, face=True, mouth=True, geometry=True, densify=False, region="full", **common),
    ])  # fmt: skip


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage global iteration `step` belongs to (the last one past the end)."""
    for stage in stages:
        if step < stage.end:
            return stage
    return stages[-1]


def decay(step: int, total: int, final: float) -> float:
    """Exponential decay factor: 1 at step 0, `final` at step total − 1."""
    return final ** (step / max(total - 1, 1))


def densify_due(step: int, total: int, stage: Stage, cfg: DensifyConfig) -> bool:
    """Densify and prune after iteration `step` (0-based, global)?"""
    done = step + 1
    return (
        stage.densify
        and cfg.every > 0
        and done >= cfg.start
        and done <= total - cfg.stop_before_end
        and done % cfg.every == 0
    )


def opacity_reset_due(step: int, total: int, stage: Stage, cfg: DensifyConfig) -> bool:
    done = step + 1
    return (
        stage.densify
        and cfg.opacity_reset_every > 0
        and done % cfg.opacity_reset_every == 0
        and done <= total - cfg.stop_before_end
    )
