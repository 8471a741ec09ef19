"""Fixtures for the end-to-end tests: a tiny adapted avatar (a few iterations on a synthetic dataset), audio files
in several formats and rates, and a source clip for paste-back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from instag.bench.render import speech_like as bench_speech_like
from instag.config.recipe import from_dict
from instag.data.video import sha256_of
from instag.train.adapt import adapt
from instag.train.recipe import AdaptRecipe
from instag.train.synthetic import tiny_adapt_recipe, write_dataset

SIZE = 64
CLIP_FRAMES = 10
TINY = tiny_adapt_recipe(warmup=4, align=2, fuse=1)


@pytest.fixture(scope="session")
def tiny_avatar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    ds = write_dataset(root / "ds", size=SIZE, frames=CLIP_FRAMES)
    out = root / "avatar"
    adapt(ds, out, from_dict(AdaptRecipe, TINY), run_dir=root / "avatar.run")
    return out


@pytest.fixture(scope="session")
def talking_avatar(tmp_path_factory) -> Path:
    """A tiny adapted avatar whose motion has a lip condition (articulation): one whose lips can rest."""
    root = tmp_path_factory.mktemp("talking")
    ds = write_dataset(root / "ds", size=32, frames=CLIP_FRAMES)
    recipe = tiny_adapt_recipe(warmup=2, align=1, fuse=1, lips=True)
    adapt(ds, root / "avatar", from_dict(AdaptRecipe, recipe), run_dir=root / "avatar.run")
    return root / "avatar"


def speech_like(seconds: float, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """[N, C] float32: the benchmarks' stand-in for speech (a synthesised voice over a buzz), at half its level."""
    return np.repeat(bench_speech_like(seconds, rate, seed)[:, None], channels, axis=1) * 0.5


def write_m4a(path: Path, samples: np.ndarray, rate: int) -> Path:
    """AAC in an MP4 audio container (PyAV); samples [N, C]."""
    layout = "mono" if samples.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=rate, layout=layout)
        data = np.ascontiguousarray(samples.T)
        for start in range(0, data.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, start:start + 1024]), format="fltp",
                                           layout=layout)
            f.sample_rate, f.pts = rate, start
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory) -> dict[str, Path]:
    """wav 44.1 kHz stereo (1.3 s), flac 22.05 kHz mono (0.9 s), m4a 32 kHz mono (1.1 s), a corrupt 'wav' and
    a silent wav."""
    root = tmp_path_factory.mktemp("audio")
    files = {
        "wav": root / "line_de.wav",
        "flac": root / "line_fr.flac",
        "m4a": root / "line_it.m4a",
        "corrupt": root / "broken.wav",
        "silence": root / "silence.wav",
    }
    soundfile.write(files["wav"], speech_like(1.3, 44100, 2), 44100)
    soundfile.write(files["flac"], speech_like(0.9, 22050, 1, seed=1), 22050)
    write_m4a(files["m4a"], speech_like(1.1, 32000, 1, seed=2), 32000)
    files["corrupt"].write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    soundfile.write(files["silence"], np.zeros((8000, 1), np.float32), 16000)
    return files


def source_frame(i: int, h: int = 120, w: int = 176) -> np.ndarray:
    """A smooth, moving full-size frame (smooth, so H.264 at a low crf keeps it within a few levels)."""
    y, x = np.mgrid[:h, :w].astype(np.float32)
    r = 128 + 90 * np.sin(x / 23.0 + i * 0.3)
    g = 128 + 90 * np.cos(y / 19.0 - i * 0.2)
    b = 128 + 60 * np.sin((x + y) / 31.0)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def write_source_clip(path: Path, n_frames: int) -> Path:
    """H.264 (crf 0) + AAC clip of `source_frame`s at 25 fps."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        first = source_frame(0)
        vs.width, vs.height, vs.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        vs.options = {"crf": "0"}
        aus = c.add_stream("aac", rate=16000, layout="mono")
        for i in range(n_frames):
            c.mux(vs.encode(av.VideoFrame.from_ndarray(source_frame(i), format="rgb24")))
        c.mux(vs.encode(None))
        tone = speech_like(n_frames / 25, 16000, 1)[:, 0][None]
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone), format="flt", layout="mono")
        f.sample_rate, f.pts = 16000, 0
        c.mux(aus.encode(f))
        c.mux(aus.encode(None))
    return path


CROP = (60, -10, 96)  # x0, y0 (above the frame: padded), side — in source pixels


@pytest.fixture(scope="session")
def pasteable_avatar(tiny_avatar, tmp_path_factory) -> Path:
    """The tiny avatar made to look as if preprocessed from a 176×120 source clip with crop box CROP."""
    root = tmp_path_factory.mktemp("paste")
    out = root / "avatar"
    shutil.copytree(tiny_avatar, out)
    clip = write_source_clip(root / "source.mp4", CLIP_FRAMES)
    with np.load(out / "drive.npz") as z:
        drive = {k: z[k] for k in z.files}
    drive["crop_box"] = np.array(CROP, np.int64)
    np.savez(out / "drive.npz", **drive)
    meta = json.loads((out / "avatar.json").read_text())
    meta["provenance"]["source"] = {"path": str(clip), "sha256": sha256_of(clip), "width": 176, "height": 120}
    (out / "avatar.json").write_text(json.dumps(meta))
    return out
