"""What a recipe's training steps cost the host alone: its Python and operator dispatch, with the arithmetic made
negligible (a 32² synthetic dataset, 450 Gaussians, the aligner's hash table at 2⁸ entries a level). On a GPU the
host queues every step's kernels, so this is a floor under the step however fast the device is (#30's `adapt_5s`
≤ 3 min on an H100); on this CPU each operator's own arithmetic is tiny at these sizes.

    python benchmarks/scripts/host_time.py [RECIPE]

Prints the median step of each stage (50 steps after 10 untimed) on one thread and the whole run's host time at
those medians.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from instag.bench.train import step_times, synthetic_run
from instag.config.recipe import load_recipe, recipe_path
from instag.train.recipe import AdaptRecipe
from instag.train.umf import choose_umf, with_umf_sizes

UNTIMED, TIMED = 10, 50


def main(name: str) -> None:
    warnings.simplefilter("ignore")  # the CPU fallback notes
    torch.set_num_threads(1)
    recipe = load_recipe(recipe_path(name), AdaptRecipe)
    umf, _ = choose_umf(None, True, recipe.model, recipe.audio_feature)
    model = with_umf_sizes(recipe.model, umf)
    grid = dataclasses.replace(model.aligner.grid, log2_table_size=8)
    model = dataclasses.replace(model, aligner=dataclasses.replace(model.aligner, grid=grid))
    init = dataclasses.replace(recipe.init, face_points=300, hair_points=100, mouth_points=50)
    recipe = dataclasses.replace(recipe, model=model, init=init)
    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_run(recipe, 32, Path(tmp), torch.device("cpu"), umf)
        total = 0.0
        for stage in run.stages:
            median = statistics.median(step_times(run, stage, TIMED, torch.device("cpu"), warmup=UNTIMED)[0])
            total += median * stage.iterations
            print(f"{stage.name}: {median * 1e3:.1f} ms a step × {stage.iterations}")
    print(f"{name}: {total:.0f} s of host time in all")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "adapt_5s")
