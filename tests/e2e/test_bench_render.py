"""`instag bench render` on the tiny avatar: the figures it promises are there and plausible."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from data.clipsynth import write_clip

from instag.avatar.seam_match import SeamMatch
from instag.bench.paste_scale import compare_scales
from instag.bench.paste_seam import Variant, compare_seams
from instag.bench.render import run
from instag.data.dataset import load_dataset
from instag.data.video import sha256_of
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


def test_bench_render_times_the_model_on_stored_features_without_the_speech_front_end(tiny_avatar, monkeypatch):
    """Where the speech front end cannot load (a GPU machine without the Whisper packages), the model is timed on
    the features the avatar's dataset stores, and --model-only dubs nothing."""
    import instag.avatar.driving as driving

    def no_front_end(*args, **kwargs):
        raise AssertionError("the speech front end was asked for")

    monkeypatch.setattr(driving, "audio_features", no_front_end)
    doc = run(tiny_avatar, runs=3, features_from=tiny_avatar.parent / "ds", model_only=True)
    assert doc["model"]["fps"] > 0 and doc["model"]["runs"] == 3
    assert doc["model_features_from"] == str(tiny_avatar.parent / "ds") and "end_to_end" not in doc


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


def test_render_scale_comparison_scores_each_render_size_against_the_source_pixels(tiny_avatar, tmp_path):
    """The tiny avatar's own (training) frames, placed 2× larger in a bigger source clip: both render sizes are
    scored on the frames asked for, against that clip's pixels."""
    ds = tmp_path / "ds"
    shutil.copytree(tiny_avatar.parent / "ds", ds)
    dataset = load_dataset(ds)
    x0, y0, side = 10, 6, 2 * dataset.size

    def frame(i: int) -> np.ndarray:
        img = np.full((side + 12, side + 20, 3), 90, np.uint8)
        img[y0:y0 + side, x0:x0 + side] = cv2.resize(dataset.frame(i), (side, side), interpolation=cv2.INTER_CUBIC)
        return img

    clip = write_clip(tmp_path / "source.mp4", frame, dataset.n_frames)
    meta = json.loads((ds / "meta.json").read_text())
    meta["crop_box"] = {"x0": x0, "y0": y0, "side": side, "padding": "edge"}
    meta["source"] = {"path": str(clip), "sha256": sha256_of(clip)}
    (ds / "meta.json").write_text(json.dumps(meta))
    doc = compare_scales(tiny_avatar, ds, n_frames=3, sizes=(dataset.size, side), split="train")
    assert doc["crop_side_px"] == side and doc["split"] == "train"
    assert doc["frames"] == [0, 4, 9] and set(doc["per_render_size"]) == {str(dataset.size), str(side)}
    small, large = doc["per_render_size"][str(dataset.size)], doc["per_render_size"][str(side)]
    for figures in (small, large):
        assert 8 < figures["psnr"] < 60 and 0 < figures["ssim"] <= 1 and figures["sharpness"] > 0
    assert large["sharpness"] > small["sharpness"]  # rendered at the source's scale, not upscaled


def test_seam_comparison_scores_each_variant_on_dub_and_held_out_frames(tiny_avatar, tmp_path):
    """The tiny avatar's frames placed 2× larger in a bigger source clip, with a fine checker the 64² render cannot
    hold: the source's detail makes the pasted face sharper; the last 4 frames are held out."""
    ds = tmp_path / "ds"
    shutil.copytree(tiny_avatar.parent / "ds", ds)
    dataset = load_dataset(ds)
    x0, y0, side = 10, 6, 2 * dataset.size
    yy, xx = np.mgrid[:side, :side]
    checker = np.where((yy + xx) % 2, 6, -6)[..., None]

    def frame(i: int) -> np.ndarray:
        img = np.full((side + 12, side + 20, 3), 90, np.uint8)
        big = cv2.resize(dataset.frame(i), (side, side), interpolation=cv2.INTER_CUBIC).astype(int)
        img[y0:y0 + side, x0:x0 + side] = np.clip(big + checker, 0, 255)
        return img

    clip = write_clip(tmp_path / "source.mp4", frame, dataset.n_frames)
    meta = json.loads((ds / "meta.json").read_text())
    meta["crop_box"] = {"x0": x0, "y0": y0, "side": side, "padding": "edge"}
    meta["source"] = {"path": str(clip), "sha256": sha256_of(clip)}
    meta["split"] = {"train": [0, 6], "test": [6, 10]}
    (ds / "meta.json").write_text(json.dumps(meta))
    avatar = shutil.copytree(tiny_avatar, tmp_path / "avatar")  # made from that clip: its crop box
    with np.load(avatar / "drive.npz") as z:
        drive = {k: z[k] for k in z.files}
    np.savez(avatar / "drive.npz", **(drive | {"crop_box": np.array([x0, y0, side], np.int64)}))
    variants = {"none": Variant(SeamMatch(colour=False, detail=False, frames=2)),
                "detail": Variant(SeamMatch(colour=False, frames=2)), "colour": Variant(SeamMatch(detail=False, frames=2)),
                "lower_face": Variant(SeamMatch(frames=2), "lower_face")}
    doc = compare_seams(avatar, ds, n_frames=2, variants=variants)
    assert doc["scored_frames"] == {"dub": [2, 5], "held_out": [6, 9]}
    none, detail, colour, lower = (doc["variants"][k] for k in ("none", "detail", "colour", "lower_face"))
    assert lower["region"] == "lower_face" and none["region"] == "head"
    for kind in ("dub", "held_out"):
        assert detail[kind]["face_sharpness"] > none[kind]["face_sharpness"]
        assert 0 < lower[kind]["seam_delta_e"] < 100
        assert none[kind]["detail_kept_mouth"] == 0 and detail[kind]["detail_kept_rest_of_face"] > 0
    assert 8 < none["held_out"]["face_psnr"] < 60 and "face_psnr" not in none["dub"]
    assert none["offset_yuv"] == [0, 0, 0] and colour["offset_yuv"] != [0, 0, 0]
