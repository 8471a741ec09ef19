"""Shared fixtures: the real-clip folder (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from instag_testing import real_data_dir


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = real_data_dir()
    if path is None:
        pytest.skip("real clips not present (../shared/data/real or INSTAG_REAL_DATA)")
    return path
