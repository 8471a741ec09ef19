"""One of our C++ CPU kernels against the torch code it replaced, timed in one process, alternating, so both see
the same machine: `projection` (the rasterizer's, forward and backward) on rasterize forward+backward of `instag
bench kernels`' random scenes, or `blur` (the SSIM's separable blur) on the SSIM map forward+backward at 256² and
512²; then an adaptation step (`adapt_quick_cpu`, alignment stage, from the shipped `whisper_v3`) on DATASET.

    python benchmarks/scripts/kernel_ab.py {projection,blur} DATASET [--threads N] [--rounds R]

Prints the median ms of each arm per round.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

from instag.bench.kernels import random_scene
from instag.config.recipe import load_recipe
from instag.data.dataset import load_dataset
from instag.kernels.blur import blur_ref
from instag.kernels.rasterize import rasterize
from instag.kernels.rasterize_ref import project_gaussians
from instag.motion.umf_file import shipped_umf
from instag.train import losses
from instag.train.adapt import _Adaptation
from instag.train.frames import training_frames
from instag.train.loop import optimise
from instag.train.recipe import AdaptRecipe
from instag.train.umf import with_umf_sizes

RASTER = sys.modules["instag.kernels.rasterize"]
# kernel → (module, the name it is called by there, {arm: implementation}), the C++ arm first
SWAPS = {
    "projection": (RASTER, "_project_cpu", {"C++": RASTER._project_cpu, "torch": project_gaussians}),
    "blur": (losses, "separable_blur", {"C++": losses.separable_blur, "torch": blur_ref}),
}


def _median_ms(step, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernel", choices=sorted(SWAPS))
    ap.add_argument("dataset")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    module, name, arms = SWAPS[args.kernel]
    cases = []
    for size in (256, 512) if args.kernel == "blur" else ():
        images = [torch.rand(size, size, 3, generator=torch.Generator().manual_seed(i)) for i in range(2)]
        pred = images[0].requires_grad_()

        def ssim(pred=pred, target=images[1]) -> None:
            pred.grad = None
            losses.ssim_map(pred, target).mean().backward()
        cases.append((f"SSIM map fwd+bwd {size}²", ssim, 15))
    for n, size in ((10_000, 256), (50_000, 512)) if args.kernel == "projection" else ():
        scene = random_scene(n, size, device="cpu")
        params = [scene[k].requires_grad_() for k in ("means", "quats", "scales", "opacities", "colors")]

        def raster(scene=scene, params=params) -> None:
            for p in params:
                p.grad = None
            rasterize(**scene, backend="cpu").image.sum().backward()
        cases.append((f"rasterize fwd+bwd N={n} {size}²", raster, 15))

    recipe = load_recipe(Path("instag/recipes/adapt_quick_cpu.yaml"), AdaptRecipe)
    umf = shipped_umf("whisper")
    recipe = dataclasses.replace(recipe, model=with_umf_sizes(recipe.model, umf))
    frames = training_frames(load_dataset(Path(args.dataset)), recipe.audio_feature, recipe.model, torch.device("cpu"))
    run = _Adaptation(recipe, frames, umf)
    stage = next(s for s in run.stages if s.aligner)
    run.apply_stage(stage)
    train = [int(t) for t in frames.train_indices]
    for t in train:  # every frame's caches warm, as after the first epoch
        optimise(run, run.identity, t, stage, [])
    counter = itertools.count()

    def adapt_step() -> None:
        optimise(run, run.identity, train[(next(counter) * 7) % len(train)], stage, [])
    n_face, n_mouth = run.identity.face.num_gaussians, run.identity.mouth.num_gaussians
    cases.append((f"adaptation step ({n_face}+{n_mouth} Gaussians)", adapt_step, 30))

    for label, step, runs in cases:
        for r in range(args.rounds):
            row = []
            for arm, impl in arms.items():
                setattr(module, name, impl)
                row.append(f"{arm} {_median_ms(step, runs):.1f}")
            print(f"{label}, {args.threads} thread(s), round {r + 1}: " + ", ".join(row) + " ms", flush=True)
    setattr(module, name, arms["C++"])


if __name__ == "__main__":
    main()
