"""`instag adapt-from-clip`: preprocess + adapt in one go, from a raw clip to an avatar dir.

Defaults: the recipe is the shipped adapt_5s on CUDA and adapt_quick_cpu otherwise; the frame size
512 on CUDA and 256 otherwise; the UMF is the one shipped for the recipe's audio features (`umf.SHIPPED_UMFS`)
when its audio front end matches the recipe's (else the UMF starts from scratch), and its motion sizes replace the recipe's (`umf.with_umf_sizes`). The mel
bins follow the recipe's model.audio.feature_dim.

The intermediate dataset is preprocessed into a staging dir beside the avatar (`.AVATAR.dataset`) and, once the
avatar is written, moved to AVATAR/dataset (or kept at `keep_dataset`); the clip itself is copied to
AVATAR/source/ so paste-back finds its full-size frames. A staging dataset of the same clip and size left by an
interrupted run is reused; `resume` continues adaptation from its latest checkpoint (AVATAR.run).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from instag.atomic import write_text_atomic
from instag.config.preprocess import PreprocessConfig
from instag.config.recipe import RECIPE_DIR, load_recipe
from instag.data.dataset import load_dataset
from instag.data.video import sha256_of
from instag.errors import InputError
from instag.train.adapt import adapt, default_run_dir
from instag.train.recipe import AdaptRecipe
from instag.train.run import Callback, StopFlag
from instag.train.umf import choose_umf

GPU_RECIPE = RECIPE_DIR / "adapt_5s.yaml"
CPU_RECIPE = RECIPE_DIR / "adapt_quick_cpu.yaml"
Progress = Callable[[str, int, int], None]


@dataclass
class FromClipResult:
    avatar: Path
    dataset: Path
    recipe: Path
    umf: Path | None
    umf_note: str
    size: int
    interrupted: bool
    steps_done: int
    total: int
    run_dir: Path
    reused_dataset: bool
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def default_recipe() -> Path:
    return GPU_RECIPE if torch.cuda.is_available() else CPU_RECIPE


def default_size() -> int:
    return 512 if torch.cuda.is_available() else 256


def staging_dataset(avatar: Path) -> Path:
    return avatar.with_name(f".{avatar.name}.dataset")


def _reusable(dataset: Path, clip_sha: str, size: int) -> bool:
    """A complete dataset dir (written atomically) of this clip at this size."""
    try:
        ds = load_dataset(dataset)
    except InputError:
        return False
    return ds.meta.get("source", {}).get("sha256") == clip_sha and ds.size == size


def adapt_from_clip(
    clip: str | Path,
    avatar: str | Path,
    recipe: str | Path | None = None,
    umf: str | Path | None = None,
    use_umf: bool = True,
    size: int | None = None,
    keep_dataset: str | Path | None = None,
    audio_model: str | None = None,
    resume: bool = False,
    force: bool = False,
    preprocess_progress: Progress | None = None,
    callback: Callback | None = None,
    should_stop: StopFlag | None = None,
) -> FromClipResult:
    clip, avatar = Path(clip), Path(avatar)
    if not clip.is_file():
        raise InputError(f"{clip}: no such file")
    if avatar.exists() and not force:
        raise InputError(f"{avatar}: already exists (pass --force to replace it)")
    recipe_path = Path(recipe) if recipe else default_recipe()
    r = load_recipe(recipe_path, AdaptRecipe)
    umf_path, umf_note = choose_umf(umf, use_umf, r.model, r.audio_feature)
    size = int(size or default_size())
    kind = r.audio_feature
    cfg = PreprocessConfig(size=size, audio_features=(kind,), audio_model=audio_model,
                           mel_bins=r.model.audio.feature_dim if kind == "mel" else PreprocessConfig.mel_bins)
    dataset = Path(keep_dataset) if keep_dataset else staging_dataset(avatar)
    result = FromClipResult(avatar, dataset, recipe_path, umf_path, umf_note, size, False, 0, 0,
                            default_run_dir(avatar), False)

    if dataset.exists() and _reusable(dataset, sha256_of(clip), size):
        result.reused_dataset = True
    elif dataset.exists() and keep_dataset is not None and not force:
        raise InputError(f"{dataset}: exists and is not a dataset of {clip} at {size}² (pass --force to replace it)")
    else:
        from instag.data.preprocess import preprocess_clip

        pre = preprocess_clip(clip, dataset, cfg, force=True, progress=preprocess_progress)
        result.warnings.extend(pre.warnings)
        result.timings_s["preprocess"] = round(sum(pre.timings_s.values()), 3)

    run_resume = resume and result.run_dir.is_dir()
    run = adapt(dataset, avatar, None if run_resume else r, umf=umf_path, run_dir=result.run_dir,
                resume=run_resume, force=force or resume, callback=callback, should_stop=should_stop)
    result.steps_done, result.total, result.interrupted = run.steps_done, run.total, run.interrupted
    result.timings_s["adapt"] = round(run.wall_s, 3)
    if run.interrupted:
        return result
    _finish_avatar(avatar, clip, dataset, keep_dataset is None)
    if keep_dataset is None:
        result.dataset = avatar / "dataset"
    return result


def _finish_avatar(avatar: Path, clip: Path, dataset: Path, move_dataset: bool) -> None:
    """Keep the clip (for paste-back) and the dataset in the avatar dir; record where the dataset now is."""
    src = avatar / "source"
    src.mkdir(exist_ok=True)
    tmp = src / f".{clip.name}.part"
    shutil.copyfile(clip, tmp)
    tmp.replace(src / clip.name)
    if move_dataset:
        target = avatar / "dataset"
        if target.exists():
            shutil.rmtree(target)
        dataset.replace(target)
        dataset = target
    meta_path = avatar / "avatar.json"
    meta = json.loads(meta_path.read_text())
    meta.setdefault("provenance", {})["dataset"] = str(dataset.resolve())
    write_text_atomic(meta_path, json.dumps(meta, indent=2) + "\n")
