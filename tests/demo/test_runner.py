"""The demo runner: resume (finished steps are kept), the dubbing steps on a finished avatar, the CLI's report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import pytest
from instag_testing import run_instag

from instag.config.recipe import from_dict
from instag.demo.runner import LINE_SECONDS, STEPS, run_demo
from instag.media.audio import decode_audio
from instag.train.adapt import adapt
from instag.train.recipe import AdaptRecipe
from instag.train.synthetic import tiny_adapt_recipe, write_dataset

TINY = tiny_adapt_recipe(warmup=2, align=1, fuse=1)


def _finished(out: Path, avatar_from: Path | None = None) -> None:
    """Lay out what a finished sample + adapt step leave behind (the avatar a tiny real one, or a stub)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sample.mp4").write_bytes(b"stub")
    if avatar_from:
        shutil.copytree(avatar_from, out / "avatar")
    else:
        (out / "avatar").mkdir()
        (out / "avatar" / "avatar.json").write_text("{}")
    (out / "avatar" / "source").mkdir(exist_ok=True)
    (out / "avatar" / "source" / "sample.mp4").write_bytes(b"stub")


def test_rerun_keeps_every_finished_step(tmp_path):
    _finished(tmp_path)
    (tmp_path / "line.wav").write_bytes(b"stub")
    (tmp_path / "dubbed").mkdir()
    (tmp_path / "dubbed" / "line.mp4").write_bytes(b"stub")
    calls = []
    res = run_demo(tmp_path, progress=lambda *a: calls.append(a))
    assert res.skipped == list(STEPS) and not res.timings_s and not calls
    assert (tmp_path / "dubbed" / "line.mp4").read_bytes() == b"stub"
    assert json.loads((tmp_path / "demo.json").read_text())["dubbed"] == str(tmp_path / "dubbed" / "line.mp4")
    r = run_instag("demo", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert str(tmp_path / "dubbed" / "line.mp4") in r.stdout and str(tmp_path / "sample.mp4") in r.stdout
    assert f"instag preview {tmp_path / 'avatar'} --audio {tmp_path / 'line.wav'}" in r.stdout


@pytest.fixture(scope="module")
def tiny_avatar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo-avatar")
    ds = write_dataset(root / "ds", size=64, frames=10)
    adapt(ds, root / "avatar", from_dict(AdaptRecipe, TINY), run_dir=root / "avatar.run")
    return root / "avatar"


def test_dubs_a_new_synthetic_line_with_a_finished_avatar(tmp_path, tiny_avatar):
    _finished(tmp_path, tiny_avatar)
    steps = []
    res = run_demo(tmp_path, progress=lambda step, *a: steps.append(step))
    assert res.skipped == ["sample", "adapt"] and set(res.timings_s) == {"line", "render"}
    assert set(steps) == {"line", "render"}
    assert decode_audio(res.line).duration_s == pytest.approx(LINE_SECONDS, abs=0.01)
    with av.open(str(res.dubbed)) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]
        n = sum(1 for _ in c.decode(video=0))
    assert n == pytest.approx(LINE_SECONDS * 25, abs=1)
    before = res.dubbed.stat().st_mtime_ns
    assert run_demo(tmp_path).skipped == list(STEPS) and res.dubbed.stat().st_mtime_ns == before
