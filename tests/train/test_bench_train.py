"""`instag bench train` machinery on a tiny recipe: one case per size with a positive median."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from instag.bench import train as bench_train
from instag.train.synthetic import TINY_RECIPE


def _tiny_recipe(tmp_path, device: str):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY_RECIPE, "stages": {"warmup": 1, "align": 1,
                                      "fuse": 1}, "run": {"threads": 1, "device": device}}))
    return recipe


def test_bench_train_times_each_size(tmp_path):
    seen = []
    doc = bench_train.run(_tiny_recipe(tmp_path, "auto"), runs=3, progress=seen.append, sizes=(32, 64))
    assert [c["size"] for c in doc["cases"]] == ["32x32", "64x64"] == [c["size"] for c in seen]
    assert all(c["s_per_it"] > 0 and c["stage"] == "align" for c in doc["cases"])
    # The wait for the device after a step is queued is part of the step; a CPU runs the step as it is called.
    assert all(0 <= c["device_wait_s_per_it"] <= c["s_per_it"] for c in doc["cases"])
    assert all(c["device_wait_s_per_it"] < 1e-3 for c in doc["cases"] if c["device"] == "cpu")
    assert doc["benchmark"] == "train" and doc["threads"] == 1 and "machine" in doc
    # auto times the device this machine trains on, and says which
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert doc["device"].startswith(expected) and all(c["device"] == expected for c in doc["cases"])


@pytest.mark.cuda  # selected by `pytest -m cuda` (scripts/gpu_check.py)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_train_times_on_cuda(tmp_path):
    doc = bench_train.run(_tiny_recipe(tmp_path, "cuda"), runs=3, sizes=(32,))
    assert doc["device"].startswith("cuda") and doc["cases"][0]["device"] == "cuda"
    assert doc["machine"]["gpu"]
    assert 0 <= doc["cases"][0]["device_wait_s_per_it"] <= doc["cases"][0]["s_per_it"]


def test_bench_train_starts_from_the_umf_an_adaptation_would(tmp_path):
    """The shipped recipe times the step users run, from the shipped UMF of its features; --no-umf from scratch."""
    shipped = bench_train.run(Path("adapt_quick_cpu"), runs=3, threads=1, sizes=(32,))
    assert shipped["umf"].endswith("whisper_v4.safetensors (shipped)"), shipped["umf"]
    scratch = bench_train.run(Path("adapt_quick_cpu"), runs=3, threads=1, sizes=(32,), use_umf=False)
    assert scratch["umf"] == "none (--no-umf)"
    assert shipped["cases"][0]["s_per_it"] > 0 and scratch["cases"][0]["s_per_it"] > 0
    # The tiny recipe's front end matches no shipped UMF, so it times from scratch and says why.
    assert bench_train.run(_tiny_recipe(tmp_path, "cpu"), runs=3, sizes=(32,))["umf"].startswith("none (")
