"""The training loop's behaviour, pinned bit for bit: a fixed-seed tiny two-identity pre-training (lip stage,
densification, the negative contrast), its UMF exported, and tiny adaptations from that UMF and from scratch
must give exactly the weights recorded in `same_weights.json` (sha256 of every tensor, on the CPU, one thread).

Bits depend on the processor: torch and our C++ kernels (built for the machine they run on) pick vector code by
what it has, and sum in another order. So the file keeps one record per kind of machine, and the weights must
equal one of them whole; a refactor that moved training would have to land exactly on another machine's bits.

A change that moves training on purpose regenerates the record: `INSTAG_REGEN_WEIGHTS=1 pytest <this file>`
replaces every machine's with this one's, and says so in its commit; a refactor must leave it as it is. On a kind
of machine the file does not know, `INSTAG_REGEN_WEIGHTS=add` at an unchanged commit adds its record."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from instag.config.recipe import from_dict
from instag.machine import cpu_model
from instag.train import checkpoint as ck
from instag.train.adapt import adapt
from instag.train.pretrain import export_umf, pretrain
from instag.train.recipe import AdaptRecipe, PretrainRecipe
from instag.train.synthetic import TINY_INIT, TINY_MODEL, write_dataset

RECORD = Path(__file__).with_name("same_weights.json")
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


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, dict[str, str]]:
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("same_weights")
    datasets = [write_dataset(root / f"ds{i}", colour=c, seed=i, test_from=6)
                for i, c in enumerate([(200, 150, 120), (120, 90, 70)])]
    try:
        pretrain(datasets, root / "pt", from_dict(PretrainRecipe, PRETRAIN))
        umf, _ = export_umf(root / "pt", root / "umf" / "tiny")
        from_umf = adapt(datasets[0], root / "av_umf", from_dict(AdaptRecipe, ADAPT), umf=umf)
        scratch = adapt(datasets[1], root / "av_scratch", from_dict(AdaptRecipe, ADAPT))
    finally:
        torch.set_num_threads(threads)
    return {
        "pretrain": _final(root / "pt" / "rank0"),
        "umf": _digests(load_file(str(umf))),
        "adapt_from_umf": _final(from_umf.run_dir),
        "adapt_from_umf_avatar": _digests(load_file(str(root / "av_umf" / "model.safetensors"))),
        "adapt_scratch": _final(scratch.run_dir),
    }


def _moved(weights: dict[str, dict[str, str]], record: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """Per run, the tensors whose digests differ from the record's (a missing or extra tensor counts)."""
    assert record.keys() == weights.keys()
    return {run: sorted(k for k in tensors.keys() | weights[run].keys() if weights[run].get(k) != tensors.get(k))
            for run, tensors in record.items()}


def test_training_gives_the_recorded_weights_bit_for_bit(weights):
    regen = os.environ.get("INSTAG_REGEN_WEIGHTS")
    here = f"{cpu_model()}, torch CPU code {torch.backends.cpu.get_cpu_capability()}"
    records = json.loads(RECORD.read_text())["records"] if RECORD.is_file() else []
    if regen in ("1", "add"):
        mine = {"machine": here, "weights": weights}
        kept = [r for r in records if r["weights"] != weights] if regen == "add" else []
        RECORD.write_text(json.dumps({"records": kept + [mine]}, indent=1, sort_keys=True) + "\n")
        records = kept + [mine]
    assert records, f"{RECORD} holds no record"
    moved = [_moved(weights, r["weights"]) for r in records]
    best = min(range(len(records)), key=lambda i: sum(len(v) for v in moved[i].values()))
    differ = {run: keys for run, keys in moved[best].items() if keys}
    assert not differ, (f"no record matches this machine's weights ({here}); nearest ({records[best]['machine']}): "
                        + "; ".join(f"{run}: {len(k)} tensors differ, e.g. {k[:3]}" for run, k in differ.items()))
