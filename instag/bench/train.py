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
from instag.train.synthetic import write_dataset
from instag.train.umf import choose_umf, with_umf_sizes

SIZES = (256, 512)
WARMUP_ITERATIONS = 3


def _time_size(recipe: AdaptRecipe, size: int, runs: int, root: Path, device: torch.device,
               umf: Path | None) -> dict[str, Any]:
    ds_path = write_dataset(root / f"ds{size}", size=size, frames=8, mel_dim=recipe.model.audio.feature_dim,
                            kind=recipe.audio_feature)
    frames = training_frames(load_dataset(ds_path), recipe.audio_feature, recipe.model, device)
    # CUDA runs asynchronously: without a sync the clock would stop before the GPU finished the step.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    run = _Adaptation(recipe, frames, umf)
    stage = next((s for s in run.stages if s.aligner), run.stages[0])
    run.apply_stage(stage)
    ident = run.identity
    times, waits = [], []
    for i in range(WARMUP_ITERATIONS + runs):
        t = int(frames.train_indices[i % len(frames.train_indices)])
        sync()
        t0 = time.perf_counter()
        optimise(run, ident, t, stage, [])
        queued = time.perf_counter()
        sync()
        if i >= WARMUP_ITERATIONS:
            done = time.perf_counter()
            times.append(done - t0)
            waits.append(done - queued)
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
