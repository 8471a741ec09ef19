"""`instag bench train`: seconds per training iteration of adaptation at 256² and 512².

Each size gets a synthetic dataset dir (instag.train.synthetic: no footage needed) and the recipe's model and
initialisation, started from the UMF an adaptation would start from (`train.umf.choose_umf`: the shipped one for
the recipe's features unless told otherwise), so the step timed is the one users run; the timed iterations are
those of the alignment stage (aligner, geometry prior: the most expensive one), after a few untimed warm-up
iterations, on the recipe's `run.device` (auto: CUDA when torch sees one), so the figure is that of the machine
it runs on.

On a GPU the host queues a step's kernels and returns before the device has run them: `device_wait_s_per_it` is
how long the step's end then waits for the device. Near 0, the device idles while the host queues (Python and
dispatch bound the step: fewer, larger operators help); near `s_per_it`, the device's work does. On a CPU it is 0.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from instag.bench.record import header
from instag.config.recipe import load_recipe
from instag.data.dataset import load_dataset
from instag.errors import InputError
from instag.machine import resolve_device
from instag.train.adapt import _Adaptation
from instag.train.frames import training_frames
from instag.train.loop import optimise
from instag.train.recipe import AdaptRecipe
from instag.train.schedules import Stage
from instag.train.synthetic import write_dataset
from instag.train.umf import choose_umf, with_umf_sizes

SIZES = (256, 512)
WARMUP_ITERATIONS = 3


def synthetic_run(recipe: AdaptRecipe, size: int, root: Path, device: torch.device,
                  umf: Path | None) -> _Adaptation:
    """An adaptation of `recipe` from `umf` on a synthetic size² dataset written under `root`, ready to step."""
    ds_path = write_dataset(root / f"ds{size}", size=size, frames=8, mel_dim=recipe.model.audio.feature_dim,
                            kind=recipe.audio_feature)
    frames = training_frames(load_dataset(ds_path), recipe.audio_feature, recipe.model, device)
    return _Adaptation(recipe, frames, umf)


def step_times(run: _Adaptation, stage: Stage, runs: int, device: torch.device,
               warmup: int = WARMUP_ITERATIONS) -> tuple[list[float], list[float]]:
    """`runs` timed steps of `stage` after `warmup` untimed ones → (each step's seconds, and of them those its end
    waited for the device after the host had queued it)."""
    run.apply_stage(stage)
    train = run.identity.frames.train_indices
    # CUDA runs asynchronously: without a sync the clock would stop before the GPU finished the step.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, waits = [], []
    for i in range(warmup + runs):
        sync()
        t0 = time.perf_counter()
        optimise(run, run.identity, int(train[i % len(train)]), stage, [])
        queued = time.perf_counter()
        sync()
        done = time.perf_counter()
        if i >= warmup:
            times.append(done - t0)
            waits.append(done - queued)
    return times, waits


def _time_size(recipe: AdaptRecipe, size: int, runs: int, root: Path, device: torch.device,
               umf: Path | None) -> dict[str, Any]:
    run = synthetic_run(recipe, size, root, device, umf)
    stage = next((s for s in run.stages if s.aligner), run.stages[0])
    times, waits = step_times(run, stage, runs, device)
    ident = run.identity
    return {"size": f"{size}x{size}", "device": device.type, "stage": stage.name, "n_face": ident.face.num_gaussians,
            "n_mouth": ident.mouth.num_gaussians, "runs": runs, "s_per_it": statistics.median(times),
            "s_per_it_min": min(times), "device_wait_s_per_it": statistics.median(waits)}


def recipe_with_threads(recipe_path: Path, threads: int | None) -> AdaptRecipe:
    """The adaptation recipe with `threads` (None: the recipe's own) applied to torch and written into it."""
    recipe = load_recipe(recipe_path, AdaptRecipe)
    n_threads = threads if threads is not None else recipe.run.threads
    if n_threads > 0:
        torch.set_num_threads(n_threads)
    return dataclasses.replace(recipe, run=dataclasses.replace(recipe.run, threads=n_threads))


def run(recipe_path: Path, runs: int = 10, threads: int | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None, sizes: tuple[int, ...] = SIZES,
        umf: Path | None = None, use_umf: bool = True) -> dict[str, Any]:
    """Median seconds per adaptation iteration at each of `sizes` on the recipe's device and kernel backend, from
    `umf` (None: the one `choose_umf` picks; `use_umf` False: from scratch)."""
    if runs < 3:
        raise InputError(f"--runs {runs}: medians need at least 3 runs")
    recipe = recipe_with_threads(recipe_path, threads)
    device = resolve_device(recipe.run.device, "run.device")
    umf, why = choose_umf(umf, use_umf, recipe.model, recipe.audio_feature)
    if umf is not None:
        recipe = dataclasses.replace(recipe, model=with_umf_sizes(recipe.model, umf))
    doc = header("train") | {"recipe": str(recipe_path), "umf": why, "device": str(device),
                             "threads": torch.get_num_threads(), "cases": []}
    with tempfile.TemporaryDirectory(prefix="instag-bench-train-") as tmp:
        for size in sizes:
            case = _time_size(recipe, size, runs, Path(tmp), device, umf)
            doc["cases"].append(case)
            if progress:
                progress(case)
    return doc
