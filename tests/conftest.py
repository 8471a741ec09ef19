"""Shared fixtures: the real-clip folder (skipped without it), a tiny model config, the devices to test on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from instag_testing import real_data_dir, tiny_model_config

from instag.config.model import ModelConfig


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = real_data_dir()
    if path is None:
        pytest.skip("real clips not present (../shared/data/real or INSTAG_REAL_DATA)")
    return path


@pytest.fixture
def cfg() -> ModelConfig:
    """A model small enough for unit tests of the motion fields and the renderer."""
    return tiny_model_config()


# Every device-dependent test is one body run on each device (as kornia's `device` fixture does), so the CUDA
# tests are the CPU tests. The cuda run carries the `cuda` marker, so `pytest -m cuda` selects exactly the GPU
# half (scripts/gpu_check.py runs that), and shows as skipped where torch sees no GPU.
_DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")],
    ),
]


@pytest.fixture(params=_DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)
