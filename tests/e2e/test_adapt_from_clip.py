"""`instag adapt-from-clip`: defaults, bad input, and (with the real clips) the whole way from a clip to an
avatar that dubs and pastes back at the clip's resolution."""

from __future__ import annotations

import pytest
import soundfile
import torch
import yaml
from instag_testing import run_instag

from instag.avatar.bundle import load_avatar
from instag.data.video import probe
from instag.train import from_clip
from instag.train.synthetic import tiny_adapt_recipe


def test_defaults_follow_the_device():
    if torch.cuda.is_available():
        assert from_clip.default_recipe().name == "adapt_5s.yaml" and from_clip.default_size() == 512
    else:
        assert from_clip.default_recipe().name == "adapt_quick_cpu.yaml" and from_clip.default_size() == 256
    assert from_clip.default_recipe().is_file()


def test_missing_clip_is_refused(tmp_path):
    r = run_instag("adapt-from-clip", tmp_path / "nope.mp4", "-o", tmp_path / "av")
    assert r.returncode == 2 and "nope.mp4: no such file" in r.stderr
    assert not (tmp_path / "av").exists()


def test_existing_avatar_is_refused_before_any_work(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not looked at")
    (tmp_path / "av").mkdir()
    r = run_instag("adapt-from-clip", clip, "-o", tmp_path / "av")
    assert r.returncode == 2 and "already exists" in r.stderr


@pytest.mark.real_data
@pytest.mark.slow
def test_clip_to_avatar_to_pasted_back_dub(real_data, tmp_path):
    clip = real_data / "yerfor_Real3DPortrait_May_5s.mp4"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_adapt_recipe(warmup=3, align=2, fuse=1)))
    out = tmp_path / "may"
    r = run_instag("adapt-from-clip", clip, "-o", out, "--recipe", recipe, "--size", "64", "--no-umf")
    assert r.returncode == 0, r.stderr
    av = load_avatar(out)
    assert av.size == 64 and (out / "dataset" / "meta.json").is_file() and (out / "source" / clip.name).is_file()
    assert not from_clip.staging_dataset(out).exists()
    assert av.meta["provenance"]["dataset"] == str((out / "dataset").resolve())
    assert "(reused)" not in r.stdout
    r = run_instag("adapt-from-clip", clip, "-o", tmp_path / "again", "--recipe", recipe, "--size", "64", "--no-umf",
                   "--keep-dataset", out / "dataset")
    assert r.returncode == 0 and "(reused)" in r.stdout and "preprocess" not in r.stdout, r.stderr

    audio = tmp_path / "line.wav"
    soundfile.write(audio, soundfile.read(real_data / "yerfor_Real3DPortrait_Obama_5s.wav")[0][:16000], 16000)
    r = run_instag("render", out, "--audio", audio, "-o", tmp_path / "dub", "--paste-back")
    assert r.returncode == 0, r.stderr
    info, src = probe(tmp_path / "dub" / "line.mp4", 0.0), probe(clip, 0.0)
    assert (info.width, info.height) == (src.width, src.height)


def test_keep_dataset_does_not_overwrite_another_dir(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"a clip")
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    r = run_instag("adapt-from-clip", clip, "-o", tmp_path / "av", "--keep-dataset", keep)
    assert r.returncode == 2 and "--force" in r.stderr
    assert (keep / "notes.txt").read_text() == "precious"
