"""Shared fixtures: the real-clip folder (skipped without it) and a tiny model config."""

from __future__ import annotations

from pathlib import Path

import pytest
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
