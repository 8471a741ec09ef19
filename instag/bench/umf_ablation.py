"""`instag bench umf-ablation`: adapt to held-out people with and without a pre-trained UMF (InsTaG Table 5).

For each case CLIP@SECONDS the clip is preprocessed with the frames from SECONDS on held out as the test split;
then the same recipe adapts two avatars per seed, one from scratch and one from the UMF, and `instag eval` scores
them on the test split. Differences between the arms can be as small as those between seeds, so each arm is
reported as the mean over the seeds (and each seed's figures in the JSON). Work is kept in
WORK/<clip stem>/{dataset, without_umf_seedN, with_umf_seedN} and reused when it matches (same clip, size and
split; same recipe, seed and UMF), so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from instag.atomic import write_text_atomic
from instag.bench.record import header
from instag.bench.train import recipe_with_threads
from instag.config.preprocess import PreprocessConfig
from instag.config.recipe import to_dict
from instag.data.dataset import load_dataset
from instag.data.video import sha256_of
from instag.errors import InputError
from instag.eval.runner import EVAL_KEYS, evaluate
from instag.motion.umf_file import find_umf
from instag.train.recipe import AdaptRecipe
from instag.train.run import read_losses, training_seconds
from instag.train.umf import with_umf_sizes

ARMS = ("without_umf", "with_umf")
Report = Callable[[str], None]


def parse_case(text: str) -> tuple[Path, float]:
    """`CLIP@SECONDS` → (clip, test_from_s)."""
    clip, sep, seconds = text.rpartition("@")
    try:
        test_from = float(seconds)
    except ValueError:
        test_from = -1.0
    if not sep or test_from <= 0:
        raise InputError(f"{text}: expected CLIP@SECONDS (the test split starts SECONDS into the clip)")
    if not Path(clip).is_file():
        raise InputError(f"{clip}: no such file")
    return Path(clip), test_from


def _dataset(clip: Path, test_from: float, size: int, recipe: AdaptRecipe, work: Path, report: Report) -> Path:
    from instag.data.preprocess import placed_as_now, preprocess_clip

    path = work / "dataset"
    cfg = PreprocessConfig(size=size, test_from_s=test_from, audio_features=(recipe.audio_feature,),
                           mel_bins=recipe.model.audio.feature_dim)
    try:
        ds = load_dataset(path)
        # The sync's offset depends on the lip predictor it read: a dataset placed by another (or none) is stale.
        same_sync = placed_as_now(ds.meta.get("audio", {}).get("sync", {})) or not cfg.sync_audio
        if (ds.meta.get("source", {}).get("sha256") == sha256_of(clip) and ds.meta.get("preprocess") == to_dict(cfg)
                and same_sync):
            report(f"{clip.name}: reusing {path}")
            return path
    except InputError:
        pass
    report(f"{clip.name}: preprocessing at {size}² (test from {test_from:g} s)")
    preprocess_clip(clip, path, cfg, force=True)
    return path


def _training(recipe: dict[str, Any]) -> dict[str, Any]:
    """What of a recipe shapes the result: all but the run settings (threads, logging, checkpoints)."""
    return {k: v for k, v in recipe.items() if k != "run"}


def _same_training(avatar: Path, recipe: AdaptRecipe, umf_sha: str | None) -> bool:
    """The avatar was adapted with this recipe and this UMF (or none)."""
    try:
        meta = json.loads((avatar / "avatar.json").read_text())
    except (OSError, ValueError):
        return False
    umf = meta.get("provenance", {}).get("umf")
    return _training(to_dict(recipe)) == _training(meta.get("recipe") or {}) and (umf or {}).get("sha256") == umf_sha


def _arm(dataset: Path, avatar: Path, recipe: AdaptRecipe, umf: Path | None, umf_sha: str | None,
         report: Report) -> dict[str, Any]:
    from instag.train.adapt import adapt, default_run_dir

    run_dir = default_run_dir(avatar)
    if _same_training(avatar, recipe, umf_sha):
        report(f"  {avatar.name}: reusing the adapted avatar")
    else:
        resume = _same_recipe_run(run_dir, recipe, umf_sha)
        report(f"  {avatar.name}: adapting ({'resuming' if resume else 'from the start'})")
        result = adapt(dataset, avatar, None if resume else recipe, umf=umf, resume=resume, force=True)
        if result.interrupted:
            raise InputError(f"{avatar}: adaptation was interrupted")
    scores = _scores(avatar, dataset)
    report(f"  {avatar.name}: " + ", ".join(f"{k} {scores[k]:.4g}" for k in EVAL_KEYS
                                            if isinstance(scores.get(k), float)))
    losses = run_dir / "losses.csv"
    train_s = round(training_seconds(read_losses(losses))) if losses.is_file() else None
    return {**{k: scores[k] for k in EVAL_KEYS}, "train_s": train_s}


def _scores(avatar: Path, dataset: Path) -> dict[str, Any]:
    """`instag eval` on the test split, kept in AVATAR.eval.json for exactly these weights and this dataset (a
    re-run of the ablation then costs no rendering)."""
    cache = avatar.with_name(avatar.name + ".eval.json")
    key = {"model_sha256": sha256_of(avatar / "model.safetensors"), "dataset": str(dataset.resolve()),
           "dataset_meta_sha256": sha256_of(dataset / "meta.json")}
    try:
        doc = json.loads(cache.read_text())
        if doc.get("key") == key:
            return doc["scores"]
    except (OSError, ValueError):
        pass
    scores = evaluate(avatar, dataset, split="test")
    write_text_atomic(cache, json.dumps({"key": key, "scores": scores}, indent=2) + "\n")
    return scores


def _same_recipe_run(run_dir: Path, recipe: AdaptRecipe, umf_sha: str | None) -> bool:
    """The run in `run_dir` trains exactly this recipe from this UMF (or none), so resuming it is sound.

    The saved recipe is compared as written, not as loaded: loading fills settings added since with today's
    defaults, and a run made before them would pass for one made with them.
    """
    from instag.train.checkpoint import latest_checkpoint, load_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None:
        return False
    try:
        saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
        _, state = load_checkpoint(latest)
    except (OSError, yaml.YAMLError, InputError):
        return False
    return (isinstance(saved, dict) and _training(saved) == _training(to_dict(recipe))
            and (state.get("umf") or {}).get("sha256") == umf_sha)


def run(cases: list[str], umf: Path, recipe_path: Path, work: Path, size: int = 256, threads: int | None = None,
        seeds: tuple[int, ...] = (0,), report: Report | None = None, arms: tuple[str, ...] = ARMS) -> dict[str, Any]:
    """The ablation document: per case the eval metrics on the test split of the `arms` (means over `seeds`, and
    each seed's) and, with both arms, which wins on the means."""
    report = report or (lambda _msg: None)
    if not arms or any(a not in ARMS for a in arms):
        raise InputError(f"--arms {','.join(arms)}: choose from {', '.join(ARMS)}")
    parsed = [parse_case(c) for c in cases]
    if not seeds:
        raise InputError("--seeds: at least one seed")
    st_path, _ = find_umf(umf)
    recipe = recipe_with_threads(recipe_path, threads)
    # Both arms get the motion sizes the UMF arm takes over from the UMF, so the arms differ in the prior alone.
    recipe = dataclasses.replace(recipe, model=with_umf_sizes(recipe.model, st_path))
    umf_sha = sha256_of(st_path)
    doc = header("umf-ablation") | {"recipe": str(recipe_path), "umf": str(st_path), "umf_sha256": umf_sha,
                                    "size": size, "threads": torch.get_num_threads(), "seeds": list(seeds),
                                    "cases": []}
    for clip, test_from in parsed:
        work_dir = work / clip.stem
        dataset = _dataset(clip, test_from, size, recipe, work_dir, report)
        ds = load_dataset(dataset)
        case = {"clip": clip.name, "test_from_s": test_from, "n_train": len(ds.train_indices),
                "n_test": len(ds.test_indices)}
        for arm in arms:
            with_umf = arm == "with_umf"
            per_seed = [_arm(dataset, work_dir / f"{arm}_seed{seed}", dataclasses.replace(recipe, seed=seed),
                             st_path if with_umf else None, umf_sha if with_umf else None, report)
                        for seed in seeds]
            case[arm] = {**_mean(per_seed), "per_seed": per_seed}
        if len(arms) == len(ARMS):
            case["umf_wins"] = wins(case["without_umf"], case["with_umf"])
        doc["cases"].append(case)
    return doc


def _mean(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key the mean over the rows (None if any row has none)."""
    out: dict[str, Any] = {}
    for key in rows[0]:
        vals = [r[key] for r in rows]
        out[key] = None if any(v is None for v in vals) else sum(vals) / len(vals)
    return out


def wins(without: dict[str, Any], with_umf: dict[str, Any]) -> dict[str, bool | None]:
    """Per metric, whether the UMF arm is better (higher PSNR/SSIM/correlation, lower LMD); None if unscored."""
    out: dict[str, bool | None] = {}
    for key in ("psnr_full", "psnr_face", "psnr_mouth", "ssim_full", "ssim_face", "ssim_mouth", "lmd", "mouth_open_corr"):
        a, b = without.get(key), with_umf.get(key)
        out[key] = None if a is None or b is None else bool(b < a if key == "lmd" else b > a)
    return out


def markdown_table(doc: dict[str, Any], command: str) -> str:
    """The table for benchmarks/, with the command that made it."""
    cols = ("psnr_full", "ssim_full", "psnr_face", "psnr_mouth", "lmd", "mouth_open_corr", "mouth_open_spread")
    m = doc["machine"]
    lines = [
        "# UMF ablation: adaptation with and without the pre-trained UMF",
        "",
        f"Made by `{command}` at commit {doc['commit']} on {m['cpu']} ({m['gpu'] or 'no GPU'}), "
        f"{doc['threads']} torch thread(s), {doc['time']}.",
        f"Recipe `{doc['recipe']}`, UMF `{doc['umf']}` (sha256 {doc['umf_sha256'][:12]}…), frames {doc['size']}².",
        "Metrics of `instag eval` on the test split (PSNR/SSIM higher is better, LMD lower, mouth-opening "
        "correlation higher). Each row is the mean over seeds " + ", ".join(map(str, doc["seeds"])) + " (the JSON "
        "has each seed's figures). Training seconds: the adaptation loop, from the logged rates of its run.",
        "",
        "| clip | train / test frames | UMF | " + " | ".join(cols) + " | training s |",
        "| --- | --- | --- | " + " | ".join("---" for _ in cols) + " | --- |",
    ]
    for case in doc["cases"]:
        for arm in (a for a in ARMS if a in case):
            r = case[arm]
            vals = ["–" if r.get(c) is None else f"{r[c]:.4g}" for c in cols]
            lines.append(f"| {case['clip']} (test from {case['test_from_s']:g} s) | {case['n_train']} / "
                         f"{case['n_test']} | {'yes' if arm == 'with_umf' else 'no'} | " + " | ".join(vals)
                         + " | " + ("–" if r["train_s"] is None else f"{r['train_s']:.0f}") + " |")
    lines.append("")
    for case in (c for c in doc["cases"] if "umf_wins" in c):
        won = [k for k, v in case["umf_wins"].items() if v]
        lines.append(f"- {case['clip']}: the UMF arm is better on {', '.join(won) if won else 'nothing'}.")
    return "\n".join(lines) + "\n"
