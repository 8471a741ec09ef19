"""What every training run shares: the run dir (resolved recipe, losses CSV, previews), progress events for the
CLI, the optimisers of the Gaussians and the motion nets, per-stage trainability and learning-rate decay."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from instag.config.model import ModelConfig
from instag.config.recipe import dump_recipe, from_dict, read_recipe_yaml
from instag.gaussians.field import GaussianField
from instag.motion.model import param_groups
from instag.train.recipe import LRScheduleConfig
from instag.train.schedules import decay

T = TypeVar("T")

COLOR_PARAMS = ("sh_dc", "sh_rest", "opacity_logits")
LOG_COLUMNS = ("step", "stage", "identity", "loss", "photo", "mouth", "alpha", "depth", "normal", "depth_offset",
               "contrast", "lips", "lip_depth", "articulation", "reg_motion", "reg_aniso", "reg_aligner", "n_face",
               "n_mouth", "it_per_s")
KEEP_CHECKPOINTS = 3


@dataclass
class ProgressEvent:
    """Sent to the caller's callback after each iteration (the CLI draws its progress bar from these)."""

    step: int  # iterations done
    total: int
    stage: str
    losses: dict[str, float]
    it_per_s: float
    message: str | None = None  # occasional notes (densification, checkpoint written)


Callback = Callable[[ProgressEvent], None]
StopFlag = Callable[[], bool]


@dataclass
class RunResult:
    run_dir: Path
    steps_done: int
    total: int
    interrupted: bool
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)


class RunLog:
    """losses.csv (appended across resumes) and it/s over a sliding window."""

    def __init__(self, run_dir: Path, every: int) -> None:
        self.path = run_dir / "losses.csv"
        self.every = max(every, 1)
        self._times: list[float] = []

    def rate(self) -> float:
        now = time.perf_counter()
        self._times.append(now)
        self._times = self._times[-20:]
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def write(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step` (a resumed run rewrites them identically)."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
            w.writeheader()
            w.writerows(rows)


def read_losses(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def training_seconds(rows: list[dict[str, str]]) -> float:
    """Seconds spent in the training loop, from each logged row's sliding-window rate (the rows of every
    segment of a resumed run are there, so this covers the whole run)."""
    total, last_step = 0.0, 0
    for r in rows:
        step, rate = int(r["step"]), float(r["it_per_s"] or 0)
        if rate > 0:
            total += (step - last_step) / rate
        last_step = step
    return total


def save_recipe(run_dir: Path, recipe: Any) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_recipe(recipe, run_dir / "recipe.yaml")


def load_run_recipe(run_dir: Path, cls: type[T]) -> T:
    """The recipe a run saved (`save_recipe`), as `cls`, read as the run meant it when an older instag wrote it: its
    loss weights under `model.loss` (before they moved to the recipe's own `loss`), and no `model.lip_readout` or
    `model.live_readout` (before those read-outs existed, so its model had none)."""
    path = run_dir / "recipe.yaml"
    data = read_recipe_yaml(path)
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict):
        model = {"lip_readout": False, "live_readout": False} | model
        if "loss" in model:
            data = {"loss": model.pop("loss")} | data
        data = data | {"model": model}
    return from_dict(cls, data, where=str(path))


def save_preview(path: Path, rendered: torch.Tensor, target: torch.Tensor) -> None:
    """Ground truth | render side by side as PNG (rendered, target: [H, W, 3] in [0, 1])."""
    import cv2

    img = torch.cat([target, rendered.detach().clamp(0, 1)], dim=1).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.round(img * 255).astype(np.uint8)[..., ::-1])


def gaussian_optimizer(fields: dict[str, tuple[GaussianField, float]], cfg: ModelConfig) -> torch.optim.Adam:
    """Adam over each field's per-parameter groups (3DGS rates; means scaled by the field's fixed extent).
    Groups are named `<field>.<param>` and remember their base rate for the decay schedule."""
    groups = []
    for name, (f, extent) in fields.items():
        for g in f.param_groups(cfg.optim.gaussians, extent):
            groups.append({**g, "name": f"{name}.{g['name']}", "base_lr": g["lr"]})
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


def _motion_groups(module: nn.Module, cfg: ModelConfig, prefix: str, lr_net: float | None) -> list[dict]:
    """`param_groups` of `module` that hold parameters, named `<prefix>.grids` / `.nets` (bare without a prefix),
    each remembering its base rate for the decay schedule."""
    return [{**g, "name": f"{prefix}.{g['name']}" if prefix else g["name"], "base_lr": g["lr"]}
            for g in param_groups(module, cfg.optim, lr_net) if g["params"]]


def motion_optimizer(modules: nn.Module, cfg: ModelConfig, lr_net: float | None = None,
                     prefix: str = "") -> torch.optim.AdamW:
    """AdamW over `modules` (`_motion_groups`)."""
    return torch.optim.AdamW(_motion_groups(modules, cfg, prefix, lr_net), lr=cfg.optim.lr_net)


def add_motion_groups(
    opt: torch.optim.Optimizer, module: nn.Module, cfg: ModelConfig, prefix: str, lr_net: float | None = None
) -> None:
    for g in _motion_groups(module, cfg, prefix, lr_net):
        opt.add_param_group(g)


def set_learning_rates(opts: list[torch.optim.Optimizer], step: int, total: int, lr: LRScheduleConfig) -> None:
    for opt in opts:
        for g in opt.param_groups:
            name = g.get("name", "")
            if name.endswith(".means"):
                g["lr"] = g["base_lr"] * decay(step, total, lr.means_final)
            elif isinstance(opt, torch.optim.AdamW):
                g["lr"] = g["base_lr"] * decay(step, total, lr.motion_final)


def set_field_trainable(f: GaussianField, train: bool, colors_only: bool) -> None:
    for name, p in f.named_parameters():
        p.requires_grad_(train and (not colors_only or name in COLOR_PARAMS))


def set_trainable(module: nn.Module | None, train: bool) -> None:
    if module is not None:
        for p in module.parameters():
            p.requires_grad_(train)


def preview_steps(total: int, count: int) -> set[int]:
    """Iterations (1-based counts) after which a preview is saved: evenly spaced, and the last one."""
    if count <= 0:
        return {total}
    return {max(1, round(total * (i + 1) / count)) for i in range(count)} | {total}
