"""`instag bench preprocess`: each stage's wall time, their total and the peak RSS of a real clip."""

from __future__ import annotations

import json

import pytest
from instag_testing import run_instag


@pytest.mark.real_data
@pytest.mark.slow
def test_each_stage_of_a_real_clip_is_timed(real_data, tmp_path):
    out = tmp_path / "preprocess.json"
    r = run_instag("bench", "preprocess", real_data / "yerfor_Real3DPortrait_May_5s.mp4", "--size", "64",
                   "--json", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["frames"] == 125 and doc["runs"] == 1 and doc["config"]["size"] == 64
    assert doc["command"].startswith("instag bench preprocess")
    stages = doc["stages_s"]
    assert {"track", "labels"} <= stages.keys() and all(s >= 0 for s in stages.values())
    assert 0 < sum(stages.values()) <= doc["total_s"] * 1.01
    assert doc["peak_rss_mb"] > 100  # torch and the tracker alone take more
    assert "total" in r.stdout and f"peak RSS {doc['peak_rss_mb']:.0f} MiB" in r.stdout
