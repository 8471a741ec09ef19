"""Tiny fixed-seed runs of both workflows, reduced to a digest of every tensor they leave: a two-identity
pre-training (lip stage, densification, opacity reset, the negative contrast), its exported UMF, and adaptations
from that UMF and from scratch, on the CPU with one thread.

    python tests/train/tiny_training.py OUT.json

`test_same_weights` runs this file from the working tree and from the reference commit's tree, each in a process
of its own with that tree's `instag` first on the path, and compares the two outputs. It imports nothing from the
tests, so the reference commit's copy runs against the reference commit's code."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

import instag
from instag.config.recipe import from_dict
from instag.train import checkpoint as ck
from instag.train.adapt import adapt
from instag.train.pretrain import export_umf, pretrain
from instag.train.recipe import AdaptRecipe, PretrainRecipe
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset

MODEL = {**TINY_MODEL, "articulation": True, "lip_coeffs": ["mouth_open", "mouth_width"]}
LOSS = {"lambda_lips": 1.0, "lambda_lip_depth": 1.0, "lambda_depth_offset": 1.0}
PRETRAIN = {"audio_feature": "mel", "model": MODEL, "init": TINY_INIT, "seed": 5, "loss": LOSS, "lips": {"steps": 3, "batch": 4},
            "stages": {"face": 3, "mouth": 3, "joint": 3},
            "densify": {"every": 2, "start": 1, "stop_before_end": 1, "opacity_reset_every": 4},
            "run": {"checkpoint_every": 4, "log_every": 1, "previews": 1, "threads": 1}}
ADAPT = {"audio_feature": "mel", "model": MODEL, "init": TINY_INIT, "seed": 2, "loss": LOSS,
         "stages": {"warmup": 4, "align": 4, "fuse": 2},
         "densify": {"every": 3, "start": 1, "stop_before_end": 1},
         "run": {"checkpoint_every": 5, "log_every": 1, "previews": 1, "threads": 1}}


def _digests(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    return {k: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16] for k, t in sorted(tensors.items())}


def _final(run_dir: Path) -> dict[str, str]:
    tensors, _ = ck.load_checkpoint(ck.latest_checkpoint(run_dir))
    return _digests(tensors)


def train_tiny(root: Path) -> dict[str, dict[str, str]]:
    """Per run, the sha256 (16 hex digits) of each tensor it ends with."""
    datasets = [write_dataset(root / f"ds{i}", colour=c, seed=i, test_from=6)
                for i, c in enumerate([(200, 150, 120), (120, 90, 70)])]
    pretrain(datasets, root / "pt", from_dict(PretrainRecipe, PRETRAIN))
    umf, _ = export_umf(root / "pt", root / "umf" / "tiny")
    from_umf = adapt(datasets[0], root / "av_umf", from_dict(AdaptRecipe, ADAPT), umf=umf)
    scratch = adapt(datasets[1], root / "av_scratch", from_dict(AdaptRecipe, ADAPT))
    return {
        "pretrain": _final(root / "pt" / "rank0"),
        "umf": _digests(load_file(str(umf))),
        "adapt_from_umf": _final(from_umf.run_dir),
        "adapt_from_umf_avatar": _digests(load_file(str(root / "av_umf" / "model.safetensors"))),
        "adapt_scratch": _final(scratch.run_dir),
    }


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        weights = train_tiny(Path(tmp))
    # The package's location rides along so the caller can check which tree's code ran.
    out.write_text(json.dumps({"instag": str(Path(instag.__file__).resolve().parent), "weights": weights}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
