"""`instag bench render` on the tiny avatar: the figures it promises are there and plausible."""

from __future__ import annotations

import pytest

from instag.bench.render import run
from instag.media.encoding import Encoding


@pytest.mark.slow
def test_bench_render_reports_model_fps_end_to_end_speed_and_peak_rss(tiny_avatar):
    doc = run(tiny_avatar, seconds=2.0, short_s=1.0, runs=3)
    assert doc["benchmark"] == "render" and doc["commit"]
    m = doc["model"]
    assert m["fps"] > 0 and m["runs"] == 3 and m["size"] == "64x64"
    long, short = doc["end_to_end"]["long"], doc["end_to_end"]["short"]
    assert long["frames"] == 50 and short["frames"] == 25
    assert long["x_real_time"] > 0 and doc["x_real_time"] == long["x_real_time"]
    assert 0.5 < doc["peak_rss_ratio_long_short"] < 2.0


@pytest.mark.slow
def test_bench_render_paste_back_dubs_into_the_source_frames(pasteable_avatar):
    doc = run(pasteable_avatar, seconds=1.0, short_s=0.5, runs=2, paste_back=True)
    assert doc["paste_back"] is True and doc["encoding"] == {"crf": Encoding.crf, "preset": Encoding.paste_back_preset}
    src = doc["source"]
    assert (src["width"], src["height"], src["fps"], src["rotation_deg"]) == (176, 120, 25.0, 0)
    long, short = doc["end_to_end"]["long"], doc["end_to_end"]["short"]
    assert long["frames"] == 25 and short["frames"] in (12, 13)  # 0.5 s: half a frame either way
    assert long["x_real_time"] > 0 and long["output_mb"] > 0
    assert len(doc["load_average_1_5_15"]) == 3
